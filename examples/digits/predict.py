"""The protected digits model process: runs the model the edited training code saved.

ratchet starts it beside evaluate.py in a sandbox of its own: the work tree the command phase
left (read-only, so it sees model.pkl) without the hidden validation and test files. Loading
model.pkl runs whatever code the pickle carries, which is why it happens here and never in the
evaluator: this process sees no answers and its only way out is its reply pipe. It answers each
request, the features of a split (float64, N x 64, one .npy array), with the predicted labels
(one .npy array of N integers), until the evaluator closes the pipe. Anything the edited code
prints goes to this process's own log, never to the evaluator's output, where the metric is read.

    python predict.py < requests > replies    # the evaluator runs it; not meant for people
"""

import io
import os
import pickle
import sys
from typing import BinaryIO

import numpy as np

MAGIC = b"\x93NUMPY"


def send(stream: BinaryIO, array: np.ndarray) -> None:
    """One array on a pipe, in the .npy format (never a pickle)."""
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asarray(array), allow_pickle=False)
    stream.write(buffer.getvalue())
    stream.flush()


def receive(stream: BinaryIO) -> np.ndarray:
    """The next array `send` wrote (from the evaluator); EOFError when it closed the pipe."""
    if stream.read(len(MAGIC)) != MAGIC or stream.read(2) != b"\x01\x00":
        raise EOFError("the pipe was closed")
    shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(stream)
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    data = stream.read(size)
    if len(data) != size:
        raise EOFError("the pipe was closed")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran_order else "C")


def main() -> None:
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # print() in the pickle's code lands in the log, not in the replies
    requests = sys.stdin.buffer
    with open("model.pkl", "rb") as f:
        model = pickle.load(f)  # runs the pickle's code: untrusted, and harmless here
    while True:
        try:
            features = receive(requests)
        except EOFError:
            return
        send(replies, model.predict(features))


if __name__ == "__main__":
    main()
