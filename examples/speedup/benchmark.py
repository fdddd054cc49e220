"""The protected benchmark: milliseconds per batch of edit distances, median of several batches.

Each batch is fresh random input (a new seed every run, so no answer can be cached ahead), sent
to the edited function in the predict process; the time is the round trip measured here, in
this process. Every answer is checked against the reference below: one wrong answer voids the
run. The first batch warms up and is not timed.
"""

import json
import os
import random
import statistics
import subprocess
import sys
import time

PAIRS = 12
LENGTH = (60, 120)
BATCHES = 7


def reference(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1,
                               previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def batch(rng: random.Random) -> list[list[str]]:
    def word() -> str:
        return "".join(rng.choice("acgt") for _ in range(rng.randint(*LENGTH)))
    return [[word(), word()] for _ in range(PAIRS)]


def model_pipes():  # type: ignore[no-untyped-def]
    fds = os.environ.get("RATCHET_PREDICT_FDS")
    if fds:
        write_fd, read_fd = (int(fd) for fd in fds.split(","))
        return os.fdopen(write_fd, "w"), os.fdopen(read_fd)
    process = subprocess.Popen([sys.executable, "predict.py"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)  # by hand: unsandboxed
    return process.stdin, process.stdout


def main() -> None:
    rng = random.Random(int.from_bytes(os.urandom(8), "little"))
    to_model, from_model = model_pipes()
    times = []
    for index in range(BATCHES + 1):
        pairs = batch(rng)
        start = time.perf_counter()
        to_model.write(json.dumps(pairs) + "\n")
        to_model.flush()
        reply = from_model.readline()
        elapsed = time.perf_counter() - start
        try:
            answers = json.loads(reply)
        except json.JSONDecodeError:
            print(f"ratchet-void: batch {index}: no answer (see the predict log)")
            sys.exit(3)
        expected = [reference(a, b) for a, b in pairs]
        if answers != expected:
            print(f"ratchet-void: batch {index}: wrong answer")
            sys.exit(3)
        if index:
            times.append(elapsed)
    print(f"ms: {statistics.median(times) * 1000:.3f}")


if __name__ == "__main__":
    main()
