"""tinygpt: a small modern GPT in the spirit of nanochat, trained for a fixed time budget.

This is the file a proposer edits. Knobs are at the top; the model reads top to bottom. The
protected evaluate.py imports `GPT` from here, loads checkpoint.pt and computes validation
bits-per-byte itself, so nothing printed here is the score.

    TIME_BUDGET=60 python train.py     # seconds of training (60 on CPU, 300 on GPU by default)

Under ratchet the budget comes from the task's `[task].budget`, as RATCHET_TIME_BUDGET, and
ratchet enforces it in wall time: a run that trains past it (plus a grace) is killed and never
kept, whatever this file's clock says. `ratchet generalize` scales it for longer horizons.
"""

import math
import os
import resource
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from prepare import VOCAB_SIZE, load_tokens

# model
DEPTH = 4
ASPECT_RATIO = 32  # width = DEPTH * ASPECT_RATIO
HEAD_DIM = 32
WINDOW_PATTERN = "SSSL"  # per layer, repeated: S = sliding window, L = full context
SHORT_WINDOW = 64  # tokens seen by an S layer
SEQ_LEN = 256
ROPE_BASE = 10000.0
SOFTCAP = 15.0  # logit soft-capping: logits = SOFTCAP * tanh(logits / SOFTCAP)

# optimization
OPTIMIZER = "adamw"  # "adamw", or "muon" for the matrices (AdamW for the rest)
EMBED_LR = 0.01
MATRIX_LR = 0.003
MUON_LR = 0.02
HEAD_LR = 0.003
SCALAR_LR = 0.01
WEIGHT_DECAY = 0.0
ADAM_BETA1 = 0.9
ADAM_BETA2 = 0.95
WARMUP_FRAC = 0.02
WARMDOWN_FRAC = 0.3
FINAL_LR_FRAC = 0.0
BATCH_SIZE = 16
SEED = 0


def norm(x: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.size(-1),))


def rotary(x: torch.Tensor, base: float) -> torch.Tensor:
    """Rotary position embedding over the last dimension of (B, H, T, D); an odd last
    channel is left unrotated."""
    d, t = x.size(-1) // 2 * 2, x.size(-2)
    freqs = base ** (-torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)
    angles = torch.outer(torch.arange(t, device=x.device, dtype=torch.float32), freqs)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x[..., 0:d:2], x[..., 1:d:2]
    rotated = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)
    return torch.cat((rotated, x[..., d:]), dim=-1)


def window_mask(t: int, window: int | None, device: torch.device) -> torch.Tensor:
    """Causal attention mask, optionally limited to the last `window` positions."""
    i = torch.arange(t, device=device)
    mask = i[None, :] <= i[:, None]
    if window is not None:
        mask &= i[:, None] - i[None, :] < window
    return mask


class Attention(nn.Module):
    def __init__(self, width: int, head_dim: int, window: int | None, rope_base: float) -> None:
        super().__init__()
        self.heads = max(1, width // head_dim)
        self.head_dim = head_dim
        self.window, self.rope_base = window, rope_base
        self.qkv = nn.Linear(width, 3 * self.heads * head_dim, bias=False)
        self.proj = nn.Linear(self.heads * head_dim, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k = rotary(norm(q), self.rope_base), rotary(norm(k), self.rope_base)
        mask = window_mask(t, self.window, x.device)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(y.transpose(1, 2).reshape(b, t, -1))


class MLP(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.up = nn.Linear(width, 4 * width, bias=False)
        self.down = nn.Linear(4 * width, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.relu(self.up(x)).square())


class Block(nn.Module):
    def __init__(self, width: int, head_dim: int, window: int | None, rope_base: float) -> None:
        super().__init__()
        self.attn = Attention(width, head_dim, window, rope_base)
        self.mlp = MLP(width)
        self.attn_scale = nn.Parameter(torch.ones(()))
        self.mlp_scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn_scale * self.attn(norm(x))
        return x + self.mlp_scale * self.mlp(norm(x))


class GPT(nn.Module):
    """Built from a plain config dict, which the checkpoint carries for the evaluator."""

    def __init__(self, vocab_size: int, depth: int, width: int, head_dim: int,
                 window_pattern: str, short_window: int, rope_base: float,
                 softcap: float) -> None:
        super().__init__()
        self.softcap = softcap
        self.embed = nn.Embedding(vocab_size, width)
        windows = [short_window if window_pattern[i % len(window_pattern)] == "S" else None
                   for i in range(depth)]
        self.blocks = nn.ModuleList(Block(width, head_dim, w, rope_base) for w in windows)
        self.head = nn.Linear(width, vocab_size, bias=False)
        nn.init.normal_(self.embed.weight, std=1.0)
        nn.init.zeros_(self.head.weight)
        for block in self.blocks:
            nn.init.zeros_(block.attn.proj.weight)
            nn.init.zeros_(block.mlp.down.weight)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = norm(self.embed(idx))
        for block in self.blocks:
            x = block(x)
        logits = self.head(norm(x)).float()
        return self.softcap * torch.tanh(logits / self.softcap)


def model_config() -> dict:
    return {"vocab_size": VOCAB_SIZE, "depth": DEPTH, "width": DEPTH * ASPECT_RATIO,
            "head_dim": HEAD_DIM, "window_pattern": WINDOW_PATTERN,
            "short_window": SHORT_WINDOW, "rope_base": ROPE_BASE, "softcap": SOFTCAP}


def newton_schulz(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Approximately orthogonalize a matrix (the Muon update)."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g / (g.norm() + 1e-7)
    transposed = x.size(0) > x.size(1)
    if transposed:
        x = x.T
    for _ in range(steps):
        s = x @ x.T
        x = a * x + (b * s + c * s @ s) @ x
    return x.T if transposed else x


class Muon(torch.optim.Optimizer):
    def __init__(self, params: list[torch.Tensor], lr: float, momentum: float = 0.95) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                buf = self.state.setdefault(p, {}).setdefault("buf", torch.zeros_like(p))
                buf.mul_(group["momentum"]).add_(p.grad)
                update = newton_schulz(p.grad + group["momentum"] * buf)
                scale = max(1.0, p.size(0) / p.size(1)) ** 0.5
                p.add_(update, alpha=-group["lr"] * scale)


def optimizers(model: GPT) -> list[torch.optim.Optimizer]:
    matrices = [p for n, p in model.blocks.named_parameters() if p.ndim == 2]
    scalars = [p for n, p in model.blocks.named_parameters() if p.ndim < 2]
    betas = (ADAM_BETA1, ADAM_BETA2)
    groups = [{"params": [model.embed.weight], "lr": EMBED_LR},
              {"params": [model.head.weight], "lr": HEAD_LR},
              {"params": scalars, "lr": SCALAR_LR, "weight_decay": 0.0}]
    if OPTIMIZER == "muon":
        adam = torch.optim.AdamW(groups, betas=betas, weight_decay=WEIGHT_DECAY)
        return [adam, Muon(matrices, lr=MUON_LR)]
    groups.append({"params": matrices, "lr": MATRIX_LR})
    return [torch.optim.AdamW(groups, betas=betas, weight_decay=WEIGHT_DECAY)]


def lr_factor(progress: float) -> float:
    """Warmup, constant, then a linear warmdown to FINAL_LR_FRAC, over the time budget."""
    if progress < WARMUP_FRAC:
        return (progress + 1e-3) / WARMUP_FRAC
    if progress > 1.0 - WARMDOWN_FRAC:
        fraction = (1.0 - progress) / WARMDOWN_FRAC
        return FINAL_LR_FRAC + (1.0 - FINAL_LR_FRAC) * max(fraction, 0.0)
    return 1.0


def batches(tokens: np.ndarray, device: torch.device, generator: np.random.Generator):
    while True:
        starts = generator.integers(0, len(tokens) - SEQ_LEN - 1, size=BATCH_SIZE)
        chunk = np.stack([tokens[s:s + SEQ_LEN + 1] for s in starts]).astype(np.int64)
        chunk = torch.from_numpy(chunk).to(device)
        yield chunk[:, :-1], chunk[:, 1:]


def main() -> None:
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    budget = float(os.environ.get("RATCHET_TIME_BUDGET")
                   or os.environ.get("TIME_BUDGET") or (300 if cuda else 60))
    torch.manual_seed(SEED)
    if not cuda:
        torch.set_num_threads(os.cpu_count() or 1)
    model = GPT(**model_config()).to(device)
    opts = optimizers(model)
    initial_lrs = [[group["lr"] for group in opt.param_groups] for opt in opts]
    step_model = torch.compile(model) if cuda else model
    data = batches(load_tokens("train"), device, np.random.default_rng(SEED))
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast(
        "cpu", enabled=False)

    steps, tokens, trained, loss_value = 0, 0, 0.0, float("nan")
    recent, reported = [], 0  # training losses since the last report; the last tenth reported
    while trained < budget:
        start = time.perf_counter()
        for opt, lrs in zip(opts, initial_lrs, strict=True):
            for group, lr in zip(opt.param_groups, lrs, strict=True):
                group["lr"] = lr * lr_factor(trained / budget)
        x, y = next(data)
        with autocast:
            loss = F.cross_entropy(step_model(x).view(-1, VOCAB_SIZE), y.reshape(-1))
        loss.backward()
        for opt in opts:
            opt.step()
        model.zero_grad(set_to_none=True)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise SystemExit(f"training loss is {loss_value} at step {steps}: diverged")
        if cuda:
            torch.cuda.synchronize()
        if steps > 0 or not cuda:  # the first CUDA step compiles: not counted
            trained += time.perf_counter() - start
        steps += 1
        tokens += x.numel()
        recent.append(loss_value)
        if int(10 * trained / budget) > reported and reported < 9:
            # An intermediate value at each tenth of the budget (ratchet.steps' line format):
            # the mean training loss since the last one. ratchet may stop a run whose curve
            # is hopeless next to earlier runs'.
            reported = int(10 * trained / budget)
            mean = sum(recent) / len(recent)
            print(f"ratchet-step: {10 * reported} train_loss: {mean:.4f}", flush=True)
            recent = []

    torch.save({"config": model_config(), "state_dict": model.state_dict()}, "checkpoint.pt")
    if cuda:
        peak_gb = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    params = sum(p.numel() for p in model.parameters())
    print(f"steps: {steps}")
    print(f"tokens: {tokens}")
    print(f"params: {params}")
    print(f"train_loss: {loss_value:.4f}")
    print(f"tokens_per_s: {tokens / max(trained, 1e-9):.0f}")
    print(f"memory_gb: {peak_gb:.3f}")
    print(f"device: {device.type}, time budget {budget:g}s, trained {trained:.1f}s")


if __name__ == "__main__":
    main()
