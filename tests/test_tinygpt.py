"""examples/tinygpt: the protected data and evaluator, and the task end to end through the loop."""

import importlib
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import EXAMPLES, git
from test_integrity import edit, patch_from

pytest.importorskip("torch")
pytest.importorskip("tokenizers")

from ratchet.study import open_study  # noqa: E402


@pytest.fixture(scope="module")
def prepare(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """prepare.py imported from a private copy of the example, with its data built."""
    root = tmp_path_factory.mktemp("tinygpt") / "tinygpt"
    shutil.copytree(EXAMPLES / "tinygpt", root, ignore=shutil.ignore_patterns(
        "prepared", "checkpoint.pt", "__pycache__"))
    sys.path.insert(0, str(root))
    module = importlib.import_module("prepare")
    module.load_tokens("train")
    yield module
    sys.path.remove(str(root))
    sys.modules.pop("prepare", None)


def test_a_short_run_is_scored_on_its_share_of_the_same_tokens(
        prepare: object, monkeypatch: pytest.MonkeyPatch) -> None:
    evaluate = importlib.import_module("evaluate")
    try:
        counts = {}
        for horizon in ("0.25", "0.01", "1", "4"):
            monkeypatch.setenv("RATCHET_HORIZON", horizon)
            counts[horizon] = evaluate.evaluated_tokens()
    finally:
        for name in ("evaluate", "predict"):
            sys.modules.pop(name, None)
    full = evaluate.EVAL_TOKENS
    assert counts == {"0.25": full // 4, "0.01": evaluate.SCREEN_TOKENS, "1": full, "4": full}


def test_token_bytes_count_the_true_utf8_length(prepare: object) -> None:
    tokenizer = prepare.load_tokenizer()
    table = prepare.token_bytes(tokenizer)
    text = "naïve café → 数据 # comment\n"
    ids = tokenizer.encode(text).ids
    assert sum(len(table[i]) for i in ids) == len(text.encode("utf-8"))
    # some token here is only part of a UTF-8 character: decoding it alone would inflate
    assert any(not _is_utf8(table[i]) for i in ids)
    inflated = sum(len(tokenizer.decode([i]).encode("utf-8")) for i in ids)
    assert inflated > len(text.encode("utf-8"))


@pytest.mark.parametrize(("path", "split"), [("prepared/train.bin", "train"),
                                           ("data/validation.jsonl.xz", "validation")])
def test_data_that_differs_from_the_pinned_hashes_is_refused(prepare: object, path: str,
                                                             split: str) -> None:
    path = prepare.HERE / path
    original = path.read_bytes()
    try:
        path.write_bytes(original[:-2] + bytes([original[-2] ^ 1]) + original[-1:])
        with pytest.raises(prepare.DataMismatch, match="pinned sha256"):
            prepare.load_tokens(split)
    finally:
        path.write_bytes(original)
    assert len(prepare.load_tokens(split)) > 32768


def test_the_hidden_splits_never_reach_the_disk(prepare: object) -> None:
    assert len(prepare.load_tokens("validation")) > 32768
    assert sorted(p.name for p in prepare.OUT.iterdir()) == ["tokenizer.json", "train.bin"]


def test_splits_are_fixed_by_document_name(prepare: object) -> None:
    names = [f"mod{i}.py" for i in range(200)]
    splits = [prepare.split_of(n) for n in names]
    assert splits == [prepare.split_of(n) for n in names]
    assert {"train", "validation", "holdout"} == set(splits)
    assert splits.count("train") > 150


NON_CAUSAL = ("    mask = i[None, :] <= i[:, None]\n", "    mask = i[None, :] >= 0 * i[:, None]\n")
FAKE_METRIC = ('    print(f"steps: {steps}")',
               '    print("val_bpb: 0.001")\n    print(f"steps: {steps}")')


def test_tinygpt_end_to_end_through_the_loop(make_repo: Callable[..., Path]) -> None:
    repo = make_repo("tinygpt", replace={"ratchet.toml": ('rule = "noise-aware"',
                                                          'rule = "greedy"')})
    short_budget(repo)
    assert "prepared" not in git(repo, "ls-files")
    study = open_study(repo, "e2e", proposer="random", seed=0)

    fake = study.try_patch(patch_from(repo, edit("train.py", *FAKE_METRIC)), "fake metric")
    baseline = study.experiments()[0]
    assert baseline.status == "keep" and 1.0 < baseline.value < 8.0
    assert baseline.holdout is not None and baseline.secondary["steps"] >= 1
    assert fake.status in ("keep", "discard") and fake.value > 1.0  # the fake line is ignored
    assert "val_bpb: 0.001" in Path(fake.log_path).read_text()

    causal = study.try_patch(patch_from(repo, edit("train.py", *NON_CAUSAL)), "peek ahead",
                             onto_base=True)
    assert causal.status == "void"
    assert "model is not causal" in causal.reason

    for path in ("data/manifest.json", "prepare.py", "evaluate.py"):
        tamper = patch_from(repo, edit(path, "a", "b"))
        refused = study.try_patch(tamper, f"edit {path}", onto_base=True)
        assert refused.status == "void" and f"{path}: protected file" in refused.reason


# Edited code that looks for the hidden data: in the command phase and, imported by predict.py,
# in the model process that runs beside the evaluator.
PEEK = ("import torch.nn.functional as F\n", "import torch.nn.functional as F\n" + """
import sys as _sys
for _name in ("data/validation.jsonl.xz", "data/holdout.jsonl.xz", "prepared/validation.bin"):
    try:
        _size = len(open(_name, "rb").read())
    except OSError as _error:
        _size = type(_error).__name__
    print(f"peek {_name}: {_size}", file=_sys.stderr)
""")
# Edited code that slows its own clock to train ten times longer than its budget.
SLOW_CLOCK = ("import torch.nn.functional as F\n", "import torch.nn.functional as F\n" + """
_real_clock = time.perf_counter
_start = _real_clock()
time.perf_counter = lambda: _start + (_real_clock() - _start) / 10
""")


def short_budget(repo: Path) -> None:
    """A 3 s training budget (12 s of grace: tokenizer, start-up, saving) for the tests, every
    run at the full budget ([fidelity] off: these tests are about one run's protection)."""
    toml = repo / "ratchet.toml"
    text = toml.read_text().replace('budget = "60s"', 'budget = "3s"\nbudget_grace = "12s"')
    assert "horizons = [0.25]" in text
    toml.write_text(text.replace("horizons = [0.25]", "horizons = []"))
    git(repo, "commit", "-qam", "short budget")


def test_edited_code_never_sees_the_hidden_splits_and_buys_no_time(
        make_repo: Callable[..., Path]) -> None:
    repo = make_repo("tinygpt", replace={"ratchet.toml": ('rule = "noise-aware"',
                                                          'rule = "greedy"')})
    short_budget(repo)
    study = open_study(repo, "attacks", proposer="random", seed=0)
    peek = study.try_patch(patch_from(repo, edit("train.py", *PEEK)), "peek at the answers")
    assert peek.status in ("keep", "discard")
    log = Path(peek.log_path).read_text()
    model_log = Path(peek.log_path).with_suffix(".predict.log").read_text()
    for seen in (log, model_log):  # the command phase, then the model process
        assert "peek data/validation.jsonl.xz: PermissionError\n" in seen
        assert "peek data/holdout.jsonl.xz: PermissionError\n" in seen
        assert "peek prepared/validation.bin: FileNotFoundError\n" in seen
    assert "peek" not in log.split("==> ratchet: evaluate:")[1]  # never beside the evaluator

    slow = study.try_patch(patch_from(repo, edit("train.py", *SLOW_CLOCK)), "slow clock",
                           onto_base=True)
    assert slow.status == "timeout"
    assert slow.reason.startswith("over budget: the command phase ran past its compute budget "
                                  "of 3s + 12s grace")
    assert 14 < slow.wall_s < 40
    assert study.best().number != slow.number


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
