"""Knobs where real code keeps them: lowercase settings of a nanoGPT-style script and its config
files, and the keys of YAML (Hydra), JSON and TOML files; each rewritten with its file's
formatting kept, each change classified IN or OUTSIDE the search space."""

import json
import math
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import commit_all, git
from hypothesis import given
from hypothesis import strategies as st

from ratchet.config import parse_config
from ratchet.errors import ConfigError, UsageError
from ratchet.knobs import catalog, datafile
from ratchet.knobs.scope import IN, OUTSIDE, classify
from ratchet.knobs.source import find_knobs
from ratchet.study import open_study

HYDRA_YAML = """\
# @package _global_
defaults:
  - model: small   # picks conf/model/small.yaml
  - _self_

optimizer:
  name: adamw        # or 'sgd'
  lr: 3e-4           # peak learning rate
  betas: [0.9, 0.95]
  weight_decay: 0.1
trainer:
  max_steps: 5000
  compile: true
  run_name: 'baseline run'
"""

JSON_CONFIG = '{\n  "lr": 0.001,\n  "model": {"depth": 6, "act": "gelu", "sizes": [1, 2]},\n' \
              '\t"amp": true\n}\n'

TOML_CONFIG = """\
# experiment settings
[optimizer]
lr = 3e-4        # peak
warmup = 100
[model]
depth = 8
"""


def changed_lines(old: str, new: str) -> list[tuple[str, str]]:
    return [(a, b) for a, b in zip(old.splitlines(), new.splitlines(), strict=True) if a != b]


def test_yaml_keys_are_knobs_by_dotted_path_and_lists_are_not() -> None:
    found = {e.key: e.value for e in datafile.entries(HYDRA_YAML, "conf/config.yaml")}
    assert found == {"optimizer.name": "adamw", "optimizer.lr": 3e-4,
                     "optimizer.weight_decay": 0.1, "trainer.max_steps": 5000,
                     "trainer.compile": True, "trainer.run_name": "baseline run"}


def test_yaml_rewrite_changes_only_the_values() -> None:
    out = datafile.rewrite(HYDRA_YAML, "c.yaml", {"optimizer.lr": 1e-5, "trainer.compile": False,
                                                   "trainer.run_name": "it's new"})
    assert changed_lines(HYDRA_YAML, out) == [
        ("  lr: 3e-4           # peak learning rate",
         "  lr: 1.0e-05           # peak learning rate"),
        ("  compile: true", "  compile: false"),
        ("  run_name: 'baseline run'", "  run_name: 'it''s new'")]
    data = yaml.safe_load(out)  # plain PyYAML reads the float as a float, not a string
    assert data["optimizer"]["lr"] == 1e-5 and data["trainer"]["run_name"] == "it's new"


def test_json_and_toml_rewrite_changes_only_the_values() -> None:
    out = datafile.rewrite(JSON_CONFIG, "c.json", {"model.depth": 12, "lr": 2.5e-5, "amp": False})
    assert json.loads(out) == {"lr": 2.5e-5, "model": {"depth": 12, "act": "gelu",
                                                        "sizes": [1, 2]}, "amp": False}
    assert len(changed_lines(JSON_CONFIG, out)) == 3 and "\t\"amp\": false" in out
    assert {e.key for e in datafile.entries(JSON_CONFIG, "c.json")} == {"lr", "model.depth",
                                                                         "model.act", "amp"}
    out = datafile.rewrite(TOML_CONFIG, "c.toml", {"optimizer.lr": 0.001, "model.depth": 4})
    assert changed_lines(TOML_CONFIG, out) == [("lr = 3e-4        # peak",
                                                "lr = 0.001        # peak"),
                                               ("depth = 8", "depth = 4")]
    assert tomllib.loads(out)["optimizer"] == {"lr": 0.001, "warmup": 100}


@pytest.mark.parametrize("path,text", [("c.yaml", HYDRA_YAML), ("c.json", JSON_CONFIG),
                                        ("c.toml", TOML_CONFIG)])
def test_an_unknown_key_is_an_error_and_a_broken_file_has_no_knobs(path: str, text: str) -> None:
    with pytest.raises(KeyError, match="nope"):
        datafile.rewrite(text, path, {"nope": 1})
    assert datafile.entries(text + "\n]]]\n", path) == []


def test_shared_duplicated_and_dotted_keys_are_not_knobs_a_rewrite_could_misplace() -> None:
    text = ("base: &b 3\nmodel:\n  width: *b\n  depth: 4\n  depth: 6\n  a.b: 1\n"
            "defaults: &d\n  lr: 0.1\n")
    found = {e.key: e.value for e in datafile.entries(text, "c.yaml")}
    # the anchor feeds two keys (one span); a key given twice is its last value, as a loader
    # reads it; a key holding a dot cannot be named by a dotted path
    assert found == {"model.depth": 6, "defaults.lr": 0.1}
    out = datafile.rewrite(text, "c.yaml", {"model.depth": 8})
    assert yaml.safe_load(out)["model"] == {"width": 3, "depth": 8, "a.b": 1}
    assert "base: &b 3\n" in out and "  depth: 4\n" in out  # only the live value changed
    doubled = '{"lr": 1, "lr": 2, "a.b": {"c": 3}, "n": {"k": 4}}'
    assert {e.key: e.value for e in datafile.entries(doubled, "c.json")} == {"lr": 2, "n.k": 4}
    assert json.loads(datafile.rewrite(doubled, "c.json", {"lr": 5}))["lr"] == 5
    assert [e.key for e in datafile.entries('"a.b" = 1\nc = 2\n', "c.toml")] == ["c"]


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e30, max_value=1e30))
def test_a_float_written_reads_back_as_the_same_float(value: float) -> None:
    for path, text, key in (("c.yaml", HYDRA_YAML, "optimizer.lr"),
                            ("c.json", JSON_CONFIG, "lr"),
                            ("c.toml", TOML_CONFIG, "optimizer.lr")):
        out = datafile.rewrite(text, path, {key: value})
        (entry,) = [e for e in datafile.entries(out, path) if e.key == key]
        assert entry.value == value and isinstance(entry.value, float)
    loaded = yaml.safe_load(datafile.rewrite(HYDRA_YAML, "c.yaml", {"optimizer.lr": value}))
    assert loaded["optimizer"]["lr"] == value


@given(st.text(max_size=12))
def test_a_string_written_reads_back_as_the_same_string(value: str) -> None:
    for path, text, key in (("c.yaml", HYDRA_YAML, "optimizer.name"),
                            ("c.yaml", HYDRA_YAML, "trainer.run_name"),
                            ("c.json", JSON_CONFIG, "model.act")):
        out = datafile.rewrite(text, path, {key: value})
        loaded = yaml.safe_load(out) if path.endswith(".yaml") else json.loads(out)
        section, name = key.split(".")
        assert loaded[section][name] == value


def test_any_case_python_knobs_only_where_asked() -> None:
    source = "batch_size = 12\nlearning_rate = 6e-4\n_private = 1\nDEPTH = 4\nx = f()\n"
    assert [k.name for k in find_knobs(source, "train.py")] == ["DEPTH"]
    assert [k.name for k in find_knobs(source, "train.py", any_case=True)] == \
        ["batch_size", "learning_rate", "DEPTH"]


def config_with(knob_files: list[str], editable: list[str], space: str = "") -> dict:
    return tomllib.loads(f"[task]\neditable = {json.dumps(editable)}\ncommand = 'x'\n"
                         f"[metric]\nname = 'loss'\n[knobs]\nfiles = {json.dumps(knob_files)}\n"
                         f"[space]\n{space}")


def test_knob_files_must_be_editable_and_of_a_known_kind(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[knobs\].files: 'conf/x.yaml' is not editable"):
        parse_config(config_with(["conf/x.yaml"], ["train.py"]), tmp_path)
    with pytest.raises(ConfigError, match="Python, YAML, JSON or TOML"):
        parse_config(config_with(["conf/x.ini"], ["conf/**"]), tmp_path)
    config = parse_config(config_with(["conf/*.yaml"], ["conf/**"],
                                      'optimizer.lr = { float = [1e-5, 1e-2], log = true }\n'
                                      '"trainer.max_steps" = { int = [100, 9000] }\n'), tmp_path)
    assert [p.name for p in config.space] == ["optimizer.lr", "trainer.max_steps"]


def test_the_first_file_in_path_order_owns_a_name(tmp_path: Path) -> None:
    config = parse_config(config_with(["train.py", "config/*.py"], ["*.py", "config/*.py"]),
                          tmp_path)
    sources = {"train.py": "batch_size = 12\nn_layer = 12\n",
               "config/small.py": "batch_size = 64\n", "model.py": "hidden = 3\nWIDTH = 8\n",
               "conf.yaml": "lr: 0.1\n"}
    knobs = catalog.knobs_in({p: t for p, t in sources.items() if catalog.holds_knobs(p, config)},
                             config)
    assert {n: (k.path, k.value) for n, k in knobs.items()} == {
        "batch_size": ("config/small.py", 64), "n_layer": ("train.py", 12),
        "WIDTH": ("model.py", 8)}


def test_the_run_decides_which_file_owns_a_name(tmp_path: Path) -> None:
    """The last config file of the command that sets a name, else the script, else path
    order; never a protected file, though a knob-file glob covers it."""
    sources = {"train.py": "batch_size = 12\nlr = 6e-4\nwd = 0.1\nn_layer = 12\n",
               "config/a.py": "lr = 1e-3\nbatch_size = 8\n", "config/b.py": "lr = 2e-3\n",
               "config/eval_big.py": "batch_size = 4\nonly_here = 1\n",
               "aaa.py": "wd = 0.5\n"}

    def owners(command: str) -> dict[str, str]:
        data = config_with(["train.py", "config/*.py", "aaa.py"], ["*.py", "config/*.py"])
        data["task"].update(command=command, protected=["config/eval_*.py"])
        config = parse_config(data, tmp_path)
        return {n: k.path for n, k in catalog.knobs_in(sources, config).items()}

    assert owners("python train.py config/a.py config/b.py") == {
        "lr": "config/b.py", "batch_size": "config/a.py", "wd": "train.py",
        "n_layer": "train.py"}
    assert owners("python train.py") == {"lr": "train.py", "batch_size": "train.py",
                                         "wd": "train.py", "n_layer": "train.py"}
    assert owners("python other.py")["wd"] == "aaa.py"  # neither: path order
    assert "only_here" not in owners("python train.py config/eval_big.py")


@pytest.mark.parametrize("name,command,problem", [
    ("only_here", "python train.py", "[space].only_here: only in config/eval_big.py, which is "
     "protected"),
    ("lr", "python train.py --lr=0.1", "[space].lr: the command sets it (--lr=0.1)"),
    ("nowhere", "python train.py", "[space].nowhere: no module-level constant")])
def test_a_space_knob_no_rewrite_can_change_is_refused(tmp_path: Path, name: str, command: str,
                                                       problem: str) -> None:
    data = config_with(["train.py", "config/*.py"], ["*.py", "config/*.py"],
                       f"{name} = {{ int = [1, 4] }}\n")
    data["task"].update(command=command, protected=["config/eval_*.py"])
    sources = {"train.py": "lr = 1\n", "config/eval_big.py": "only_here = 1\n"}
    with pytest.raises(UsageError, match=re.escape(problem)):
        catalog.check_space(parse_config(data, tmp_path), sources)


def test_scope_of_data_file_changes() -> None:
    space = ["optimizer.lr"]
    tuned = datafile.rewrite(HYDRA_YAML, "c.yaml", {"optimizer.lr": 0.01})
    assert classify({"c.yaml": HYDRA_YAML}, {"c.yaml": tuned}, space) == IN
    recommented = tuned.replace("# peak learning rate", "# changed comment")
    assert classify({"c.yaml": HYDRA_YAML}, {"c.yaml": recommented}, space) == IN
    other = datafile.rewrite(HYDRA_YAML, "c.yaml", {"optimizer.weight_decay": 0.2})
    assert classify({"c.yaml": HYDRA_YAML}, {"c.yaml": other}, space) == OUTSIDE
    broken = "a: [\n"
    assert classify({"c.yaml": broken}, {"c.yaml": broken + " "}, space) == OUTSIDE
    assert classify({"t.py": "x = (\n"}, {"t.py": "x = (\n\n"}, []) == OUTSIDE


# end to end, on repositories shaped like nanoGPT and like a Hydra project

NANOGPT_TRAIN = """\
# nanoGPT-style: defaults as lowercase globals, overridden by a config file and --key=value
import math
import sys

batch_size = 12
learning_rate = 6e-4  # max learning rate
n_layer = 12
dropout = 0.0
out_dir = 'out'
exec(open('configurator.py').read())  # overrides from the command line or a config file

loss = 1.0 + (math.log10(learning_rate) + 3.0) ** 2 + abs(n_layer - 6) / 10 + dropout
print(f"step 100: train loss {loss + 0.1:.4f}")
print(f"val_loss: {loss:.6f}")
"""

NANOGPT_CONFIGURATOR = """\
import sys
for arg in sys.argv[1:]:
    if '=' not in arg:
        exec(open(arg).read())
    else:
        key, val = arg[2:].split('=')
        globals()[key] = type(globals()[key])(val)
"""

NANOGPT_SMALL = """\
# a small model for a quick run
learning_rate = 1e-2 # higher for a small model
n_layer = 4
"""

NANOGPT_TASK = """\
[task]
editable = ["train.py", "config/*.py"]
protected = ["configurator.py"]
command = "python train.py config/train_small.py"
timeout = "30s"

[metric]
name = "val_loss"

[decision]
rule = "greedy"
baseline_runs = 1

[knobs]
files = ["train.py", "config/*.py"]

[space]
learning_rate = { float = [1e-5, 1e-1], log = true }
n_layer = { int = [2, 12] }
"""


def make(tmp_path: Path, files: dict[str, str]) -> Path:
    repo = tmp_path / "repo"
    for path, text in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    git(repo, "init", "-q")
    commit_all(repo, "initial")
    return repo


def test_a_nanogpt_shaped_repository(tmp_path: Path) -> None:
    repo = make(tmp_path, {"train.py": NANOGPT_TRAIN, "configurator.py": NANOGPT_CONFIGURATOR,
                           "config/train_small.py": NANOGPT_SMALL, "ratchet.toml": NANOGPT_TASK})
    study = open_study(repo, "nano", proposer="random", seed=1)
    assert study.context.base_values["learning_rate"] == 1e-2  # the config file's, in force
    study.run(max_experiments=5)
    runs = study.experiments()
    assert all(e.status in ("keep", "discard") for e in runs), [e.reason for e in runs]
    for e in runs[1:]:
        assert e.scope == IN
        lr, layers = e.params["learning_rate"], e.params["n_layer"]
        expected = 1.0 + (math.log10(lr) + 3.0) ** 2 + abs(layers - 6) / 10
        assert e.value == pytest.approx(expected, abs=1e-5)  # the run used the new values
        assert "train.py" not in {p.split(" b/")[-1] for p in e.diff.splitlines()
                                  if p.startswith("diff --git")}
        shown = git(repo, "show", f"{e.commit}:config/train_small.py")
        assert shown.startswith("# a small model for a quick run\nlearning_rate = ")
        assert "# higher for a small model\n" in shown


HYDRA_TRAIN = """\
import yaml
config = yaml.safe_load(open("conf/config.yaml"))
opt = config["optimizer"]
lr = float(opt["lr"])
loss = (lr - 0.01) ** 2 * 1e4 + config["trainer"]["max_steps"] / 1e5
print(f"loss: {loss:.6f}")
"""

HYDRA_TASK = """\
[task]
editable = ["conf/**", "train.py"]
command = "python train.py"
timeout = "30s"

[metric]
name = "loss"

[decision]
rule = "greedy"
baseline_runs = 1

[knobs]
files = ["conf/*.yaml"]

[space]
optimizer.lr = { float = [1e-4, 1e-1], log = true }
"trainer.max_steps" = { int = [1000, 9000] }
"""


def test_a_hydra_shaped_repository(tmp_path: Path) -> None:
    repo = make(tmp_path, {"train.py": HYDRA_TRAIN, "conf/config.yaml": HYDRA_YAML,
                           "ratchet.toml": HYDRA_TASK})
    study = open_study(repo, "hydra", proposer="tpe", seed=0)
    study.run(max_experiments=5)
    runs = study.experiments()
    assert [e.status in ("keep", "discard") for e in runs] == [True] * 5, \
        [e.reason for e in runs]
    for e in runs[1:]:
        assert e.scope == IN
        text = git(repo, "show", f"{e.commit}:conf/config.yaml")
        assert len(changed_lines(HYDRA_YAML, text)) <= 2 and "# peak learning rate" in text
        lr, steps = e.params["optimizer.lr"], e.params["trainer.max_steps"]
        assert e.value == pytest.approx((lr - 0.01) ** 2 * 1e4 + steps / 1e5, abs=1e-5)
