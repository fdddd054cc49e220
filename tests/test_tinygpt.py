"""examples/tinygpt: the protected data and evaluator, and the task end to end through the loop."""

import importlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import EXAMPLES, git
from test_integrity import edit, patch_from

torch = pytest.importorskip("torch")
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


# Stand-ins for train.py, run through the real evaluate.py + predict.py pair (by hand: the
# evaluator starts the model process itself): a bigram table, honest or not.
TOY_TRAIN = """
import torch
import torch.nn.functional as F

SEQ_LEN = 64


class GPT(torch.nn.Module):
    def __init__(self, vocab_size, mode="honest", after=0):
        super().__init__()
        self.vocab_size, self.mode, self.after, self.calls = vocab_size, mode, after, 0
        self.table = torch.nn.Parameter(torch.zeros(vocab_size, vocab_size))

    def forward(self, idx):
        self.calls += 1
        logits = self.table[idx]
        if self.calls <= self.after:  # honest and unchanging for its first calls
            return logits
        if self.mode == "peek":  # reads the next token from its input
            logits = logits + 10.0 * F.one_hot(torch.roll(idx, -1, 1), self.vocab_size)
        if self.mode == "learn":  # trains on every window it is sent, after answering
            self.table.data[idx[0, :-1], idx[0, 1:]] += 1.0
        if self.mode == "count":
            logits = logits + 1e-3 * self.calls
        return logits


if __name__ == "__main__":
    import json, os
    config = {"vocab_size": 1024, **json.loads(os.environ.get("TOY_CONFIG", "{}"))}
    torch.save({"config": config, "state_dict": GPT(**config).state_dict()}, "checkpoint.pt")
"""


@pytest.fixture
def toy(prepare: object, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """evaluate.py run by hand on a screen's share of the tokens, with a toy model."""
    root = tmp_path / "tinygpt"
    shutil.copytree(prepare.HERE, root, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "train.py").write_text(TOY_TRAIN)

    def evaluate(**config: object) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "RATCHET_PREDICT_FDS"}
        env.update(RATCHET_HORIZON="0.01", TOY_CONFIG=json.dumps(config))
        subprocess.run([sys.executable, "train.py"], cwd=root, env=env, check=True)
        return subprocess.run([sys.executable, "evaluate.py"], cwd=root, env=env,
                              capture_output=True, text=True, timeout=120)

    return evaluate


def test_an_honest_model_is_scored_on_the_same_tokens_and_bytes(
        prepare: object, toy: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    result = toy()
    assert result.returncode == 0, result.stderr
    # a table of zeros predicts every token with probability 1/1024: 10 bits per token
    tokenizer = prepare.load_tokenizer()
    targets = prepare.tokens_of("validation", tokenizer)[1:4096 + 1]
    table = prepare.token_bytes(tokenizer)
    expected = 10 * len(targets) / sum(len(table[t]) for t in targets)
    assert result.stdout == f"val_bpb: {expected:.6f}\n"


@pytest.mark.parametrize("after", [0, 6, 40])
def test_a_model_that_reads_ahead_after_its_first_calls_is_voided(
        toy: Callable[..., subprocess.CompletedProcess[str]], after: int) -> None:
    result = toy(mode="peek", after=after)
    assert result.returncode == 3, result.stderr
    assert result.stdout.startswith("ratchet-void: model is not causal")


@pytest.mark.parametrize("mode", ["learn", "count"])
@pytest.mark.parametrize("after", [0, 6])
def test_a_model_that_changes_between_calls_is_voided(
        toy: Callable[..., subprocess.CompletedProcess[str]], mode: str, after: int) -> None:
    result = toy(mode=mode, after=after)
    assert result.returncode == 3, result.stderr
    assert result.stdout.startswith("ratchet-void: model is not causal")


def test_the_checks_are_mixed_among_the_scoring_calls(prepare: object,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Every call is a window the model must answer the same way: the twins' places in the
    order differ from run to run, and the first calls are scoring windows as often as not."""
    evaluate = importlib.import_module("evaluate")
    try:
        sent: list[torch.Tensor] = []

        def model(x: torch.Tensor) -> torch.Tensor:
            sent.append(x[0].clone())
            return torch.zeros(1, x.shape[1], 1024)

        tokens = torch.from_numpy(prepare.tokens_of("validation", prepare.load_tokenizer())
                                  .astype("int64"))
        places = []
        for _ in range(3):
            sent.clear()
            evaluate.bits_per_byte(model, tokens[:4097], tokens, 64,
                                   torch.ones(1024, dtype=torch.int64), 1024, 4096)
            windows = {tuple(tokens[s:s + 64].tolist()) for s in range(0, 4096, 64)}
            places.append([i for i, x in enumerate(sent) if tuple(x.tolist()) not in windows])
    finally:
        for name in ("evaluate", "predict"):
            sys.modules.pop(name, None)
    assert len(sent) == 64 + 16 and all(len(p) == 16 for p in places)  # a twin per 4 windows
    assert all(p != list(range(16)) for p in places)  # the checks do not come first ...
    assert len({tuple(p) for p in places}) == 3  # ... nor at the same places twice


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
