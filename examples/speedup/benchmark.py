"""The protected benchmark: how long the edited function takes, relative to a fixed reference.

Each batch is fresh random input (a new seed every run, so no answer can be cached ahead), sent
to the edited function in the predict process; its time is the round trip measured here, in
this process, so nothing the edited code does to its own clock counts. All batches go to the
model first. Then the benchmark tells the model it is done and waits for its reply pipe to
close: under ratchet the model runs in a sandbox with its own PID namespace, whose every process
dies when the model's main process exits, so once that pipe is closed nothing of the edited code
runs any more (no thread or process it started is left to slow the reference down). A model
that does not exit within EXIT_TIMEOUT_S of being told voids the run. Only then are the same
batches solved by the reference below, timed the same way, on the same core: the metric is the
median over batches of (edited time / reference time). A shared machine drifts (load, clock
speed); the two timings of a batch are a second or two apart, so the ratio keeps what is due to
the code. Every answer is checked against the reference: one wrong answer voids the run.
The first batch warms up, untimed.

Run by hand (no RATCHET_PREDICT_FDS) it starts predict.py itself, unsandboxed: a process the
edited code starts there outlives the model unless it keeps the reply pipe open.
"""

import json
import os
import random
import select
import statistics
import subprocess
import sys
import time
from typing import NoReturn, TextIO

PAIRS = 6
LENGTH = (60, 120)
BATCHES = 15
EXIT_TIMEOUT_S = 10.0  # how long the model may take to exit once its input is closed
TEARDOWN_S = 0.2  # then a moment more for the sandbox's namespace to go


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


def void(reason: str) -> NoReturn:
    print(f"ratchet-void: {reason}")
    sys.exit(3)


def model_pipes() -> tuple[TextIO, TextIO, subprocess.Popen | None]:
    fds = os.environ.get("RATCHET_PREDICT_FDS")
    if fds:
        write_fd, read_fd = (int(fd) for fd in fds.split(","))
        return os.fdopen(write_fd, "w"), os.fdopen(read_fd), None
    process = subprocess.Popen([sys.executable, "predict.py"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)  # by hand: unsandboxed
    assert process.stdin is not None and process.stdout is not None
    return process.stdin, process.stdout, process


def wait_for_exit(to_model: TextIO, from_model: TextIO, process: subprocess.Popen | None,
                  timeout: float) -> bool:
    """Tell the model there is no more (an empty line, then its input closed: under ratchet
    the pipe stays open until this phase ends, held by the sandbox's own processes), then wait
    for its reply pipe to close (and, by hand, for the process to end): True when it did within
    `timeout` seconds. Whatever the model still writes is read and dropped."""
    try:
        to_model.write("\n")
        to_model.close()
    except BrokenPipeError:
        pass  # it has gone already
    fd = from_model.fileno()
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if select.select([fd], [], [], left)[0] and not os.read(fd, 65536):
            break
    else:
        return False
    if process is not None:
        try:
            process.wait(max(deadline - time.monotonic(), 0.001))
        except subprocess.TimeoutExpired:
            return False
    return True


def main() -> None:
    rng = random.Random(int.from_bytes(os.urandom(8), "little"))
    to_model, from_model, process = model_pipes()
    try:
        core = min(os.sched_getaffinity(0))  # both sides on one core: the same machine
        os.sched_setaffinity(0, {core})
        to_model.write(json.dumps(core) + "\n")
        batches, answers, times = [], [], []
        for index in range(BATCHES + 1):
            pairs = batch(rng)
            start = time.perf_counter()
            to_model.write(json.dumps(pairs) + "\n")
            to_model.flush()
            reply = from_model.readline()
            times.append(time.perf_counter() - start)
            try:
                answers.append(json.loads(reply))
            except json.JSONDecodeError:
                void(f"batch {index}: no answer (see the predict log)")
            batches.append(pairs)
        # Nothing of the edited code may run while the reference is timed.
        if not wait_for_exit(to_model, from_model, process, EXIT_TIMEOUT_S):
            void("the model process did not exit when its input closed")
        time.sleep(TEARDOWN_S)
        ratios = []
        for index, (pairs, answer, elapsed) in enumerate(zip(batches, answers, times,
                                                             strict=True)):
            start = time.perf_counter()
            expected = [reference(a, b) for a, b in pairs]
            reference_s = time.perf_counter() - start
            if answer != expected:
                void(f"batch {index}: wrong answer")
            if index:
                ratios.append(elapsed / reference_s)
    finally:
        if process is not None and process.poll() is None:
            process.kill()  # by hand: never leave the model process behind
    print(f"ms: {statistics.median(times[1:]) * 1000:.3f}")
    print(f"time_ratio: {statistics.median(ratios):.5f}")


if __name__ == "__main__":
    main()
