"""A task whose metric is mostly noise: the test bench of ratchet's keep rule.

This file is the one a proposer edits. `IMPROVE = True` lowers the true score by
`EFFECT` standard deviations of the noise (truth.py, protected); `UNUSED` changes nothing.
With `EFFECT = 0` every change is pure noise, and every keep is a false one.
"""

from truth import measure

IMPROVE = False
UNUSED = 0.5

print(f"score: {measure(IMPROVE):.6f}")
