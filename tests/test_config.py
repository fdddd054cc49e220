from pathlib import Path

import pytest

from ratchet.config import load_config, parse_config
from ratchet.errors import ConfigError
from ratchet.units import parse_duration, parse_memory

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

GOOD = {
    "task": {"editable": ["train.py"], "command": "python train.py"},
    "metric": {"name": "val_bpb"},
}


def with_changes(section: str, **changes: object) -> dict:
    data = {k: dict(v) for k, v in GOOD.items()}
    data.setdefault(section, {}).update(changes)
    return data


def test_examples_parse_into_typed_config() -> None:
    config = load_config(EXAMPLES / "quadratic")
    assert config.editable == ("objective.py",)
    assert "evaluate.py" in config.protected and "ratchet.toml" in config.protected
    assert config.evaluate == "python evaluate.py"
    assert config.timeout_s == 30.0
    assert config.minimize
    assert [p.name for p in config.space] == ["X", "Y", "DEPTH", "ACTIVATION"]
    assert config.space[3].choices == ("relu", "gelu", "tanh")
    digits = load_config(EXAMPLES / "digits")
    assert not digits.minimize and digits.holdout_command
    assert digits.space[0].log and digits.space[0].kind == "int"


def test_defaults_for_a_minimal_task() -> None:
    config = parse_config(GOOD, Path("/repo"))
    assert config.metric.regex.search("val_bpb: 0.99\n").group("value") == "0.99"
    assert config.decision.rule == "noise-aware" and config.decision.baseline_runs == 4
    assert (config.decision.max_runs, config.decision.alpha) == (8, 0.05)
    assert config.name == "repo"


@pytest.mark.parametrize(("data", "expected"), [
    ({"metric": {"name": "x"}}, "missing section [task]"),
    (with_changes("metric", goal="min"), "[metric].goal: must be 'minimize' or 'maximize'"),
    (with_changes("task", timeout="ten minutes"), "[task].timeout: must be a duration"),
    (with_changes("task", timeout=-5), "[task].timeout: must be a positive duration"),
    (with_changes("task", editable=[]), "[task].editable: must name at least one file"),
    (with_changes("task", editable=["../up.py"]), "[task].editable: '../up.py' must be relative"),
    (with_changes("task", command=3), "[task].command: must be a non-empty string"),
    (with_changes("task", comand="x"), "[task].comand: unknown key"),
    (with_changes("task", memory_limit="lots"), "[task].memory_limit: must be a memory size"),
    (with_changes("task", evaluate="python train.py"), "[task].evaluate: runs 'train.py'"),
    (with_changes("metric", pattern="val_bpb (\\S+)"), "[metric].pattern: needs a named group"),
    (with_changes("metric", pattern="(?P<value>"), "[metric].pattern: not a valid regular"),
    (with_changes("decision", rule="bayes"), "[decision].rule: must be 'noise-aware' or"),
    (with_changes("decision", baseline_runs=1), "[decision].baseline_runs: noise-aware needs"),
    (with_changes("decision", alpha=1.5), "[decision].alpha: must be between 0 and 1"),
    (with_changes("decision", z=2.0), "[decision].z: unknown key"),
    (with_changes("task", hidden=["objective.py"], editable=["objective.py"]),
     "[task].hidden: 'objective.py' is editable"),
    (with_changes("task", predict="python p.py"), "[task].predict: needs [task].evaluate"),
    (with_changes("cost", compute_usd_per_hour=-1), "[cost].compute_usd_per_hour: must be at"),
    (with_changes("space", LR={"float": [0.1, 0.01]}), "[space].LR: low (0.1) must be below"),
    (with_changes("space", LR={"float": [0.0, 1.0], "log": True}), "[space].LR: a log scale"),
    (with_changes("space", LR={"int": [0.5, 2]}), "[space].LR: int bounds must be whole"),
    (with_changes("space", LR=3), "[space].LR: must be a table"),
    (with_changes("space", LR={"choice": []}), "[space].LR: choice must be a non-empty list"),
    (with_changes("space", LR={"float": [1, 2], "int": [1, 2]}), "[space].LR: must have exactly"),
    ({**GOOD, "extra": {}}, "unknown section [extra]"),
])
def test_each_mistake_is_one_line_naming_file_and_key(data: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data, Path("/repo"))
    message = str(info.value)
    assert message.startswith("ratchet.toml: ")
    assert expected in message
    assert "\n" not in message


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path)
    (tmp_path / "ratchet.toml").write_text("[task\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path)


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("10m", 600), ("2h", 7200), ("1h30m", 5400), ("250ms", 0.25), (45, 45),
    ("1.5h", 5400),
])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["", "10 minutes", "m", "-3s", "0"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_memory_sizes() -> None:
    assert parse_memory("512M") == 512 * 2**20
    assert parse_memory("4G") == 4 * 2**30
    assert parse_memory("2GiB") == 2 * 2**30
    with pytest.raises(ValueError):
        parse_memory("4X")
