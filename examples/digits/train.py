"""Train a small neural network on the digits training split; the knobs are at the top.

A short run (ratchet's [fidelity], RATCHET_HORIZON below 1) trains that share of the epochs.
"""

import os
import pickle

from prepare import load_split
from sklearn.neural_network import MLPClassifier

HIDDEN = 16
LAYERS = 1
LEARNING_RATE = 0.001
ALPHA = 0.0001  # L2 penalty
BATCH_SIZE = 64
EPOCHS = 20
ACTIVATION = "relu"
SEED = 0

epochs = max(1, round(EPOCHS * float(os.environ.get("RATCHET_HORIZON", "1"))))
X, y = load_split("train")
model = MLPClassifier(
    hidden_layer_sizes=(HIDDEN,) * LAYERS,
    activation=ACTIVATION,
    alpha=ALPHA,
    batch_size=BATCH_SIZE,
    learning_rate_init=LEARNING_RATE,
    max_iter=epochs,
    random_state=SEED,
)
model.fit(X, y)
with open("model.pkl", "wb") as f:
    pickle.dump(model, f)
print(f"trained: {epochs} epochs, final training loss {model.loss_:.4f}")
