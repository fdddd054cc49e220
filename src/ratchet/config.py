"""The task file, `ratchet.toml`: its schema, parsed once into typed objects.

Every mistake gets one `ConfigError` line that names the file, the key and what is wrong.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from ratchet.errors import ConfigError
from ratchet.flags import placeholders
from ratchet.globs import matches_any
from ratchet.llm.prices import Price
from ratchet.units import parse_duration, parse_memory

TASK_FILE = "ratchet.toml"
GOALS = ("minimize", "maximize")
RULES = ("noise-aware", "greedy")
SANDBOX_MODES = ("bwrap", "none")


@dataclass(frozen=True)
class Param:
    """One dimension of the classical search space, over one knob."""

    name: str
    kind: str  # "int" | "float" | "choice"
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()


@dataclass(frozen=True)
class MetricConfig:
    name: str
    goal: str = "minimize"
    pattern: str | None = None
    file: str | None = None
    secondary: tuple[str, ...] = ()

    @property
    def regex(self) -> re.Pattern[str]:
        return metric_regex(self.name, self.pattern)


@dataclass(frozen=True)
class DecisionConfig:
    rule: str = "noise-aware"
    baseline_runs: int = 4
    max_runs: int = 8
    alpha: float = 0.05  # the test's false-accept rate for one candidate
    # The task says its value depends on nothing random: a baseline whose repeated runs
    # repeat one value is noise-free, with no question asked about hard-coded seeds.
    deterministic: bool = False


PRUNERS = ("none", "median", "percentile", "halving", "hyperband", "wilcoxon")


@dataclass(frozen=True)
class PruningConfig:
    """Stopping hopeless runs early, by their intermediate values (see `ratchet.pruning`)."""

    pruner: str = "none"
    metric: str | None = None  # the intermediate values' name; default: the task's metric
    startup_runs: int = 5  # finished runs with curves before any run is stopped
    warmup_steps: int = 0  # a run is not stopped before this step
    percentile: float = 25.0  # the percentile pruner's: stop below the best 25 %

    @property
    def enabled(self) -> bool:
        return self.pruner != "none"


@dataclass(frozen=True)
class FidelityConfig:
    """Judging candidates at short horizons first (see `ratchet.fidelity`): every candidate
    runs at `horizons[0]` of the budget, and only the best 1/`reduction_factor` at each horizon
    go on to the next one, the last being the full budget."""

    horizons: tuple[float, ...] = ()  # fractions of the budget, increasing, each below 1
    reduction_factor: int = 3
    only_if_cheaper: bool = True  # screen only while the baseline's runs say it saves compute

    @property
    def enabled(self) -> bool:
        return bool(self.horizons)


@dataclass(frozen=True)
class SandboxConfig:
    """What the code under evaluation may reach (see `ratchet.execute.sandbox`)."""

    mode: str = "bwrap"
    network: bool = False
    read_only: tuple[str, ...] = ()  # extra paths it may read: datasets, caches
    # What one phase of a run may take beyond time and memory; a breach ends the run.
    max_processes: int = 512  # processes alive at once in one phase's sandbox
    max_open_files: int = 4096  # per process
    max_output_bytes: int = 64 * 2**20  # what a phase prints (its log on disk is cut there)
    max_disk_bytes: int = 20 * 2**30  # what a phase adds to its work tree
    tmpfs_bytes: int = 2 * 2**30  # each private tmpfs (/tmp, /dev/shm, HOME), when no
    # [task] memory_limit sizes them (their use counts toward that limit)


@dataclass(frozen=True)
class ResourcesConfig:
    """What one evaluation needs of a cluster node (`--executor ray`): CPUs and GPUs; its
    memory is `[task].memory_limit`."""

    cpus: float = 1.0
    gpus: float = 0.0


@dataclass(frozen=True)
class AgentConfig:
    """How the LLM proposers work: model, endpoint, program, and their bounds."""

    model: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    program: str | None = None  # the user's research program (a protected file)
    context: tuple[str, ...] = ()  # read-only files the agent may read
    max_tool_calls: int = 40
    max_episode_tokens: int = 300_000
    context_tokens: int = 16_000
    learn_from_earlier: bool = True
    hybrid_share: float = 0.3
    hybrid_warmup: int = 10
    cli_timeout_s: float = 1800.0  # a coding-agent CLI's time for one episode
    prices: dict[str, Price] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskConfig:
    root: Path
    name: str
    editable: tuple[str, ...]
    command: str | None  # None when the evaluate phase alone runs the code
    protected: tuple[str, ...] = ()
    hidden: tuple[str, ...] = ()  # protected files only the evaluate phase may read
    evaluate: str | None = None
    predict: str | None = None  # runs edited code for the evaluator, without the hidden files
    timeout_s: float = 600.0
    budget_s: float | None = None  # the command phase's compute budget, enforced in wall time
    budget_grace_s: float = 0.0
    memory_limit_bytes: int | None = None
    predict_budget_s: float | None = None  # CPU a candidate's predict may use (None: derived)
    env_allow: tuple[str, ...] = ()
    metric: MetricConfig = field(default_factory=lambda: MetricConfig(name="score"))
    holdout_command: str | None = None
    holdout_metric: str | None = None
    decision: DecisionConfig = field(default_factory=DecisionConfig)
    pruning: PruningConfig = field(default_factory=PruningConfig)
    fidelity: FidelityConfig = field(default_factory=FidelityConfig)
    compute_usd_per_hour: float = 0.0
    space: tuple[Param, ...] = ()
    knob_files: tuple[str, ...] = ()  # files whose every setting is a knob (see ratchet.knobs)
    # Files whose hard-coded seeds ratchet rewrites to each run's RATCHET_SEED, in the run's
    # own copy of the code only (ratchet.knobs.seeds)
    seed_files: tuple[str, ...] = ()
    flags_file: str | None = None  # a knob file that fills the command's {name} placeholders
    agent: AgentConfig = field(default_factory=AgentConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)

    @property
    def minimize(self) -> bool:
        return self.metric.goal == "minimize"

    @property
    def step_metric(self) -> str:
        """The name of the intermediate values a run reports (`ratchet.steps`)."""
        return self.pruning.metric or self.metric.name


def default_grace(budget_s: float) -> float:
    """Time past the budget for start-up, data loading and saving: a quarter, at least 10 s."""
    return max(10.0, 0.25 * budget_s)


def metric_regex(name: str, pattern: str | None = None) -> re.Pattern[str]:
    """The line pattern a metric is read with: `name: value` at the start of a line by default."""
    if pattern is None:
        pattern = rf"^{re.escape(name)}\s*[:=]\s*(?P<value>\S+)"
    return re.compile(pattern, re.MULTILINE)


def load_config(root: Path, file_name: str = TASK_FILE) -> TaskConfig:
    path = root / file_name
    if not path.is_file():
        raise ConfigError(f"{file_name}: not found in {root} (run `ratchet init` to write one)")
    return config_from_text(path.read_text(errors="replace"), root, file_name)


def config_from_text(text: str, root: Path, file_name: str = TASK_FILE) -> TaskConfig:
    return parse_config(read_toml(text, file_name), root, file_name)


def read_toml(text: str, file_name: str = TASK_FILE) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file_name}: not valid TOML: {exc}") from None


def changed_keys(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two parsed task files, in sorted order."""
    changed = []
    for key in sorted(set(old) | set(new), key=str):
        a, b, name = old.get(key), new.get(key), f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            changed += changed_keys(a, b, f"{name}.")
        elif a != b or (key in old) != (key in new):
            changed.append(name)
    return changed


def parse_config(data: dict[str, Any], root: Path, file_name: str = TASK_FILE) -> TaskConfig:
    reader = _Reader(file_name)
    reader.only_sections(data, {"task", "metric", "holdout", "decision", "cost", "space",
                                "agent", "sandbox", "resources", "knobs", "pruning",
                                "fidelity", "seeds"})
    task = reader.section(data, "task", required=True)
    reader.only_keys(task, "task", {"name", "editable", "protected", "hidden", "command",
                                     "evaluate", "predict", "timeout", "budget", "budget_grace",
                                     "memory_limit", "env_allow", "predict_budget"})
    metric = _parse_metric(reader, reader.section(data, "metric", required=True))
    editable = reader.globs(task, "task", "editable", required=True)
    hidden = reader.globs(task, "task", "hidden")
    protected = reader.globs(task, "task", "protected")
    agent = _parse_agent(reader, reader.section(data, "agent"))
    for fixed in (TASK_FILE, agent.program, *hidden):  # never a proposer's to change
        if fixed and fixed not in protected:
            protected = (*protected, fixed)
    evaluate = reader.string(task, "task", "evaluate")
    if "command" not in task and not evaluate:
        reader.fail("task", "command", "is required (unless [task].evaluate runs the code)")
    config = TaskConfig(
        root=root,
        name=reader.string(task, "task", "name") or root.resolve().name,
        editable=editable,
        protected=protected,
        hidden=hidden,
        command=reader.string(task, "task", "command", required=not evaluate),
        evaluate=evaluate,
        predict=reader.string(task, "task", "predict"),
        timeout_s=reader.duration(task, "task", "timeout", default=600.0),
        **_parse_budget(reader, task),
        memory_limit_bytes=reader.memory(task, "task", "memory_limit"),
        predict_budget_s=_predict_budget(reader, task),
        env_allow=reader.globs(task, "task", "env_allow"),
        metric=metric,
        decision=_parse_decision(reader, reader.section(data, "decision")),
        pruning=_parse_pruning(reader, reader.section(data, "pruning")),
        fidelity=_parse_fidelity(reader, reader.section(data, "fidelity")),
        compute_usd_per_hour=_parse_cost(reader, reader.section(data, "cost")),
        space=_parse_space(reader, reader.section(data, "space")),
        **_parse_knobs(reader, reader.section(data, "knobs"), editable),
        seed_files=_parse_seeds(reader, reader.section(data, "seeds"), protected),
        agent=agent,
        sandbox=_parse_sandbox(reader, reader.section(data, "sandbox")),
        resources=_parse_resources(reader, reader.section(data, "resources")),
        **_parse_holdout(reader, reader.section(data, "holdout")),
    )
    _check_evaluate_is_protected(reader, config)
    _check_phases(reader, config)
    _check_flags(reader, config)
    return config


def _parse_budget(reader: _Reader, task: dict[str, Any]) -> dict[str, Any]:
    if "budget" not in task:
        if "budget_grace" in task:
            reader.fail("task", "budget_grace", "needs [task].budget")
        return {}
    budget = reader.duration(task, "task", "budget", default=0.0)
    grace = reader.duration(task, "task", "budget_grace", default=default_grace(budget))
    timeout = reader.duration(task, "task", "timeout", default=600.0)
    if budget + grace >= timeout:
        reader.fail("task", "budget", f"{budget:g}s plus its grace of {grace:g}s must be shorter "
                    f"than [task].timeout ({timeout:g}s), which covers every phase")
    return {"budget_s": budget, "budget_grace_s": grace}


def _predict_budget(reader: _Reader, task: dict[str, Any]) -> float | None:
    if "predict_budget" not in task:
        return None
    if "predict" not in task:
        reader.fail("task", "predict_budget", "needs [task].predict")
    return reader.duration(task, "task", "predict_budget", default=0.0)


def _parse_sandbox(reader: _Reader, section: dict[str, Any]) -> SandboxConfig:
    reader.only_keys(section, "sandbox", {"mode", "network", "read_only", "max_processes",
                                          "max_open_files", "max_output", "max_disk"})
    mode = reader.string(section, "sandbox", "mode") or "bwrap"
    if mode not in SANDBOX_MODES:
        reader.fail("sandbox", "mode", f"must be 'bwrap' or 'none', got {mode!r}")
    network = reader.boolean(section, "sandbox", "network", default=False)
    paths = section.get("read_only", [])
    if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
        reader.fail("sandbox", "read_only", "must be a list of paths")
    for path in paths:
        if ".." in Path(path).parts:
            reader.fail("sandbox", "read_only", f"{path!r}: '..' is not allowed")
    default = SandboxConfig()
    return SandboxConfig(
        mode=mode, network=network, read_only=tuple(paths),
        max_processes=reader.integer(section, "sandbox", "max_processes",
                                     default.max_processes, low=4),
        max_open_files=reader.integer(section, "sandbox", "max_open_files",
                                      default.max_open_files, low=64),
        max_output_bytes=reader.memory(section, "sandbox", "max_output")
        or default.max_output_bytes,
        max_disk_bytes=reader.memory(section, "sandbox", "max_disk") or default.max_disk_bytes)


def _parse_resources(reader: _Reader, section: dict[str, Any]) -> ResourcesConfig:
    reader.only_keys(section, "resources", {"cpus", "gpus"})
    values = {}
    for key, least in (("cpus", 0.0), ("gpus", 0.0)):
        value = section.get(key, getattr(ResourcesConfig, key))
        if isinstance(value, bool) or not isinstance(value, int | float) or value < least:
            reader.fail("resources", key, f"must be a number of at least {least:g}")
        values[key] = float(value)
    if values["cpus"] == 0 and values["gpus"] == 0:
        reader.fail("resources", "cpus", "an evaluation needs some CPU or GPU")
    return ResourcesConfig(**values)


def _parse_knobs(reader: _Reader, section: dict[str, Any],
                 editable: tuple[str, ...]) -> dict[str, Any]:
    reader.only_keys(section, "knobs", {"files", "flags"})
    files = reader.globs(section, "knobs", "files")
    for pattern in files:
        _check_knob_file(reader, "files", pattern, editable, DATA_SUFFIXES + (".py",))
    flags = reader.string(section, "knobs", "flags")
    if flags is not None:
        if any(c in flags for c in "*?["):
            reader.fail("knobs", "flags", f"{flags!r}: one file, not a pattern")
        _check_knob_file(reader, "flags", flags, editable, DATA_SUFFIXES)
        if not matches_any(flags, files):
            files = (*files, flags)
    return {"knob_files": files, "flags_file": flags}


DATA_SUFFIXES = (".yaml", ".yml", ".json", ".toml")


def _parse_seeds(reader: _Reader, section: dict[str, Any],
                 protected: tuple[str, ...]) -> tuple[str, ...]:
    """`[seeds] files`: Python files whose hard-coded seeds each run gets as its own. ratchet
    rewrites them in the run's copy, so a protected file (whose bytes are checked, and whose
    behaviour the task relies on) is never one of them."""
    reader.only_keys(section, "seeds", {"files"})
    files = reader.globs(section, "seeds", "files")
    for pattern in files:
        if not pattern.endswith(".py"):
            reader.fail("seeds", "files", f"{pattern!r}: seeds are found in Python files (.py)")
        if matches_any(pattern, protected):
            reader.fail("seeds", "files", f"{pattern!r} is protected: ratchet never rewrites "
                        "a protected file")
    return files


def _check_knob_file(reader: _Reader, key: str, pattern: str, editable: tuple[str, ...],
                     suffixes: tuple[str, ...]) -> None:
    if not matches_any(pattern, editable):
        reader.fail("knobs", key, f"{pattern!r} is not editable: knobs are changed in "
                    "their files, so [task].editable must cover them")
    if not pattern.endswith(suffixes):
        kinds = "Python, YAML, JSON or TOML" if ".py" in suffixes else "YAML, JSON or TOML"
        reader.fail("knobs", key, f"{pattern!r}: knob files here are {kinds} files")


def _check_flags(reader: _Reader, config: TaskConfig) -> None:
    """Placeholders fill the command, which runs the edited code, and nothing else: a
    protected phase parameterized by editable values would no longer be protected."""
    for key in ("evaluate", "predict"):
        command = getattr(config, key) or ""
        if config.flags_file and placeholders(command):
            reader.fail("task", key, f"{{{placeholders(command)[0]}}}: flags from "
                        "[knobs].flags fill [task].command only")
    if config.flags_file and not placeholders(config.command or ""):
        reader.fail("knobs", "flags", "[task].command has no {name} placeholder for its "
                    "values (e.g. command = \"python train.py --lr={lr}\")")


def _check_phases(reader: _Reader, config: TaskConfig) -> None:
    if config.predict and not config.evaluate:
        reader.fail("task", "predict", "needs [task].evaluate, the phase it serves")
    for pattern in config.hidden:
        if matches_any(pattern, config.editable):
            reader.fail("task", "hidden", f"{pattern!r} is editable; hidden files are protected")


def parse_space(table: dict[str, Any], source: str) -> tuple[Param, ...]:
    """A `[space]` table on its own (e.g. one an agent wrote), checked like the task file's."""
    return _parse_space(_Reader(source), table)


def _parse_metric(reader: _Reader, section: dict[str, Any]) -> MetricConfig:
    reader.only_keys(section, "metric", {"name", "goal", "pattern", "file", "secondary"})
    name = reader.string(section, "metric", "name", required=True) or ""
    goal = reader.string(section, "metric", "goal") or "minimize"
    if goal not in GOALS:
        reader.fail("metric", "goal", f"must be 'minimize' or 'maximize', got {goal!r}")
    pattern = reader.string(section, "metric", "pattern")
    if pattern is not None:
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            reader.fail("metric", "pattern", f"not a valid regular expression: {exc}")
        if "value" not in compiled.groupindex:
            reader.fail("metric", "pattern", "needs a named group (?P<value>...)")
    return MetricConfig(
        name=name,
        goal=goal,
        pattern=pattern,
        file=reader.string(section, "metric", "file"),
        secondary=reader.globs(section, "metric", "secondary"),
    )


def _parse_decision(reader: _Reader, section: dict[str, Any]) -> DecisionConfig:
    reader.only_keys(section, "decision", {"rule", "baseline_runs", "max_runs", "alpha",
                                           "deterministic"})
    rule = reader.string(section, "decision", "rule") or "noise-aware"
    if rule not in RULES:
        reader.fail("decision", "rule", f"must be 'noise-aware' or 'greedy', got {rule!r}")
    baseline_runs = reader.integer(section, "decision", "baseline_runs", default=4, low=1)
    if rule == "noise-aware" and baseline_runs < 2:
        reader.fail("decision", "baseline_runs", "noise-aware needs at least 2 baseline runs")
    return DecisionConfig(
        rule=rule,
        baseline_runs=baseline_runs if rule == "noise-aware" else 1,
        max_runs=reader.integer(section, "decision", "max_runs", default=8, low=1),
        alpha=_alpha(reader, section),
        deterministic=reader.boolean(section, "decision", "deterministic", default=False),
    )


def _parse_pruning(reader: _Reader, section: dict[str, Any]) -> PruningConfig:
    reader.only_keys(section, "pruning", {"pruner", "metric", "startup_runs", "warmup_steps",
                                          "percentile"})
    pruner = reader.string(section, "pruning", "pruner") or "none"
    if pruner not in PRUNERS:
        reader.fail("pruning", "pruner", f"unknown pruner {pruner!r} (choose from: "
                    f"{', '.join(PRUNERS)})")
    percentile = reader.number(section, "pruning", "percentile", default=25.0, low=0.0)
    if not 0 < percentile < 100:
        reader.fail("pruning", "percentile", f"must be between 0 and 100, got {percentile:g}")
    return PruningConfig(
        pruner=pruner,
        metric=reader.string(section, "pruning", "metric"),
        startup_runs=reader.integer(section, "pruning", "startup_runs", default=5, low=1),
        warmup_steps=reader.integer(section, "pruning", "warmup_steps", default=0, low=0),
        percentile=percentile)


def _parse_fidelity(reader: _Reader, section: dict[str, Any]) -> FidelityConfig:
    reader.only_keys(section, "fidelity", {"horizons", "reduction_factor", "only_if_cheaper"})
    horizons = section.get("horizons", [])
    if not isinstance(horizons, list) or not all(_is_number(h) for h in horizons):
        reader.fail("fidelity", "horizons", f"must be a list of numbers, got {horizons!r}")
    if any(not 0 < h < 1 for h in horizons):
        reader.fail("fidelity", "horizons", "each must be a fraction of the budget between 0 "
                    f"and 1 (the full budget is always the last), got {horizons}")
    if any(a >= b for a, b in zip(horizons, horizons[1:], strict=False)):
        reader.fail("fidelity", "horizons", f"must increase, got {horizons}")
    return FidelityConfig(
        horizons=tuple(float(h) for h in horizons),
        reduction_factor=reader.integer(section, "fidelity", "reduction_factor", default=3,
                                        low=2),
        only_if_cheaper=reader.boolean(section, "fidelity", "only_if_cheaper", default=True))


def _alpha(reader: _Reader, section: dict[str, Any]) -> float:
    alpha = reader.number(section, "decision", "alpha", default=0.05, low=0.0)
    if not 0 < alpha < 1:
        reader.fail("decision", "alpha", f"must be between 0 and 1, got {alpha:g}")
    return alpha


def _parse_cost(reader: _Reader, section: dict[str, Any]) -> float:
    reader.only_keys(section, "cost", {"compute_usd_per_hour"})
    return reader.number(section, "cost", "compute_usd_per_hour", default=0.0, low=0.0)


def _parse_holdout(reader: _Reader, section: dict[str, Any]) -> dict[str, Any]:
    reader.only_keys(section, "holdout", {"command", "metric"})
    if not section:
        return {}
    return {
        "holdout_command": reader.string(section, "holdout", "command", required=True),
        "holdout_metric": reader.string(section, "holdout", "metric"),
    }


def _parse_agent(reader: _Reader, section: dict[str, Any]) -> AgentConfig:
    reader.only_keys(section, "agent", {
        "model", "base_url", "api_key_env", "program", "context", "max_tool_calls",
        "max_episode_tokens", "context_tokens", "learn_from_earlier", "hybrid_share",
        "hybrid_warmup", "cli_timeout", "prices"})
    program = reader.string(section, "agent", "program")
    if program is not None and (program.startswith("/") or ".." in Path(program).parts):
        reader.fail("agent", "program", f"{program!r} must be relative to the repository root")
    learn = section.get("learn_from_earlier", True)
    if not isinstance(learn, bool):
        reader.fail("agent", "learn_from_earlier", "must be true or false")
    share = reader.number(section, "agent", "hybrid_share", default=0.3, low=0.0)
    if share > 1:
        reader.fail("agent", "hybrid_share", f"must be at most 1, got {share}")
    return AgentConfig(
        model=reader.string(section, "agent", "model"),
        base_url=reader.string(section, "agent", "base_url"),
        api_key_env=reader.string(section, "agent", "api_key_env"),
        program=program,
        context=reader.globs(section, "agent", "context"),
        max_tool_calls=reader.integer(section, "agent", "max_tool_calls", default=40, low=1),
        max_episode_tokens=reader.integer(section, "agent", "max_episode_tokens",
                                          default=300_000, low=1000),
        context_tokens=reader.integer(section, "agent", "context_tokens", default=16_000,
                                      low=2000),
        learn_from_earlier=learn,
        hybrid_share=share,
        hybrid_warmup=reader.integer(section, "agent", "hybrid_warmup", default=10, low=0),
        cli_timeout_s=reader.duration(section, "agent", "cli_timeout", default=1800.0),
        prices=_parse_prices(reader, section.get("prices", {})),
    )


def _parse_prices(reader: _Reader, table: Any) -> dict[str, Price]:
    if not isinstance(table, dict):
        reader.fail("agent", "prices", "must be a table of models")
    prices = {}
    for model, spec in table.items():
        where = f"agent.prices.{model}"
        if not isinstance(spec, dict):
            reader.fail("agent.prices", model, "must be a table { input = 3.0, output = 15.0 }")
        reader.only_keys(spec, where, {"input", "output", "cached_input"})
        for key in ("input", "output"):
            if key not in spec:
                reader.fail(where, key, "is required (dollars per million tokens)")
        numbers = {k: reader.number(spec, where, k, default=0.0, low=0.0)
                   for k in ("input", "output")}
        cached = reader.number(spec, where, "cached_input", default=numbers["input"], low=0.0)
        prices[model] = Price(numbers["input"], numbers["output"], cached)
    return prices


def _parse_space(reader: _Reader, section: dict[str, Any]) -> tuple[Param, ...]:
    return tuple(_parse_param(reader, name, spec) for name, spec in _dotted(section).items())


def _dotted(section: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`optimizer.lr = {...}` (a nested table in TOML) as the one knob name `optimizer.lr`."""
    flat: dict[str, Any] = {}
    for name, spec in section.items():
        nested = isinstance(spec, dict) and spec and not set(spec) & _SPEC_KEYS \
            and all(isinstance(v, dict) for v in spec.values())
        if nested:
            flat |= _dotted(spec, f"{prefix}{name}.")
        else:
            flat[f"{prefix}{name}"] = spec
    return flat


_SPEC_KEYS = {"int", "float", "choice", "log", "step"}


def _parse_param(reader: _Reader, name: str, spec: Any) -> Param:
    if not isinstance(spec, dict):
        reader.fail("space", name, "must be a table such as { float = [0.001, 0.1], log = true }")
    kinds = [k for k in ("int", "float", "choice") if k in spec]
    if len(kinds) != 1:
        reader.fail("space", name, "must have exactly one of int, float or choice")
    reader.only_keys(spec, f"space.{name}", {kinds[0], "log", "step"})
    kind, bounds = kinds[0], spec[kinds[0]]
    if kind == "choice":
        if not isinstance(bounds, list) or not bounds:
            reader.fail("space", name, "choice must be a non-empty list")
        return Param(name=name, kind="choice", choices=tuple(bounds))
    if (not isinstance(bounds, list) or len(bounds) != 2
            or not all(_is_number(b) for b in bounds)):
        reader.fail("space", name, f"{kind} must be a list [low, high] of two numbers")
    low, high = bounds
    if kind == "int" and not all(isinstance(b, int) for b in bounds):
        reader.fail("space", name, "int bounds must be whole numbers")
    if low >= high:
        reader.fail("space", name, f"low ({low}) must be below high ({high})")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        reader.fail("space", name, "log must be true or false")
    if log and low <= 0:
        reader.fail("space", name, "a log scale needs a low bound above 0")
    step = spec.get("step")
    if step is not None and (not _is_number(step) or step <= 0):
        reader.fail("space", name, "step must be a positive number")
    return Param(name=name, kind=kind, low=low, high=high, log=log, step=step)


def _check_evaluate_is_protected(reader: _Reader, config: TaskConfig) -> None:
    """The protected phase must not run an editable file, or edited code could forge the metric."""
    for command, section, key in ((config.evaluate, "task", "evaluate"),
                                  (config.predict, "task", "predict"),
                                  (config.holdout_command, "holdout", "command")):
        if not command:
            continue
        for token in command.split():
            if matches_any(token, config.editable):
                reader.fail(section, key, f"runs {token!r}, which is editable; the protected "
                            "phase may only run protected files")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _Reader:
    """Typed access to the parsed TOML with errors that name file, section and key."""

    def __init__(self, file_name: str) -> None:
        self.file_name = file_name

    def fail(self, section: str, key: str, problem: str) -> NoReturn:
        raise ConfigError(f"{self.file_name}: [{section}].{key}: {problem}")

    def only_sections(self, data: dict[str, Any], known: set[str]) -> None:
        for name in data:
            if name not in known:
                raise ConfigError(f"{self.file_name}: unknown section [{name}] "
                                  f"(known: {', '.join(sorted(known))})")

    def only_keys(self, section: dict[str, Any], name: str, known: set[str]) -> None:
        for key in section:
            if key not in known:
                self.fail(name, key, f"unknown key (known: {', '.join(sorted(known))})")

    def section(self, data: dict[str, Any], name: str, required: bool = False) -> dict[str, Any]:
        value = data.get(name)
        if value is None:
            if required:
                raise ConfigError(f"{self.file_name}: missing section [{name}]")
            return {}
        if not isinstance(value, dict):
            raise ConfigError(f"{self.file_name}: [{name}] must be a table")
        return value

    def string(self, section: dict[str, Any], name: str, key: str,
               required: bool = False) -> str | None:
        value = section.get(key)
        if value is None:
            if required:
                self.fail(name, key, "is required")
            return None
        if not isinstance(value, str) or not value.strip():
            self.fail(name, key, f"must be a non-empty string, got {value!r}")
        return value

    def globs(self, section: dict[str, Any], name: str, key: str,
              required: bool = False) -> tuple[str, ...]:
        value = section.get(key)
        if value is None:
            if required:
                self.fail(name, key, "is required (a list of file globs)")
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.fail(name, key, "must be a list of strings")
        for pattern in value:
            if pattern.startswith("/") or ".." in Path(pattern).parts:
                self.fail(name, key, f"{pattern!r} must be relative to the repository root")
        if required and not value:
            self.fail(name, key, "must name at least one file")
        return tuple(value)

    def number(self, section: dict[str, Any], name: str, key: str, default: float,
               low: float | None = None) -> float:
        value = section.get(key, default)
        if not _is_number(value):
            self.fail(name, key, f"must be a number, got {value!r}")
        if low is not None and value < low:
            self.fail(name, key, f"must be at least {low}, got {value}")
        return float(value)

    def boolean(self, section: dict[str, Any], name: str, key: str, default: bool) -> bool:
        value = section.get(key, default)
        if not isinstance(value, bool):
            self.fail(name, key, f"must be true or false, got {value!r}")
        return value

    def integer(self, section: dict[str, Any], name: str, key: str, default: int,
                low: int | None = None) -> int:
        value = section.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(name, key, f"must be a whole number, got {value!r}")
        if low is not None and value < low:
            self.fail(name, key, f"must be at least {low}, got {value}")
        return value

    def duration(self, section: dict[str, Any], name: str, key: str, default: float) -> float:
        value = section.get(key)
        if value is None:
            return default
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(name, key, str(exc))

    def memory(self, section: dict[str, Any], name: str, key: str) -> int | None:
        value = section.get(key)
        if value is None:
            return None
        try:
            return parse_memory(value)
        except ValueError as exc:
            self.fail(name, key, str(exc))
