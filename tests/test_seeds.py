"""Hard-coded seeds: found on the parsed code, rewritten in place, and a seed-only change told
apart from any other (ratchet.knobs.seeds)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import commit_all, git

from ratchet.config import config_from_text
from ratchet.engine import SilentReporter
from ratchet.errors import ConfigError, PatchRejected, RatchetError, UsageError
from ratchet.knobs.seeds import SeedSite, find_seeds, only_seeds_differ, rewrite_seeds
from ratchet.records import Experiment, StudyRecord
from ratchet.store.database import Store
from ratchet.study import open_study

NANOGPT = """\
import torch
seed_offset = 0
torch.manual_seed(1337 + seed_offset)
"""


def _codes(text: str) -> list[tuple[int, str, str]]:
    return [(s.line, s.code, s.kind) for s in find_seeds(text, "train.py")]


def test_finds_calls_with_an_int_in_their_first_argument() -> None:
    text = NANOGPT + "import random\nrandom.seed(0)\nimport numpy as np\nnp.random.seed(42)\n"
    sites = find_seeds(text, "train.py")
    assert [(s.line, s.code, s.kind) for s in sites] == [
        (2, "seed_offset = 0", "assignment"),
        (3, "torch.manual_seed(1337 + seed_offset)", "call"),
        (5, "random.seed(0)", "call"),
        (7, "np.random.seed(42)", "call"),
    ]
    assert str(sites[1]) == "train.py:3 torch.manual_seed(1337 + seed_offset)"
    assert sites[1] == SeedSite("train.py", 3, "torch.manual_seed(1337 + seed_offset)", "call")


def test_every_seeding_function_by_its_last_attribute() -> None:
    calls = ["torch.cuda.manual_seed_all(3)", "transformers.set_seed(4)",
             "lightning.seed_everything(5)", "mmcv.runner.set_random_seed(6)",
             "jax.random.PRNGKey(7)", "jax.random.key(8)", "np.random.default_rng(9)",
             "np.random.RandomState(10)", "torch.Generator().manual_seed(11)",
             "random.Random(12)", "set_seed(13)"]
    text = "\n".join(calls) + "\n"
    assert [s.code for s in find_seeds(text, "a.py")] == calls


def test_keyword_seeds_in_any_call() -> None:
    text = ("rng = make(seed=3)\nsplit(x, y, random_state=0)\nenv.reset(seed=-1)\n"
            "TrainingArguments(data_seed=7, seed=8)\nfit(x, random_state=None)\n")
    assert _codes(text) == [(1, "rng = make(seed=3)", "keyword"),
                            (2, "split(x, y, random_state=0)", "keyword"),
                            (3, "env.reset(seed=-1)", "keyword"),
                            (4, "TrainingArguments(data_seed=7, seed=8)", "keyword")]


def test_seed_settings_of_any_case_and_option_defaults() -> None:
    text = ("SEED = 42\nseed = 1337\nrandom_seed: int = 7\nname = 'seed'\nSEED_LIST = [1]\n"
            "parser.add_argument('--seed', type=int, default=1234)\n"
            "parser.add_argument('--steps', type=int, default=100)\n"
            "def main():\n    seed = 5\n")
    assert _codes(text) == [(1, "SEED = 42", "assignment"), (2, "seed = 1337", "assignment"),
                            (3, "random_seed: int = 7", "assignment"),
                            (6, "parser.add_argument('--seed', type=int, default=1234)",
                             "option default"),
                            (9, "seed = 5", "assignment")]


def test_what_is_not_found_is_said() -> None:
    """Seeds computed in a call, taken from a list, or read from RATCHET_SEED are not sites;
    nor are keys of mappings, booleans, or anything in code that does not parse."""
    text = ("random.seed(int('137'))\nnp.random.seed(seeds[0])\nd.key(0)\n"
            "random.seed(int(os.environ.get('RATCHET_SEED', 0)) + 1)\n"
            "SEED = int(os.environ['RATCHET_SEED'])\nshuffle(x, seed=True)\n"
            "torch.manual_seed(seed)\nrandom.seed(f'{42}')\n")
    assert find_seeds(text, "a.py") == []
    assert find_seeds("random.seed(0\n", "a.py") == []
    assert find_seeds("x = 1\0\n", "a.py") == []


def test_rewrite_replaces_only_the_literals() -> None:
    text = ("import torch  # seed: 1337 stays in comments\nSEED = 42  # the seed\n"
            "torch.manual_seed(1337 + seed_offset)\nx = 1337\nsplit(x, random_state=2 ** 31 - 1)\n"
            "np.random.seed(-1)\nrandom.seed(0 if fixed else 1)\n")
    assert rewrite_seeds(text, "a.py", 987) == (
        "import torch  # seed: 1337 stays in comments\nSEED = 987  # the seed\n"
        "torch.manual_seed(987 + seed_offset)\nx = 1337\nsplit(x, random_state=987)\n"
        "np.random.seed(987)\nrandom.seed(987 if fixed else 987)\n")


def test_rewrite_keeps_other_text_byte_for_byte() -> None:
    """Multi-byte characters before a literal (ast counts columns in UTF-8 bytes), CRLF line
    endings, a byte-order mark and form feeds all survive."""
    text = "\ufeffname = 'é✓'; SEED = 3\r\nx = 1\r\n\x0cy = 2\r\nrandom.seed(\n    5,\n)\r\n"
    assert rewrite_seeds(text, "a.py", 11) == \
        "\ufeffname = 'é✓'; SEED = 11\r\nx = 1\r\n\x0cy = 2\r\nrandom.seed(\n    11,\n)\r\n"
    assert rewrite_seeds("random.seed(0\n", "a.py", 1) == "random.seed(0\n"


def test_rewritten_code_parses_and_has_the_seed_everywhere() -> None:
    rewritten = rewrite_seeds(NANOGPT + "SEED = 1\nrandom.seed(SEED)\n", "a.py", 4242)
    ast.parse(rewritten)
    assert [s.code for s in find_seeds(rewritten, "a.py")] == [
        "seed_offset = 4242", "torch.manual_seed(4242 + seed_offset)", "SEED = 4242"]


def test_only_seeds_differ() -> None:
    old = "SEED = 42\nLR = 0.1\ntorch.manual_seed(1337 + seed_offset)\n"
    assert only_seeds_differ(old, old.replace("42", "137"), "a.py")
    assert only_seeds_differ(old, old.replace("1337", "7") + "# lucky\n", "a.py")
    assert only_seeds_differ(old, old.replace("SEED = 42", "SEED = (\n    137\n)"), "a.py")
    assert not only_seeds_differ(old, old, "a.py")
    assert not only_seeds_differ(old, old + "# a comment only\n", "a.py")
    assert not only_seeds_differ(old, old.replace("0.1", "0.2").replace("42", "1"), "a.py")
    assert not only_seeds_differ(old, old.replace("seed_offset", "offset"), "a.py")
    # a seed moved out of sight is a real change of code, judged by its runs
    assert not only_seeds_differ(old, old.replace("1337 + seed_offset", "int('7')"), "a.py")
    assert not only_seeds_differ(old, "SEED = (\n", "a.py")


# Seeds through the loop: each run its own RATCHET_SEED, a baseline whose runs repeat one value
# behind a hard-coded seed, the [seeds] files, and changes that alter nothing but seeds.

SEED_ONLY = """\
import random
random.seed(1234)
print(f"score: {random.gauss(0.0, 1.0)}")
"""

SEEDED = """\
import random

SEED = 1234
SHIFT = 0.0
random.seed(SEED)
print(f"score: {random.gauss(SHIFT, 1.0)}")
"""

TASK = """\
[task]
editable = ["task.py"]
protected = ["prepare.py"]
command = "python task.py"
timeout = "30s"

[metric]
name = "score"
goal = "minimize"

[decision]
baseline_runs = 3
max_runs = 4
{decision}
{seeds}
[space]
SHIFT = {{ float = [-1.0, 1.0] }}
"""


class Said(SilentReporter):
    """Keeps what the engine says to the user."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def message(self, text: str) -> None:
        self.messages.append(text)


def _task(tmp_path: Path, code: str, decision: str = "", seeds: str = "") -> Path:
    repo = tmp_path / "task"
    repo.mkdir()
    (repo / "task.py").write_text(code if "SHIFT" in code else code + "SHIFT = 0.0\n")
    (repo / "prepare.py").write_text("SPLIT_SEED = 7\n")
    (repo / "ratchet.toml").write_text(TASK.format(decision=decision, seeds=seeds))
    git(repo, "init", "-q")
    commit_all(repo, "task")
    return repo


def _patch(repo: Path, old: str, new: str) -> str:
    path = repo / "task.py"
    original = path.read_text()
    path.write_text(original.replace(old, new))
    patch = git(repo, "diff")
    path.write_text(original)
    return patch


def test_a_baseline_repeating_one_value_behind_a_fixed_seed_stops_the_study(
        tmp_path: Path) -> None:
    repo = _task(tmp_path, SEED_ONLY)
    run = subprocess.run([sys.executable, "-m", "ratchet.cli", "run", "--plain",
                          "--proposer", "random", "--max-experiments", "5"],
                         cwd=repo, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    error = run.stderr.strip()
    assert len(error.splitlines()) == 1, error
    assert "the baseline's 3 runs all gave" in error
    assert "task.py:2 random.seed(1234) fixes the seed" in error
    assert "a gain could not be told from a lucky seed" in error
    assert '[seeds] files = ["task.py"]' in error and "RATCHET_SEED" in error
    assert "[decision] deterministic = true" in error
    baseline, *rest = open_study(repo).experiments()
    assert baseline.status == "void" and len(set(baseline.values)) == 1
    assert len(baseline.seeds) == 3 and len(set(baseline.seeds)) == 3  # it had its seeds
    assert all(e.status != "keep" for e in rest) and open_study(repo).best() is None


def test_deterministic_true_keeps_a_repeating_baseline_and_goes_on(tmp_path: Path) -> None:
    repo = _task(tmp_path, SEED_ONLY, decision="deterministic = true")
    said = Said()
    study = open_study(repo, "det", proposer="random", seed=1)
    study.run(max_experiments=3, reporter=said)
    baseline, *proposals = study.experiments()
    assert baseline.status == "keep" and study.record.sigma == 0.0
    assert len(proposals) == 2 and all(e.status in ("keep", "discard") for e in proposals)
    assert said.messages == []


def test_varied_seeds_make_runs_differ_and_are_recorded(tmp_path: Path) -> None:
    repo = _task(tmp_path, SEEDED, seeds='[seeds]\nfiles = ["task.py"]\n')
    study = open_study(repo, "varied", proposer="external")
    seed_only = study.try_patch(_patch(repo, "SEED = 1234", "SEED = 137"), "a luckier seed")
    baseline = study.experiments()[0]
    assert baseline.status == "keep" and len(set(baseline.values)) == 3
    assert len(baseline.seeds) == 3 and len(set(baseline.seeds)) == 3
    assert study.record.sigma > 0
    log = Path(baseline.log_path).read_text()
    assert [f"==> ratchet: RATCHET_SEED={s}, written at task.py:3" for s in baseline.seeds] == \
        [line for line in log.splitlines() if line.startswith("==> ratchet: RATCHET_SEED")]
    assert seed_only.status == "void" and seed_only.values == []
    assert seed_only.reason == "rejected before running: changes nothing but seed values " \
                               "(task.py)"
    assert (repo / "task.py").read_text() == SEEDED  # the user's code is never rewritten
    # a real change beside a seed change is an experiment like any other
    both = study.try_patch(_patch(repo, "SHIFT = 0.0", "SHIFT = -0.5"), "a shift")
    assert both.status in ("keep", "discard") and len(both.seeds) == len(both.values) >= 1


def test_a_lucky_value_with_a_tiny_jitter_is_never_kept(tmp_path: Path) -> None:
    repo = _task(tmp_path, SEEDED, seeds='[seeds]\nfiles = ["task.py"]\n')
    study = open_study(repo, "jitter", proposer="external")
    lucky = study.try_patch(_patch(
        repo, 'print(f"score: {random.gauss(SHIFT, 1.0)}")',
        'print(f"score: {-3.0 + random.random() * 1e-4}")'), "a lucky draw, jittered")
    assert lucky.status == "discard", (lucky.decision, lucky.values)
    assert len(lucky.values) == 4 and len(set(lucky.values)) == 4  # four runs, all differ
    assert "did not vary with their seeds" in lucky.decision["reason"]
    assert lucky.decision["best_runs"] == 4  # judged where a keep would be decided
    assert study.best().number == 0


def _stopped(repo: Path, name: str) -> str:
    """The one line a study whose baseline repeats one value stops with; its baseline void."""
    with pytest.raises(RatchetError) as stop:
        open_study(repo, name, proposer="random", seed=0).run(max_experiments=3)
    baseline, *rest = open_study(repo, name).experiments()
    assert baseline.status == "void" and len(baseline.values) == 3
    assert len(set(baseline.values)) == 1 and rest == []
    message = str(stop.value)
    assert len(message.splitlines()) == 1 and "deterministic = true" in message
    return message


def test_a_value_that_ignores_the_varied_seeds_is_not_noise_free(tmp_path: Path) -> None:
    """The seed the value depends on comes from the command line: the one ratchet varies
    moves nothing, and that proves no absence of noise."""
    code = ("import random, sys\nSEED = 5\nrandom.seed(int(sys.argv[2]))\n"
            'print(f"score: {random.gauss(0.0, 1.0)}")\n')
    repo = _task(tmp_path, code, seeds='[seeds]\nfiles = ["task.py"]\n')
    _retask(repo, 'command = "python task.py"', 'command = "python task.py --seed 1337"')
    message = _stopped(repo, "steady")
    assert "although each had its own seed at task.py:2 SEED = 5" in message
    assert "set where ratchet does not vary it (the command line, a config file" in message
    assert "read RATCHET_SEED in the code" in message and "[seeds]" not in message


@pytest.mark.parametrize("code", [
    "import random, sys\nrandom.seed(int(sys.argv[2]))\n",  # --seed 1337 on the command line
    "import random, yaml\nrandom.seed(yaml.safe_load(open('c.yaml'))['seed'])\n",
    "import dataclasses, random\n@dataclasses.dataclass\nclass C:\n    seed: int = int('7')\n"
    "random.seed(C().seed)\n",
    "import os, random\nSEED_ENV = os.environ.get('SEED', '42')\nrandom.seed(int(SEED_ENV))\n",
], ids=["command line", "yaml", "dataclass field", "environment"])
def test_no_seed_ratchet_can_vary_is_not_noise_free(tmp_path: Path, code: str) -> None:
    repo = _task(tmp_path, code + 'print(f"score: {random.gauss(0.0, 1.0)}")\n')
    (repo / "c.yaml").write_text("seed: 1337\n")
    _retask(repo, 'command = "python task.py"', 'command = "python task.py --seed 1337"')
    message = _stopped(repo, "plain")
    assert "no seed ratchet can vary was found" in message
    assert "the command line" in message and "a config file" in message


def _retask(repo: Path, old: str, new: str) -> None:
    path = repo / "ratchet.toml"
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new))
    commit_all(repo, "task")


def test_seed_files_never_name_a_protected_file(tmp_path: Path) -> None:
    repo = _task(tmp_path, SEEDED)
    with pytest.raises(ConfigError, match=r"^ratchet.toml: \[seeds\].files: 'prepare.py' is "
                                          "protected"):
        config_from_text(TASK.format(decision="", seeds='[seeds]\nfiles = ["prepare.py"]\n'),
                         repo)
    with pytest.raises(ConfigError, match="deterministic: must be true or false"):
        config_from_text(TASK.format(decision='deterministic = "yes"', seeds=""), repo)
    (repo / "ratchet.toml").write_text(TASK.format(decision="",
                                                   seeds='[seeds]\nfiles = ["*.py"]\n'))
    commit_all(repo, "every file's seeds")
    with pytest.raises(ConfigError, match=r"\[seeds\].files: prepare.py is protected"):
        open_study(repo, "glob", proposer="random").run(max_experiments=1)


def test_seeds_round_trip_through_the_store(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    study = store.create_study(StudyRecord(name="s", task="t", repo_root="/r",
                                           base_commit="abc", proposer="tpe"))
    assert study.id is not None
    added = store.add_experiment(Experiment(study_id=study.id, number=0, kind="baseline",
                                            values=[1.0, 2.0], seeds=[11, 2**31 - 1]))
    assert added is not None and added.seeds == [11, 2**31 - 1]
    store.close()
    (got,) = Store(f"sqlite:///{tmp_path / 'store.db'}").experiments(study.id)
    assert (got.values, got.seeds) == ([1.0, 2.0], [11, 2**31 - 1])


def test_the_study_starts_again_once_its_seed_is_varied(tmp_path: Path) -> None:
    """The stopped baseline was never kept, so the fix in ratchet.toml restarts the study."""
    repo = _task(tmp_path, SEED_ONLY)
    with pytest.raises(RatchetError, match=r"task.py:2 random.seed\(1234\) fixes the seed"):
        open_study(repo, "again", proposer="random", seed=0).run(max_experiments=3)
    (repo / "ratchet.toml").write_text(TASK.format(decision="",
                                                   seeds='[seeds]\nfiles = ["task.py"]\n'))
    commit_all(repo, "vary the seed")
    study = open_study(repo, "again")
    study.run(max_experiments=3)
    baselines = [e for e in study.experiments() if e.kind == "baseline"]
    assert [b.status for b in baselines] == ["void", "keep"]
    values = baselines[-1].values  # the best may have been measured again since
    assert len(set(values)) == len(values) >= 3 and study.record.sigma > 0


def test_code_nested_too_deeply_to_compare_is_no_seed_change() -> None:
    deep = "SEED = 1\nx = " + " + ".join(["1"] * 1500) + "\n"  # parses; ast.dump recurses
    assert not only_seeds_differ(deep, deep.replace("SEED = 1", "SEED = 2"), "a.py")
    assert [s.code for s in find_seeds(deep, "a.py")] == ["SEED = 1"]  # found all the same


def test_a_sampler_setting_nothing_but_a_seed_knob_proposes_no_experiment(
        tmp_path: Path) -> None:
    repo = _task(tmp_path, SEEDED)
    toml = (repo / "ratchet.toml").read_text()
    (repo / "ratchet.toml").write_text(toml + "SEED = { int = [0, 100] }\n")
    commit_all(repo, "a seed in the space")
    with pytest.raises(UsageError, match=r"^ratchet.toml: \[space\].SEED: a seed is no knob"):
        open_study(repo, "seeded", proposer="random")  # refused before anything runs
    (repo / "ratchet.toml").write_text(toml)
    commit_all(repo, "no seed in the space")
    context = open_study(repo, "knobs", proposer="random").context
    base = context.record.base_commit
    with pytest.raises(PatchRejected, match=r"^changes nothing but seed values \(task.py\)$"):
        context.build_candidate(Experiment(study_id=context.id, number=1, kind="proposal",
                                           parent_commit=base, params={"SEED": 7}))
    # another knob beside it does not make a lucky seed a discovery
    with pytest.raises(PatchRejected, match=r"^changes how the code seeds its randomness: "
                                            r"task.py:3 SEED = 7$"):
        context.build_candidate(Experiment(study_id=context.id, number=2, kind="proposal",
                                           parent_commit=base, params={"SEED": 7, "SHIFT": 0.25}))
    _, scope = context.build_candidate(Experiment(
        study_id=context.id, number=3, kind="proposal", parent_commit=base,
        params={"SHIFT": 0.25}))
    assert scope == "in"


def test_one_name_for_the_run_seed() -> None:
    from ratchet.execute import evaluate
    from ratchet.knobs import seeds

    assert evaluate.SEED_VARIABLE == seeds.SEED_VARIABLE == "RATCHET_SEED"
    drawn = {evaluate.draw_seed() for _ in range(50)}
    assert len(drawn) > 45 and all(0 <= s < evaluate.SEED_LIMIT for s in drawn)
