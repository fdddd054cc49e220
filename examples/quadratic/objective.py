"""A toy "training run": the knobs below are the model, the point it writes is what it learned.

This is the file a proposer edits. The protected evaluate.py scores the point it writes, so
printing a fake `loss:` line here changes nothing.
"""

import json
import random

X = 0.0
Y = 0.0
DEPTH = 2
ACTIVATION = "relu"
NOISE = 0.0  # standard deviation of the "training" noise added to the learned point
SEED = -1  # -1: a new seed every run, as real training has; otherwise a fixed seed

rng = random.Random(None if SEED < 0 else SEED)
jitter = [rng.gauss(0.0, NOISE) for _ in range(2)]
solution = {"x": X + jitter[0], "y": Y + jitter[1], "depth": DEPTH, "activation": ACTIVATION}
with open("solution.json", "w") as f:
    json.dump(solution, f)
print(f"trained: x={solution['x']:.4f} y={solution['y']:.4f} depth={DEPTH} act={ACTIVATION}")
