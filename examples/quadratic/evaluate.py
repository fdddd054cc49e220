"""The protected evaluator: scores the point objective.py wrote against the hidden target.

It reads the point from predict.py over a pipe (ratchet passes its descriptors in
RATCHET_PREDICT_FDS; by hand, it starts predict.py itself) and checks every field: a point it
cannot use voids the run.
"""

import json
import math
import os
import subprocess
import sys


def received_point() -> dict:
    fds = os.environ.get("RATCHET_PREDICT_FDS")
    if fds:
        _, read_fd = (int(fd) for fd in fds.split(","))
        line = os.fdopen(read_fd).readline(20_000)
    else:  # run by hand, outside ratchet
        line = subprocess.run([sys.executable, "predict.py"], capture_output=True,
                              text=True).stdout.split("\n")[0]
    try:
        point = json.loads(line)
        return {"x": float(point["x"]), "y": float(point["y"]), "depth": int(point["depth"]),
                "activation": str(point["activation"])}
    except (ValueError, TypeError, KeyError) as error:
        print(f"ratchet-void: no usable point from the training run ({type(error).__name__})")
        sys.exit(3)


split = "holdout" if "--holdout" in sys.argv else "validation"
with open("target.json") as f:
    target = json.load(f)[split]
solution = received_point()
loss = (
    (solution["x"] - target["x"]) ** 2
    + (solution["y"] - target["y"]) ** 2
    + target["depth_weight"] * (solution["depth"] - target["depth"]) ** 2
    + target["activation_penalty"].get(solution["activation"], 1.0)
)
if not math.isfinite(loss):
    sys.exit("loss is not finite")
print(f"loss: {loss:.6f}")
