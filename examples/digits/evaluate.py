"""The protected evaluator: accuracy on the validation (or --holdout: test) split.

It loads nothing the edited code wrote and imports none of it: the model (model.pkl, a pickle,
which can run any code when loaded) is loaded and run in predict.py, a separate process that
ratchet starts in a sandbox without the hidden splits. This file reads the split, sends the
model its features (one .npy array over a pipe; the descriptors are in RATCHET_PREDICT_FDS),
reads back the predicted labels, checks that they are exactly N integers (anything else is not
scored: it prints `ratchet-void: <reason>`), and computes the accuracy itself.

    python evaluate.py             # validation accuracy; by hand it starts predict.py itself
    python evaluate.py --holdout   # test accuracy (the task's holdout)
"""

import os
import subprocess
import sys
from pathlib import Path
from typing import BinaryIO, NoReturn

import numpy as np
from predict import send
from prepare import load_split

HERE = Path(__file__).resolve().parent
MAGIC = b"\x93NUMPY"
HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0,
                  (2, 0): np.lib.format.read_array_header_2_0}


def void(reason: str) -> NoReturn:
    print(f"ratchet-void: {reason}")
    sys.exit(3)


def stopped() -> NoReturn:
    print("the model process stopped answering (see its log)")
    sys.exit(2)


def model_pipes() -> tuple[BinaryIO, BinaryIO, subprocess.Popen | None]:
    fds = os.environ.get("RATCHET_PREDICT_FDS")
    if fds:
        write_fd, read_fd = (int(fd) for fd in fds.split(","))
        return os.fdopen(write_fd, "wb"), os.fdopen(read_fd, "rb"), None
    # run by hand, outside ratchet: start the model process ourselves, unsandboxed
    process = subprocess.Popen([sys.executable, str(HERE / "predict.py")],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdin is not None and process.stdout is not None
    return process.stdin, process.stdout, process


def exactly(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:  # the model process closed its pipe (it exited or crashed)
        stopped()
    return data


def receive_labels(stream: BinaryIO, count: int) -> np.ndarray:
    """The model's answer, read as untrusted bytes: one .npy array of `count` integers."""
    if exactly(stream, len(MAGIC)) != MAGIC:
        void("the model's answer is not a .npy array")
    version = tuple(exactly(stream, 2))
    if version not in HEADER_READERS:
        void(f"the model's answer has .npy version {version}, expected 1.0 or 2.0")
    try:
        shape, _, dtype = HEADER_READERS[version](stream)
    except ValueError as error:
        void(f"the model's answer has a malformed .npy header: {error}")
    if dtype.hasobject or dtype.kind not in "iu":
        void(f"the model answered labels of type {dtype}, expected integers")
    if shape != (count,):
        void(f"the model answered labels of shape {shape}, expected {(count,)}")
    return np.frombuffer(exactly(stream, count * dtype.itemsize), dtype=dtype)


def main() -> None:
    split = "test" if "--holdout" in sys.argv else "validation"
    X, y = load_split(split)
    requests, replies, process = model_pipes()
    try:
        try:
            send(requests, X)
        except BrokenPipeError:
            stopped()
        predicted = receive_labels(replies, len(y))
        requests.close()
        if process is not None:
            process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass  # by hand, a model process that lingers after answering is killed below
    finally:
        if process is not None and process.poll() is None:
            process.kill()  # by hand: never leave the model process behind
    accuracy = float((predicted == y).mean())
    print(f"accuracy: {accuracy:.6f}")


if __name__ == "__main__":
    main()
