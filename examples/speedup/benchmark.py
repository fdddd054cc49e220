"""The protected benchmark: how long the edited function takes, relative to a fixed reference.

Each batch is fresh random input (a new seed every run, so no answer can be cached ahead), sent
to the edited function in the predict process; its time is the round trip measured here, in
this process, so nothing the edited code does to its own clock counts. The same batch is then
solved by the reference below, timed the same way: the metric is the median over batches of
(edited time / reference time). A shared machine drifts (load, clock speed); both timings of a
batch drift together, so the ratio keeps what is due to the code. Every answer is checked
against the reference: one wrong answer voids the run. The first batch warms up, untimed.
"""

import json
import os
import random
import statistics
import subprocess
import sys
import time

PAIRS = 6
LENGTH = (60, 120)
BATCHES = 15


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
    core = min(os.sched_getaffinity(0))  # both sides on one core: they see the same machine
    os.sched_setaffinity(0, {core})
    to_model.write(json.dumps(core) + "\n")
    times, ratios = [], []
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
        start = time.perf_counter()
        expected = [reference(a, b) for a, b in pairs]
        reference_s = time.perf_counter() - start
        if answers != expected:
            print(f"ratchet-void: batch {index}: wrong answer")
            sys.exit(3)
        if index:
            times.append(elapsed)
            ratios.append(elapsed / reference_s)
    print(f"ms: {statistics.median(times) * 1000:.3f}")
    print(f"time_ratio: {statistics.median(ratios):.5f}")


if __name__ == "__main__":
    main()
