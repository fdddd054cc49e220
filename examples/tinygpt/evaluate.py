"""The protected tinygpt evaluator: validation bits-per-byte of checkpoint.pt.

Edited code supplies only the network (train.GPT) and its weights, and it never runs here: the
model runs in predict.py, a separate process that ratchet starts in a sandbox without the
hidden validation and holdout files; this file sends it token windows and gets logits back
(two pipes, whose descriptors ratchet passes in RATCHET_PREDICT_FDS). This file chooses the data
(pinned hashes, kept in memory), the tokens evaluated (the first EVAL_TOKENS targets of the
split, whatever the model's context length), the loss and the byte count, checks that the model
is causal, and prints the number.

bits per byte = (sum of cross-entropy over the evaluated tokens, in nats) / (ln 2 * bytes),
where bytes is the true UTF-8 length of exactly the text those tokens spell: the sum of each
token's raw bytes, never a count inflated by decoding partial UTF-8 tokens on their own.

A short run (ratchet's [fidelity], RATCHET_HORIZON below 1) is scored on that share of the
tokens, at least SCREEN_TOKENS: a screen only ranks candidates against other runs of the same
horizon, scored on the same tokens, and a full-size evaluation would cost a screen as much as
a full run's.

    python evaluate.py                  # val_bpb on the validation split
    python evaluate.py --split holdout  # holdout_bpb (the only place the holdout is read)
"""

import math
import os
import random
import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F
from predict import receive, send
from prepare import load_tokenizer, token_bytes, tokens_of

EVAL_TOKENS = 32768
SCREEN_TOKENS = 4096  # the fewest a short run is scored on
MAX_CONTEXT = 1024
CAUSALITY_TOLERANCE = 1e-4
CAUSALITY_CHECKS = 3


def void(reason: str) -> None:
    print(f"ratchet-void: {reason}")
    sys.exit(3)


class RemoteModel:
    """The model in predict.py, called like a module: windows (B x T) in, logits out."""

    def __init__(self) -> None:
        fds = os.environ.get("RATCHET_PREDICT_FDS")
        if fds:
            write_fd, read_fd = (int(fd) for fd in fds.split(","))
            self.requests, self.replies = os.fdopen(write_fd, "wb"), os.fdopen(read_fd, "rb")
        else:  # run by hand, outside ratchet: start the model process ourselves, unsandboxed
            process = subprocess.Popen([sys.executable, "predict.py"], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE)
            self.requests, self.replies = process.stdin, process.stdout
        try:
            self.context, self.vocab_size = (int(v) for v in receive(self.replies))
        except (EOFError, ValueError):
            print("the model process did not start (see its log)")
            sys.exit(2)

    def __call__(self, windows: torch.Tensor) -> torch.Tensor:
        try:
            send(self.requests, windows.numpy().astype(np.int64))
            return torch.from_numpy(receive(self.replies).copy())
        except (BrokenPipeError, EOFError, ValueError):
            print("the model process stopped answering (see its log)")
            sys.exit(2)


def check_causal(model: RemoteModel, tokens: torch.Tensor, context: int,
                 vocab_size: int) -> None:
    """Changing later tokens must not change the predictions for earlier positions. Where the
    change starts is drawn at random each run, so a model cannot be honest only there."""
    draw = random.SystemRandom()
    for _ in range(CAUSALITY_CHECKS):
        if context < 2:
            return
        start = draw.randrange(0, EVAL_TOKENS - context)
        window = tokens[start:start + context].unsqueeze(0)
        cut = draw.randrange(1, context)
        changed = window.clone()
        changed[:, cut:] = torch.tensor([draw.randrange(vocab_size) for _ in range(context - cut)])
        a, b = model(window)[:, :cut], model(changed)[:, :cut]
        if a.shape != b.shape or not torch.allclose(a, b, atol=CAUSALITY_TOLERANCE, rtol=0):
            difference = (a - b).abs().max().item() if a.shape == b.shape else float("inf")
            void(f"model is not causal: predictions for earlier positions changed by "
                 f"{difference:.3g} when later tokens changed")


def evaluated_tokens() -> int:
    """How many targets this run is scored on: all of EVAL_TOKENS, or a short run's share."""
    horizon = float(os.environ.get("RATCHET_HORIZON", "1"))
    return max(SCREEN_TOKENS, min(EVAL_TOKENS, int(EVAL_TOKENS * horizon)))


def bits_per_byte(model: RemoteModel, tokens: torch.Tensor, context: int,
                  byte_lengths: torch.Tensor, vocab_size: int, count: int) -> float:
    total_nats, total_bytes = 0.0, 0
    for start in range(0, count, context):
        n = min(context, count - start)
        x = tokens[start:start + n].unsqueeze(0)
        y = tokens[start + 1:start + n + 1]
        logits = model(x)
        if logits.shape != (1, n, vocab_size):
            void(f"model returned logits of shape {tuple(logits.shape)}, "
                 f"expected {(1, n, vocab_size)}")
        nats = F.cross_entropy(logits[0].double(), y, reduction="sum").item()
        if not math.isfinite(nats):
            print("evaluation loss is not finite")
            sys.exit(2)
        total_nats += nats
        total_bytes += int(byte_lengths[y].sum())
    return total_nats / (math.log(2) * total_bytes)


def main() -> None:
    split = sys.argv[sys.argv.index("--split") + 1] if "--split" in sys.argv else "validation"
    tokenizer = load_tokenizer()
    vocab_size = tokenizer.get_vocab_size()
    byte_lengths = torch.tensor([len(b) for b in token_bytes(tokenizer)])
    tokens = torch.from_numpy(tokens_of(split, tokenizer)[:EVAL_TOKENS + 1].astype("int64"))
    model = RemoteModel()
    if model.vocab_size != vocab_size:
        void("the model's vocabulary does not match the tokenizer")
    context = max(1, min(model.context, MAX_CONTEXT))
    check_causal(model, tokens, context, vocab_size)
    bpb = bits_per_byte(model, tokens, context, byte_lengths, vocab_size, evaluated_tokens())
    name = "val_bpb" if split == "validation" else f"{split}_bpb"
    print(f"{name}: {bpb:.6f}")


if __name__ == "__main__":
    main()
