"""The tinygpt baseline on this machine: val_bpb, tokens per second and peak memory.

Trains the unmodified examples/tinygpt for TIME_BUDGET seconds once per seed (the SEED knob
rewritten in place), evaluates each with the protected evaluator, and prints each run and the
mean and standard deviation across seeds: the task's noise. On a CUDA machine it also prints
model FLOPs utilisation (6 * parameters * tokens per second, over the GPU's bf16 peak).

    python benchmarks/tinygpt.py [--runs 5] [--budget 60] [--peak-tflops 989]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from ratchet.knobs.source import rewrite_knobs

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tinygpt"


def number(name: str, text: str) -> float:
    match = re.search(rf"^{name}:\s*(\S+)", text, re.MULTILINE)
    if not match:
        raise SystemExit(f"no {name} in output:\n{text[-2000:]}")
    return float(match.group(1))


def run(root: Path, seed: int, budget: float) -> dict[str, float]:
    train = root / "train.py"
    train.write_text(rewrite_knobs(train.read_text(), {"SEED": seed}))
    env = {"TIME_BUDGET": str(budget), "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"}
    trained = subprocess.run([sys.executable, "train.py"], cwd=root, env=env, check=True,
                             capture_output=True, text=True).stdout
    scored = subprocess.run([sys.executable, "evaluate.py"], cwd=root, env=env, check=True,
                            capture_output=True, text=True).stdout
    device = "cuda" if "device: cuda" in trained else "cpu"
    return {"val_bpb": number("val_bpb", scored), "tokens_per_s": number("tokens_per_s", trained),
            "memory_gb": number("memory_gb", trained), "params": number("params", trained),
            "steps": number("steps", trained), "cuda": device == "cuda"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--budget", type=float, default=None, help="seconds (default 60, GPU 300)")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="bf16 dense peak")
    args = parser.parse_args()
    import torch

    budget = args.budget or (300.0 if torch.cuda.is_available() else 60.0)
    root = Path(tempfile.mkdtemp(prefix="ratchet-tinygpt-")) / "tinygpt"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("prepared", "checkpoint.pt"))
    subprocess.run([sys.executable, "prepare.py"], cwd=root, check=True, capture_output=True)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"tinygpt baseline, TIME_BUDGET={budget:g}s, {args.runs} seeds, device {device}, "
          f"torch threads {torch.get_num_threads()}")
    results = []
    for seed in range(args.runs):
        r = run(root, seed, budget)
        results.append(r)
        line = (f"seed {seed}: val_bpb {r['val_bpb']:.4f}  steps {r['steps']:.0f}  "
                f"tokens/s {r['tokens_per_s']:.0f}  peak memory {r['memory_gb']:.2f} GB")
        if r["cuda"]:
            mfu = 6 * r["params"] * r["tokens_per_s"] / (args.peak_tflops * 1e12)
            line += f"  MFU {100 * mfu:.1f}%"
        print(line, flush=True)
    bpb = [r["val_bpb"] for r in results]
    spread = statistics.stdev(bpb) if len(bpb) > 1 else 0.0
    print(f"val_bpb mean {statistics.fmean(bpb):.4f}, std over seeds {spread:.4f}")
    print(f"tokens/s mean {statistics.fmean(r['tokens_per_s'] for r in results):.0f}, "
          f"peak memory max {max(r['memory_gb'] for r in results):.2f} GB, "
          f"params {results[0]['params']:.0f}")


if __name__ == "__main__":
    main()
