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

The causality check is not a separate step a model could sit out: beside the scoring windows,
the evaluator sends "twins", copies of scoring windows drawn at random (at least MIN_TWINS, one
per TWIN_SHARE windows) whose tokens from a random cut on are replaced by text from elsewhere in
the split, and all the calls go in one order shuffled afresh each run, a twin before or after its
original at random. A twin's predictions before its cut must match its original's (within
CAUSALITY_TOLERANCE), else the run is voided (`ratchet-void: model is not causal ...`). That
catches a model whose earlier predictions read later tokens, including one honest only for its
first calls, and a model that changes between calls (one that trains on what it is sent, or
counts its calls), since a twin and its original are apart by a random number of calls. What it
cannot catch: the model process sees every window and may keep state, so a model that remembers
the windows it was sent, and answers a repeated prefix with the predictions it gave before,
passes every consistency check while reading ahead everywhere else. Only a fresh model process
per call (or per twin pair) would close that, at the cost of a start-up per call.

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
from dataclasses import dataclass
from typing import NoReturn

import numpy as np
import torch
import torch.nn.functional as F
from predict import receive, send
from prepare import load_tokenizer, token_bytes, tokens_of

EVAL_TOKENS = 32768
SCREEN_TOKENS = 4096  # the fewest a short run is scored on
MAX_CONTEXT = 1024
CAUSALITY_TOLERANCE = 1e-4
MIN_TWINS = 8  # consistency twins per run: at least this many ...
TWIN_SHARE = 4  # ... and one per this many scoring windows


def void(reason: str) -> NoReturn:
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


def evaluated_tokens() -> int:
    """How many targets this run is scored on: all of EVAL_TOKENS, or a short run's share."""
    horizon = float(os.environ.get("RATCHET_HORIZON", "1"))
    return max(SCREEN_TOKENS, min(EVAL_TOKENS, int(EVAL_TOKENS * horizon)))


@dataclass
class Twin:
    """A scoring window with its tokens from `cut` on replaced by text from elsewhere."""
    window: int  # the index of the scoring window it copies
    cut: int
    tokens: torch.Tensor


def scoring_windows(count: int, context: int) -> list[tuple[int, int]]:
    """(start, length) of the windows that score the first `count` targets."""
    return [(start, min(context, count - start)) for start in range(0, count, context)]


def make_twins(windows: list[tuple[int, int]], tokens: torch.Tensor, stream: torch.Tensor,
               vocab_size: int, draw: random.Random) -> list[Twin]:
    """max(MIN_TWINS, one in TWIN_SHARE) twins of scoring windows drawn at random, each cut
    at a random position and continued with real text from a random place in the split
    (whose first token differs from the one it replaces)."""
    eligible = [i for i, (_, n) in enumerate(windows) if n >= 2]
    if not eligible:
        return []
    wanted = max(MIN_TWINS, math.ceil(len(windows) / TWIN_SHARE))
    chosen = draw.sample(eligible, min(wanted, len(eligible)))
    chosen += [draw.choice(eligible) for _ in range(wanted - len(chosen))]
    twins = []
    for i in chosen:
        start, n = windows[i]
        cut = draw.randrange(1, n)
        original = tokens[start:start + n]
        for _ in range(100):
            place = draw.randrange(0, len(stream) - (n - cut) + 1)
            suffix = stream[place:place + n - cut].clone()
            if suffix[0] != original[cut]:
                break
        else:
            suffix[0] = (original[cut] + draw.randrange(1, vocab_size)) % vocab_size
        twins.append(Twin(i, cut, torch.cat([original[:cut], suffix])))
    return twins


def bits_per_byte(model: RemoteModel, tokens: torch.Tensor, stream: torch.Tensor,
                  context: int, byte_lengths: torch.Tensor, vocab_size: int,
                  count: int) -> float:
    """Scores the first `count` targets, window by window, with the consistency twins mixed
    in: every call (scoring window or twin) goes to the model in an order shuffled afresh each
    run, and each twin's predictions up to its cut must match its original's."""
    draw = random.SystemRandom()
    windows = scoring_windows(count, context)
    twins = make_twins(windows, tokens, stream, vocab_size, draw)
    calls = [(False, i) for i in range(len(windows))] + [(True, k) for k in range(len(twins))]
    draw.shuffle(calls)
    kept_upto = {}  # scoring window -> how many positions of its logits its twins compare
    for twin in twins:
        kept_upto[twin.window] = max(kept_upto.get(twin.window, 0), twin.cut)
    nats, kept, twin_logits = [0.0] * len(windows), {}, [None] * len(twins)
    for is_twin, index in calls:
        start, n = windows[twins[index].window if is_twin else index]
        x = twins[index].tokens if is_twin else tokens[start:start + n]
        logits = model(x.unsqueeze(0))
        if logits.shape != (1, n, vocab_size):
            void(f"model returned logits of shape {tuple(logits.shape)}, "
                 f"expected {(1, n, vocab_size)}")
        if is_twin:
            twin_logits[index] = logits[:, :twins[index].cut].clone()
            continue
        y = tokens[start + 1:start + n + 1]
        nats[index] = F.cross_entropy(logits[0].double(), y, reduction="sum").item()
        if index in kept_upto:
            kept[index] = logits[:, :kept_upto[index]].clone()
    for twin, b in zip(twins, twin_logits, strict=True):
        a = kept[twin.window][:, :twin.cut]
        if not torch.allclose(a, b, atol=CAUSALITY_TOLERANCE, rtol=0):
            void(f"model is not causal: predictions for earlier positions changed by "
                 f"{(a - b).abs().max().item():.3g} when later tokens changed (or the model "
                 f"changed between calls)")
    total_nats, total_bytes = 0.0, 0
    for (start, n), window_nats in zip(windows, nats, strict=True):
        if not math.isfinite(window_nats):
            print("evaluation loss is not finite")
            sys.exit(2)
        total_nats += window_nats
        total_bytes += int(byte_lengths[tokens[start + 1:start + n + 1]].sum())
    return total_nats / (math.log(2) * total_bytes)


def main() -> None:
    split = sys.argv[sys.argv.index("--split") + 1] if "--split" in sys.argv else "validation"
    tokenizer = load_tokenizer()
    vocab_size = tokenizer.get_vocab_size()
    byte_lengths = torch.tensor([len(b) for b in token_bytes(tokenizer)])
    stream = torch.from_numpy(tokens_of(split, tokenizer).astype("int64"))
    tokens = stream[:EVAL_TOKENS + 1]
    model = RemoteModel()
    if model.vocab_size != vocab_size:
        void("the model's vocabulary does not match the tokenizer")
    context = max(1, min(model.context, MAX_CONTEXT))
    bpb = bits_per_byte(model, tokens, stream, context, byte_lengths, vocab_size,
                        evaluated_tokens())
    name = "val_bpb" if split == "validation" else f"{split}_bpb"
    print(f"{name}: {bpb:.6f}")


if __name__ == "__main__":
    main()
