"""The noise model of examples/noisy (protected): score = N(1 - EFFECT * SIGMA * improve, SIGMA)."""

import random

SIGMA = 0.01
EFFECT = 2.0  # the true gain of IMPROVE = True, in standard deviations of the noise


def measure(improve: bool) -> float:
    return random.gauss(1.0 - (EFFECT * SIGMA if improve else 0.0), SIGMA)
