"""Fixed train / validation / test splits of the handwritten digits (protected).

The splits ship as files, data/<split>.npz (pixel values 0-16 and labels). The validation and
test files are hidden: the training command never sees them; only the protected evaluator does.

    python prepare.py --write-splits   # maintainers only: cut the splits from scikit-learn's copy
"""

import sys
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / "data"
SPLIT_SEED = 20240601
FRACTIONS = {"train": 0.6, "validation": 0.2, "test": 0.2}


def load_split(name: str) -> tuple[np.ndarray, np.ndarray]:
    with np.load(DATA / f"{name}.npz", allow_pickle=False) as split:
        return split["pixels"] / 16.0, split["labels"]


def write_splits() -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(SPLIT_SEED).permutation(len(digits.target))
    n_train = int(FRACTIONS["train"] * len(order))
    n_val = int(FRACTIONS["validation"] * len(order))
    bounds = {"train": (0, n_train), "validation": (n_train, n_train + n_val),
              "test": (n_train + n_val, len(order))}
    DATA.mkdir(exist_ok=True)
    for name, (start, stop) in bounds.items():
        rows = order[start:stop]
        np.savez_compressed(DATA / f"{name}.npz", pixels=digits.data[rows].astype(np.uint8),
                            labels=digits.target[rows])


if __name__ == "__main__" and "--write-splits" in sys.argv:
    write_splits()
