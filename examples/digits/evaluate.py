"""The protected evaluator: accuracy of model.pkl on the validation (or --holdout: test) split.

It loads only scikit-learn and NumPy objects from the pickle, so edited code cannot smuggle in
a model whose predict() reads the answers.
"""

import pickle
import sys

from prepare import load_split

ALLOWED = ("sklearn.", "numpy", "builtins", "copyreg", "_codecs")


class SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # type: ignore[no-untyped-def]
        if not module.startswith(ALLOWED):
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


split = "test" if "--holdout" in sys.argv else "validation"
with open("model.pkl", "rb") as f:
    model = SafeUnpickler(f).load()
X, y = load_split(split)
accuracy = float((model.predict(X) == y).mean())
print(f"accuracy: {accuracy:.6f}")
