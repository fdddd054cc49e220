"""A candidate that changes how the code seeds its randomness is void, whatever form the seed
takes (ratchet.knobs.seeding), and a count of seeds is never taken for a seed."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import commit_all, git

from ratchet.knobs.seeding import seeding_change
from ratchet.knobs.seeds import find_seeds, is_seed_name, rewrite_seeds
from ratchet.study import open_study

TRAIN = """\
import os
import random

SEED = int(os.environ.get("RATCHET_SEED", 0))
SHIFT = 0.0
random.seed(SEED)
print(f"score: {random.gauss(SHIFT, 1.0)}")
"""

JITTER = ("SHIFT = 0.0", "SHIFT = 0.5")  # the small knob change a lucky seed hides behind

# (old, new) in train.py: each pins a seed the [seeds] rewrite cannot reach
PINNED = {
    "keyword": ("random.seed(SEED)", "random.seed(a=1075)"),
    "computed": ("random.seed(SEED)", "random.seed(int('137'))"),
    "through a name": ("random.seed(SEED)", "S = 137; random.seed(S)"),
    "dict key": ("random.seed(SEED)", "cfg = {'seed': 1075}\nrandom.seed(cfg['seed'])"),
    "subscript": ("random.seed(SEED)", "cfg = {}\ncfg['seed'] = 1075\nrandom.seed(cfg['seed'])"),
    "run seed overridden": ("import os\n", "import os\nos.environ['RATCHET_SEED'] = '1075'\n"),
    "run seed cancelled": ('int(os.environ.get("RATCHET_SEED", 0))',
                           "int(os.environ['RATCHET_SEED']) * 0 + 1075"),
    "numpy generator": ("random.seed(SEED)", "random.seed(SEED)\nimport numpy as np\n"
                        "rng = np.random.Generator(np.random.PCG64(1075))"),
    "removed": ("random.seed(SEED)\n", ""),
}


@pytest.mark.parametrize("old,new", PINNED.values(), ids=PINNED.keys())
def test_any_change_of_seeding_is_told(old: str, new: str) -> None:
    changed = TRAIN.replace(old, new).replace(*JITTER)
    difference = seeding_change({"train.py": TRAIN}, {"train.py": changed})
    assert difference is not None and difference.startswith("train.py:")


def test_the_difference_names_the_first_changed_line() -> None:
    changed = TRAIN.replace("random.seed(SEED)", "random.seed(a=1075)")
    assert seeding_change({"train.py": TRAIN}, {"train.py": changed}) == \
        "train.py:6 random.seed(a=1075)"
    gone = TRAIN.replace("random.seed(SEED)\n", "")
    assert seeding_change({"train.py": TRAIN}, {"train.py": gone}) == \
        "train.py:6 random.seed(SEED) (removed)"


def test_a_new_module_with_its_own_seeding_is_told() -> None:
    lucky = "import random\nrandom.seed(1075)\n"
    old = {"train.py": TRAIN, "luck.py": None}
    new = {"train.py": "import luck\n" + TRAIN, "luck.py": lucky}
    assert seeding_change(old, new) == "luck.py:2 random.seed(1075)"


@pytest.mark.parametrize("path,old,new", [
    ("config.yaml", "lr: 0.1\nseed: 42\n", "lr: 0.2\nseed: 1075\n"),
    ("config.yaml", "train:\n  random_state: 1\n", "train:\n  random_state: 2\n"),
    ("flags.json", '{"lr": 0.1, "data": {"random_seed": 1}}',
     '{"lr": 0.1, "data": {"random_seed": 7}}'),
    ("flags.toml", "lr = 0.1\nseed = 1\n", "lr = 0.1\nseed = 2\n"),
    ("config.yaml", "lr: 0.1\n", "lr: 0.1\nseed: 3\n"),
    ("run.sh", "python train.py --seed 1\n", "python train.py --seed 2\n"),
])
def test_seed_keys_of_data_and_flags_files_are_told(path: str, old: str, new: str) -> None:
    assert seeding_change({path: old}, {path: new}) is not None


def test_changes_that_leave_the_seeding_alone_are_not_told() -> None:
    same = {
        "a knob": TRAIN.replace(*JITTER),
        "formatting and comments": TRAIN.replace("random.seed(SEED)",
                                                 "random.seed( SEED )  # the run's own"),
        "moved": TRAIN.replace("SHIFT = 0.0\n", "") + "SHIFT = 0.0\n",
        "a count of seeds": TRAIN + "NUM_SEEDS = 5\n",
    }
    for why, changed in same.items():
        assert seeding_change({"train.py": TRAIN}, {"train.py": changed}) is None, why
    assert seeding_change({"c.yaml": "lr: 0.1\nseed: 1\n"}, {"c.yaml": "lr: 0.2\nseed: 1\n"}) \
        is None
    assert seeding_change({"README.md": "seed 1\n"}, {"README.md": "seed 2\n"}) is None
    device = "device = 'cpu'\ng = torch.Generator(device=device)\ng.manual_seed(SEED)\n"
    assert seeding_change({"a.py": device}, {"a.py": device.replace("cpu", "cuda")}) is None
    through = "S = 1\nrandom.seed(a=S)\n"  # ... but a name read as the seed is one
    assert seeding_change({"a.py": through}, {"a.py": through.replace("1", "2")}) == "a.py:1 S = 2"


SEED_TASK = """\
[task]
editable = ["train.py", "config.yaml"]
command = "python train.py"
timeout = "30s"

[metric]
name = "score"
goal = "minimize"

[decision]
baseline_runs = 3
max_runs = 4

[seeds]
files = ["train.py"]

[space]
SHIFT = { float = [-1.0, 1.0] }
"""


def _repo(tmp_path: Path) -> Path:
    repo = tmp_path / "task"
    repo.mkdir()
    (repo / "train.py").write_text(TRAIN)
    (repo / "config.yaml").write_text("seed: 1\n")
    (repo / "ratchet.toml").write_text(SEED_TASK)
    git(repo, "init", "-q")
    commit_all(repo, "task")
    return repo


def _patch(repo: Path, path: str, old: str, new: str) -> str:
    file = repo / path
    original = file.read_text()
    assert old in original
    file.write_text(original.replace(old, new))
    patch = git(repo, "diff")
    file.write_text(original)
    return patch


def test_a_lucky_pinned_seed_with_a_jitter_is_void_before_it_runs(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    study = open_study(repo, "pinned", proposer="external")
    pinned = study.try_patch(_patch(repo, "train.py", "SHIFT = 0.0\nrandom.seed(SEED)",
                                    "SHIFT = -0.05\nrandom.seed(a=1075)"), "a lucky seed")
    assert pinned.status == "void" and pinned.values == []
    assert pinned.reason == ("rejected before running: changes how the code seeds its "
                             "randomness: train.py:6 random.seed(a=1075)")
    in_config = study.try_patch(_patch(repo, "config.yaml", "seed: 1", "seed: 1075"),
                                "a lucky config seed")
    assert in_config.status == "void" and "config.yaml:1 seed: 1075" in in_config.reason
    seed_only = study.try_patch(_patch(repo, "train.py", 'get("RATCHET_SEED", 0)',
                                       'get("RATCHET_SEED", 7)'), "a default seed")
    assert seed_only.status == "void" and "train.py:4" in seed_only.reason
    honest = study.try_patch(_patch(repo, "train.py", *JITTER), "a real change")
    assert honest.status in ("keep", "discard") and len(honest.values) >= 1
    assert [e.status for e in study.experiments()][0] == "keep"


def test_counts_and_lists_of_seeds_are_not_seeds() -> None:
    for name in ("seed", "SEED", "data_seed", "seed_offset", "randomSeed", "--random-seed",
                 "random_state", "SPLIT_SEED"):
        assert is_seed_name(name), name
    for name in ("NUM_SEEDS", "n_seeds", "seeds", "seed_count", "num_seed", "nSeeds",
                 "--num-seeds", "seedling", "SEEDS_TO_TRY", "number_of_seeds"):
        assert not is_seed_name(name), name
    text = ("NUM_SEEDS = 1000000000\nn_seeds = 3\nseeds = 4\nseed_count = 5\n"
            "run(num_seeds=6)\nparser.add_argument('--num-seeds', default=7)\nSEED = 1\n")
    assert [s.code for s in find_seeds(text, "a.py")] == ["SEED = 1"]
    assert rewrite_seeds(text, "a.py", 99) == text.replace("SEED = 1", "SEED = 99")


def test_a_seed_parameter_default_is_a_seed_ratchet_can_vary() -> None:
    text = "def main(lr=0.1, seed=1337, *, n_seeds=3):\n    random.seed(seed)\n"
    (site,) = find_seeds(text, "train.py")
    assert (site.line, site.kind) == (1, "parameter default")
    assert rewrite_seeds(text, "train.py", 5) == text.replace("1337", "5")
