"""The protected go-between: hands evaluate.py the point objective.py wrote.

The evaluate phase runs in a fresh copy of the committed tree and never sees a file the
training run wrote; ratchet starts this process beside it, in the training run's work tree
(read-only, without the hidden target), and connects the two by pipes. It sends the point as
one JSON line. It is as untrusted as the training run: evaluate.py checks what it receives.
"""

import sys

try:
    with open("solution.json") as f:
        sys.stdout.write(f.read(10_000).replace("\n", " ") + "\n")
except OSError as error:
    sys.stdout.write(f"null\n{error}\n")
sys.stdout.flush()
