"""The protected tinygpt model process: runs the edited network for the evaluator.

ratchet starts it beside evaluate.py in a sandbox of its own: the work tree read-only and the
hidden validation and holdout files absent, so the only data it ever sees is what the evaluator
sends it. It loads checkpoint.pt into train.GPT, tells the evaluator the model's context length
and vocabulary size, then answers each batch of token windows (int64, B x T) with the logits
(float32, B x T x V), until the evaluator closes the pipe. Anything the edited code prints goes
to this process's own log, never to the evaluator's output, where the metric is read.

    python predict.py < requests > replies    # the evaluator runs it; not meant for people
"""

import json
import os
import struct
import sys
from typing import BinaryIO

import numpy as np
import torch


def send(stream: BinaryIO, array: np.ndarray) -> None:
    """One array on a pipe: a length-prefixed JSON header (dtype, shape), then its bytes."""
    array = np.ascontiguousarray(array)
    header = json.dumps({"dtype": array.dtype.str, "shape": array.shape}).encode()
    stream.write(struct.pack("<I", len(header)) + header + array.tobytes())
    stream.flush()


def receive(stream: BinaryIO) -> np.ndarray:
    """The next array `send` wrote; EOFError when the other side has closed the pipe."""
    (size,) = struct.unpack("<I", _exactly(stream, 4))
    header = json.loads(_exactly(stream, size))
    dtype, shape = np.dtype(header["dtype"]), tuple(header["shape"])
    count = int(np.prod(shape, dtype=np.int64))
    return np.frombuffer(_exactly(stream, count * dtype.itemsize), dtype=dtype).reshape(shape)


def _exactly(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError("the pipe was closed")
    return data


def main() -> None:
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # print() in edited code lands in the log, not in the replies
    requests = sys.stdin.buffer
    from train import GPT, SEQ_LEN

    checkpoint = torch.load("checkpoint.pt", map_location="cpu", weights_only=True)
    model = GPT(**checkpoint["config"])
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    vocab_size = int(checkpoint["config"].get("vocab_size", -1))
    send(replies, np.array([int(SEQ_LEN), vocab_size], dtype=np.int64))
    torch.manual_seed(0)
    while True:
        try:
            windows = torch.from_numpy(receive(requests).astype(np.int64))
        except EOFError:
            return
        with torch.no_grad():
            send(replies, model(windows).float().numpy())


if __name__ == "__main__":
    main()
