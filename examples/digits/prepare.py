"""Fixed train / validation / test splits of scikit-learn's bundled digits (protected)."""

import numpy as np
from sklearn.datasets import load_digits

SPLIT_SEED = 20240601
FRACTIONS = {"train": 0.6, "validation": 0.2, "test": 0.2}


def load_split(name: str) -> tuple[np.ndarray, np.ndarray]:
    digits = load_digits()
    order = np.random.default_rng(SPLIT_SEED).permutation(len(digits.target))
    n_train = int(FRACTIONS["train"] * len(order))
    n_val = int(FRACTIONS["validation"] * len(order))
    bounds = {"train": (0, n_train), "validation": (n_train, n_train + n_val),
              "test": (n_train + n_val, len(order))}
    start, stop = bounds[name]
    rows = order[start:stop]
    return digits.data[rows] / 16.0, digits.target[rows]
