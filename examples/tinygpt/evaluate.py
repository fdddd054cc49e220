"""The protected tinygpt evaluator: validation bits-per-byte of checkpoint.pt.

Edited code supplies only the network (train.GPT) and its weights. This file chooses the data
(pinned hashes), the tokens evaluated (the first EVAL_TOKENS targets of the split, whatever the
model's context length), the loss and the byte count, and prints the number.

bits per byte = (sum of cross-entropy over the evaluated tokens, in nats) / (ln 2 * bytes),
where bytes is the true UTF-8 length of exactly the text those tokens spell: the sum of each
token's raw bytes, never a count inflated by decoding partial UTF-8 tokens on their own.

    python evaluate.py                  # val_bpb on the validation split
    python evaluate.py --split holdout  # holdout_bpb (the only place the holdout is read)
"""

import math
import sys

import torch
import torch.nn.functional as F
from prepare import load_tokenizer, load_tokens, token_bytes

EVAL_TOKENS = 32768
MAX_CONTEXT = 1024
CAUSALITY_TOLERANCE = 1e-4


def void(reason: str) -> None:
    print(f"ratchet-void: {reason}")
    sys.exit(3)


def load_model(vocab_size: int) -> tuple[torch.nn.Module, int]:
    from train import GPT, SEQ_LEN

    checkpoint = torch.load("checkpoint.pt", map_location="cpu", weights_only=True)
    model = GPT(**checkpoint["config"])
    model.load_state_dict(checkpoint["state_dict"])
    if checkpoint["config"].get("vocab_size") != vocab_size:
        void("the model's vocabulary does not match the tokenizer")
    return model.eval(), max(1, min(int(SEQ_LEN), MAX_CONTEXT))


def check_causal(model: torch.nn.Module, window: torch.Tensor, vocab_size: int) -> None:
    """Changing later tokens must not change the predictions for earlier positions."""
    t = window.size(1)
    if t < 2:
        return
    changed = window.clone()
    generator = torch.Generator().manual_seed(0)
    changed[:, t // 2:] = torch.randint(0, vocab_size, (1, t - t // 2), generator=generator)
    with torch.no_grad():
        a, b = model(window)[:, : t // 2], model(changed)[:, : t // 2]
    if not torch.allclose(a, b, atol=CAUSALITY_TOLERANCE, rtol=0):
        void(f"model is not causal: predictions for earlier positions changed by "
             f"{(a - b).abs().max().item():.3g} when later tokens changed")


def bits_per_byte(model: torch.nn.Module, tokens: torch.Tensor, context: int,
                  byte_lengths: torch.Tensor, vocab_size: int) -> float:
    total_nats, total_bytes = 0.0, 0
    with torch.no_grad():
        for start in range(0, EVAL_TOKENS, context):
            n = min(context, EVAL_TOKENS - start)
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
    tokens = torch.from_numpy(load_tokens(split)[:EVAL_TOKENS + 1].astype("int64"))
    torch.manual_seed(0)
    model, context = load_model(vocab_size)
    check_causal(model, tokens[:context].unsqueeze(0), vocab_size)
    bpb = bits_per_byte(model, tokens, context, byte_lengths, vocab_size)
    name = "val_bpb" if split == "validation" else f"{split}_bpb"
    print(f"{name}: {bpb:.6f}")


if __name__ == "__main__":
    main()
