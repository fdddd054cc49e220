"""Train a small neural network on the digits training split; the knobs are at the top."""

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

X, y = load_split("train")
model = MLPClassifier(
    hidden_layer_sizes=(HIDDEN,) * LAYERS,
    activation=ACTIVATION,
    alpha=ALPHA,
    batch_size=BATCH_SIZE,
    learning_rate_init=LEARNING_RATE,
    max_iter=EPOCHS,
    random_state=SEED,
)
model.fit(X, y)
with open("model.pkl", "wb") as f:
    pickle.dump(model, f)
print(f"trained: {EPOCHS} epochs, final training loss {model.loss_:.4f}")
