"""The protected evaluator: scores the point objective.py wrote against the hidden target."""

import json
import math
import sys

split = "holdout" if "--holdout" in sys.argv else "validation"
with open("target.json") as f:
    target = json.load(f)[split]
with open("solution.json") as f:
    solution = json.load(f)

loss = (
    (float(solution["x"]) - target["x"]) ** 2
    + (float(solution["y"]) - target["y"]) ** 2
    + target["depth_weight"] * (int(solution["depth"]) - target["depth"]) ** 2
    + target["activation_penalty"].get(str(solution["activation"]), 1.0)
)
if not math.isfinite(loss):
    sys.exit("loss is not finite")
print(f"loss: {loss:.6f}")
