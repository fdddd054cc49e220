"""examples/digits: the evaluator never loads the pickle the edited code wrote; the model runs in
predict.py, and a malformed answer from it is voided, not scored."""

import io
import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLES
from test_integrity import edit, patch_from

pytest.importorskip("sklearn")

from ratchet.study import open_study  # noqa: E402


class Reduced:
    """Pickles as `eval(expression)`: what runs when the pickle is loaded is the expression."""

    def __init__(self, expression: str) -> None:
        self.expression = expression

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (eval, (self.expression,))


def model_predicting(body: str) -> str:
    """An expression for an object whose predict(X) returns `body` (X in scope)."""
    return f"type('M', (), {{'predict': lambda self, X: {body}}})()"


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the example with the unedited train.py's model.pkl (and a copy, honest.pkl)."""
    root = tmp_path_factory.mktemp("digits") / "digits"
    shutil.copytree(EXAMPLES / "digits", root, ignore=shutil.ignore_patterns(
        "model.pkl", "__pycache__"))
    subprocess.run([sys.executable, "train.py"], cwd=root, check=True, capture_output=True)
    shutil.copy(root / "model.pkl", root / "honest.pkl")
    return root


def evaluate(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """evaluate.py run by hand: it starts predict.py itself (unsandboxed)."""
    env = {k: v for k, v in os.environ.items() if k != "RATCHET_PREDICT_FDS"}
    return subprocess.run([sys.executable, "evaluate.py", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=60)


def write_model(root: Path, expression: str) -> None:
    (root / "model.pkl").write_bytes(pickle.dumps(Reduced(expression)))


def accuracy_of(root: Path, split: str) -> float:
    sys.path.insert(0, str(root))
    try:
        from prepare import load_split
    finally:
        sys.path.remove(str(root))
        sys.modules.pop("prepare", None)
    X, y = load_split(split)
    with open(root / "honest.pkl", "rb") as f:
        model = pickle.load(f)
    return float((model.predict(X) == y).mean())


@pytest.mark.parametrize(("args", "split"), [((), "validation"), (("--holdout",), "test")])
def test_the_honest_model_scores_its_own_accuracy(digits: Path, args: tuple[str, ...],
                                                  split: str) -> None:
    shutil.copy(digits / "honest.pkl", digits / "model.pkl")
    result = evaluate(digits, *args)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"accuracy: {accuracy_of(digits, split):.6f}\n"
    assert 0.8 < accuracy_of(digits, split) < 1.0


def test_the_pickle_runs_in_the_model_process_and_never_reaches_the_metric(
        digits: Path) -> None:
    marker = digits / "unpickled-by"
    marker.unlink(missing_ok=True)
    write_model(digits, f"(open({str(marker)!r}, 'w').write(' '.join(__import__('sys').argv)),"
                        " print('accuracy: 0.999'), __import__('sys').stdout.flush(),"
                        " __import__('pickle').load(open('honest.pkl', 'rb')))[-1]")
    result = evaluate(digits)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"accuracy: {accuracy_of(digits, 'validation'):.6f}\n"
    assert marker.read_text().endswith("predict.py")  # loaded there, never in evaluate.py
    assert "accuracy: 0.999" in result.stderr  # the model's prints: its log, not the metric's


def npy_header(shape: tuple[int, ...], dtype: str) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


# fd 3 in predict.py is its reply pipe (the first descriptor it opens)
RAW = "(__import__('os').write(3, {data!r}), __import__('time').sleep(5))[0]"


@pytest.mark.parametrize(("answer", "reason"), [
    ("X[:, 10]", "labels of type float64, expected integers"),
    ("[str(v) for v in X[:, 10]]", "expected integers"),
    ("(X > 0.5).astype(int)", "labels of shape (359, 64), expected (359,)"),
    ("X[:-1, 10].astype(int)", "labels of shape (358,), expected (359,)"),
    (RAW.format(data=b"garbage, not an array"), "not a .npy array"),
    (RAW.format(data=npy_header((10**12,), "<i8")), "shape (1000000000000,), expected (359,)"),
    (RAW.format(data=npy_header((359,), "|O")), "expected integers"),
])
def test_a_malformed_answer_voids_the_run(digits: Path, answer: str, reason: str) -> None:
    write_model(digits, model_predicting(answer))
    result = evaluate(digits)
    assert result.returncode == 3, result.stderr
    assert result.stdout.startswith("ratchet-void: ") and reason in result.stdout
    assert "accuracy" not in result.stdout


@pytest.mark.parametrize("answer", [
    "__import__('sys').exit(1)",
    "(__import__('os').write(3, {data!r}), __import__('os')._exit(0))".format(
        data=npy_header((359,), "<i8") + b"\0" * 100),  # a cut-short answer
])
def test_a_model_that_stops_answering_is_a_crash(digits: Path, answer: str) -> None:
    write_model(digits, model_predicting(answer))
    result = evaluate(digits)
    assert result.returncode == 2
    assert result.stdout == "the model process stopped answering (see its log)\n"


# The attack the old evaluator kept: a pickle that, when loaded, builds a model whose predict()
# reads the hidden labels. Loaded in the sandboxed model process, it finds no labels to read.
PEEK = ("    pickle.dump(model, f)", """    pickle.dump(_Peek(), f)
    print("accuracy: 0.999")""")
PEEK_CLASS = ("from sklearn.neural_network import MLPClassifier\n",
              """from sklearn.neural_network import MLPClassifier


class _Peek:
    def __reduce__(self):
        return (eval, ("(print('accuracy: 0.999'), type('M', (), {'predict': lambda self, X: "
                       "__import__('prepare').load_split('validation')[1]})())[1]",))
""")


def test_a_pickle_that_reads_the_answers_is_not_scored(make_repo: Callable[..., Path]) -> None:
    repo = make_repo("digits", replace={"ratchet.toml": ('rule = "noise-aware"\nbaseline_runs = 2',
                                                         'rule = "greedy"\nbaseline_runs = 1')})
    study = open_study(repo, "peek", proposer="random", seed=0)

    def change(repo: Path) -> None:
        edit("train.py", *PEEK)(repo)
        edit("train.py", *PEEK_CLASS)(repo)

    peek = study.try_patch(patch_from(repo, change), "labels from the pickle")
    baseline = study.experiments()[0]
    assert baseline.status == "keep" and 0.8 < baseline.value < 1.0
    assert peek.status == "crash" and peek.value is None
    model_log = Path(peek.log_path).with_suffix(".predict.log").read_text()
    assert "PermissionError" in model_log and "data/validation.npz" in model_log
    assert "accuracy: 0.999" in model_log
    evaluate_output = Path(peek.log_path).read_text().split("==> ratchet: evaluate")[1]
    assert "accuracy: 0.999" not in evaluate_output
