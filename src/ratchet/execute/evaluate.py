"""Evaluating a candidate: its phases, each in a sandbox, the protected files, the metric.

The run goes in phases: the task's command (edited code runs here, under the compute budget,
without the hidden files), then the protected `evaluate` command if the task has one (it alone
sees the hidden files; a protected `predict` process beside it runs the edited model for it,
again without them, and they talk over two pipes). The evaluate and holdout phases run in a
copy of the committed tree taken before the command phase: nothing the command phase wrote
(a model file to unpickle, bytecode, a module that shadows one) ever reaches them; what it
trained reaches the evaluator only through `predict`, which is as untrusted as the command.
The metric is read only from the last phase, so a line printed by edited code cannot forge it
when a protected phase exists. Protected files are hashed before and after the phases; any
change voids the run.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import stat
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from pathlib import Path

from ratchet.config import TaskConfig, metric_regex
from ratchet.execute.gitrepo import remove_tree
from ratchet.execute.process import CPU_BREACH, ProcessOutcome, ProcessRunner
from ratchet.execute.sandbox import Limits, Sandbox
from ratchet.execute.tree_walk import TreeError, walk
from ratchet.execute.watch import StepMonitor, StepWatcher
from ratchet.execute.workspace import digest_changes, protected_digest, run_failure
from ratchet.flags import FlagsError, fill, read_flags
from ratchet.globs import matches_any
from ratchet.steps import Curve

SECRET_MARKERS = ("KEY", "TOKEN", "SECRET", "PASSWORD")
# A protected evaluate phase may void a run it refuses to score (a non-causal model, say).
VOID_LINE = re.compile(r"^ratchet-void:\s*(?P<reason>.+)$", re.MULTILINE)
BUDGET_VARIABLE = "RATCHET_TIME_BUDGET"  # seconds the command phase may train
HORIZON_VARIABLE = "RATCHET_HORIZON"  # the run's multiple of the task's budget
PREDICT_VARIABLE = "RATCHET_PREDICT_FDS"  # "<write fd>,<read fd>" of the pipes to `predict`
PREDICT_CPU = "predict_cpu_s"  # a secondary value: the CPU time the predict process took
PREDICT_EXIT_GRACE_S = 2.0
# A candidate's predict process may use this multiple of the baseline's CPU, plus the slack:
# room for a larger model, not for training where the command phase's budget does not reach.
PREDICT_BUDGET_FACTOR = 2.0
PREDICT_BUDGET_SLACK_S = 2.0
COMMITTED_SUFFIX = ".committed"  # beside a work tree: the copy the protected phases run in
MAX_RESULT_BYTES = 2**20  # a JSON result file holds a few numbers
SEED_VARIABLE = "RATCHET_SEED"  # the run's own seed (ratchet.knobs.seeds reads the same name)
# A run's seed is drawn below this: every seeding API takes it (NumPy's legacy seed wants less
# than 2**32), with room for the offsets code adds (`1337 + seed_offset`).
SEED_LIMIT = 2**31


_METRIC_LIKE = re.compile(r"^[ \t]*(?P<name>[A-Za-z_][\w./-]{0,40})[ \t]*[:=][ \t]*"
                          r"[-+]?(\d|\.\d)[^\n]{0,80}", re.MULTILINE)


def draw_seed() -> int:
    """A run's own seed, drawn so that no proposer can know it ahead of the run."""
    return secrets.randbelow(SEED_LIMIT)


@dataclass(frozen=True)
class Overlay:
    """Files written into a run's own copy of the code just before its command phase (the
    committed copy the protected phases run in keeps them as committed), and what to say
    about them in the log. ratchet.context makes one per run from the [seeds] files."""

    files: Mapping[str, str]
    note: str


class MetricError(ValueError):
    """The output holds no usable metric value; the message says why."""


@dataclass
class RunResult:
    """The outcome of one evaluation run of a candidate."""

    status: str  # ok | crash | timeout | void | pruned | interrupted
    value: float | None = None
    secondary: dict[str, float] = field(default_factory=dict)
    holdout: float | None = None
    holdout_problem: str | None = None  # why there is no holdout value, when one was asked for
    reason: str | None = None
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_mem_mb: float = 0.0
    slot: int | None = None  # the executor's slot it ran in
    curve: list[list[float]] | None = None  # its intermediate values, [step, value] pairs
    horizon: float = 1.0  # the fraction of the task's budget it ran for
    seed: int | None = None  # the RATCHET_SEED it ran with


def scrub_env(environ: Mapping[str, str], allow: Iterable[str] = (),
              secrets: Iterable[str] = ()) -> dict[str, str]:
    """The environment without any variable whose name looks like a credential (unless
    `allow` lets it through) and without the named `secrets`, whatever they are called."""
    allow, secrets = tuple(allow), set(secrets)
    return {
        name: value for name, value in environ.items()
        if name not in secrets and (not any(m in name.upper() for m in SECRET_MARKERS)
                                    or any(fnmatchcase(name, pattern) for pattern in allow))
    }


def parse_metric(output: str, name: str, pattern: str | None = None) -> float:
    """The last value of the metric in `output`; MetricError when it is missing or unusable."""
    matches = list(metric_regex(name, pattern).finditer(output))
    if not matches:
        seen = metric_like_lines(output)
        raise MetricError(f"no {name!r} value found in the output (" + (
            f"metric-like lines seen: {', '.join(seen)})" if seen else
            "it has no `name: value` lines)"))
    return _finite(matches[-1].group("value"), name)


def metric_like_lines(output: str, most: int = 5) -> list[str]:
    """The last few distinct `name: number` lines of `output`, quoted and cut short."""
    seen: dict[str, str] = {}
    for match in _METRIC_LIKE.finditer(output):
        seen.setdefault(match.group("name"), match.group(0).strip())
    return [repr(_cut(line, 60)) for line in list(seen.values())[-most:]]


def _cut(text: str, most: int) -> str:
    return text if len(text) <= most else text[:most - 1] + "…"


def read_metric_file(path: Path, name: str) -> float:
    """The metric from a JSON result file: a regular file (never a link, a FIFO or a folder),
    of which at most MAX_RESULT_BYTES are read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        raise MetricError(f"result file {path.name} was not written") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise MetricError(f"result file {path.name} is not a regular file")
        raw = f.read(MAX_RESULT_BYTES + 1)
    if len(raw) > MAX_RESULT_BYTES:
        raise MetricError(f"result file {path.name} is larger than {MAX_RESULT_BYTES} bytes")
    try:
        data = json.loads(raw.decode())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise MetricError(f"result file {path.name} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or name not in data:
        raise MetricError(f"result file {path.name} has no key {name!r}")
    return _finite(data[name], name)


def _finite(raw: object, name: str) -> float:
    if isinstance(raw, bool):
        raise MetricError(f"{name} is not a number: {raw!r}")  # JSON's true/false
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise MetricError(f"{name} is not a number: {_cut(repr(raw), 80)}") from None
    if math.isnan(value):
        raise MetricError(f"{name} is NaN")
    if math.isinf(value):
        raise MetricError(f"{name} is infinite")
    return value


class Evaluator:
    """Evaluates one candidate checked out in `worktree`, phase by phase, each in a sandbox.

    `conceal` lists what no phase may see (the user's repository, the store, git metadata).
    """

    def __init__(self, config: TaskConfig, base_env: Mapping[str, str] | None = None,
                 conceal: Iterable[Path] = ()) -> None:
        self.config = config
        self.base_env = base_env  # None: the process environment at the time of each run
        self.conceal = tuple(conceal)

    def environment(self) -> dict[str, str]:
        agent_key = self.config.agent.api_key_env  # the agent's key, whatever it is called
        env = scrub_env(os.environ if self.base_env is None else self.base_env,
                        self.config.env_allow, [agent_key] if agent_key else [])
        # `python` in a task's command means the interpreter ratchet itself runs under.
        env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
        return env

    def sandbox(self, worktree: Path, *, sees_hidden: bool, writable: bool = True) -> Sandbox:
        """The rules of one phase: hidden files only where `sees_hidden`."""
        cfg = self.config
        read_only = tuple(self._read_only(worktree))
        hidden = () if sees_hidden else tuple(_hidden_files(worktree, read_only, cfg.hidden))
        return Sandbox(workdir=worktree, writable=writable, network=cfg.sandbox.network,
                       conceal=self.conceal, hidden=hidden, read_only=read_only,
                       limits=self.limits())

    def limits(self) -> Limits:
        box, memory = self.config.sandbox, self.config.memory_limit_bytes
        return Limits(processes=box.max_processes, open_files=box.max_open_files,
                      output_bytes=box.max_output_bytes, disk_bytes=box.max_disk_bytes,
                      tmpfs_bytes=memory or box.tmpfs_bytes, memory_bytes=memory)

    def _read_only(self, worktree: Path) -> Iterable[tuple[Path, Path]]:
        """`[sandbox].read_only`: absolute paths where they are; relative ones (data beside
        the repository's code) placed at the same place in the work tree."""
        for entry in self.config.sandbox.read_only:
            path = Path(entry).expanduser()
            if path.is_absolute():
                yield path, path
            else:
                yield self.config.root / path, worktree / path

    def evaluate(self, worktree: Path, log: Path, runner: ProcessRunner,
                 extra_env: Mapping[str, str] | None = None, horizon: float = 1.0,
                 monitor: StepMonitor | None = None,
                 predict_budget_s: float | None = None, seed: int | None = None,
                 overlay: Overlay | None = None) -> RunResult:
        """One run of the code in `worktree`; `monitor`, if given, sees its intermediate
        values as they come and may stop it (status `pruned`); the predict process, if the
        task has one, may use `predict_budget_s` of CPU (the edited model must not train
        where the command phase's budget does not reach). `seed` is the run's own (drawn here
        when not given): every phase sees it as RATCHET_SEED. `overlay` (its seed written into
        the code) goes into `worktree` only, after the protected phases' copy is taken."""
        cfg = self.config
        env = {**self.environment(), **(extra_env or {}), HORIZON_VARIABLE: f"{horizon:g}"}
        if cfg.budget_s is not None:
            env[BUDGET_VARIABLE] = f"{cfg.budget_s * horizon:g}"
        seed = draw_seed() if seed is None else seed
        env[SEED_VARIABLE] = str(seed)
        # A shorter horizon keeps the whole timeout: start-up and evaluation do not shrink.
        deadline = time.monotonic() + cfg.timeout_s * max(horizon, 1.0)
        expected = protected_digest(worktree, cfg.protected)
        result = RunResult(status="ok", horizon=horizon, seed=seed)
        try:
            command = self._filled(cfg.command, worktree)
        except FlagsError as exc:  # the flags file is the proposer's: its problem is a crash
            result.status, result.reason = "crash", str(exc)
            return result
        committed = _committed_copy(worktree) if cfg.evaluate else None
        try:
            if overlay is not None:
                self._overlay(worktree, overlay, log)
            self._run_phases(result, command, worktree, committed, env, deadline, log, runner,
                             monitor, expected, predict_budget_s)
        except TreeError as exc:  # what the command phase left there: its outcome, with the
            result.status, result.reason = run_failure(exc)  # compute it took kept
        finally:
            if committed is not None:
                with contextlib.suppress(OSError):
                    remove_tree(committed)
        return result

    def _run_phases(self, result: RunResult, command: str | None, worktree: Path,
                    committed: Path | None, env: Mapping[str, str], deadline: float, log: Path,
                    runner: ProcessRunner, monitor: StepMonitor | None,
                    expected: Mapping[str, str], predict_budget_s: float | None) -> None:
        """The command phase in `worktree`, then the protected phases in `committed`."""
        cfg = self.config
        output, outcome, budget_reason, stopped = self._command_phase(
            command, worktree, env, deadline, log, runner, result.horizon, monitor)
        all_output = output
        _account(result, outcome)
        curve = Curve(cfg.minimize)
        curve.add_text(output, cfg.step_metric)
        result.curve = curve.pairs() or None
        if stopped is not None:
            result.status, result.reason = "pruned", stopped
            return
        failure = self._failure("command", outcome, worktree, expected, budget_reason)
        if failure:
            result.status, result.reason = failure
            return
        scored_in = worktree
        if cfg.evaluate and committed is not None:
            scored_in = committed
            if cfg.metric.file:
                escape = _leaves(committed, cfg.metric.file)
                if escape:
                    result.status, result.reason = "void", escape
                    return
                _remove_path(committed / cfg.metric.file)  # a committed stale result
            output, outcome = self._scoring_phase("evaluate", cfg.evaluate, committed, worktree,
                                                  env, deadline, log, runner, predict_budget_s)
            all_output += output
            _account(result, outcome)
            refused = VOID_LINE.search(output)
            if refused:
                result.status = "void"
                result.reason = f"the evaluator refused to score it: {refused.group('reason')}"
                return
            failure = self._failure("evaluate", outcome, committed, expected)
            if failure:
                result.status, result.reason = failure
                if failure[0] == "crash":
                    result.reason = _reads_written(output, worktree, committed) or failure[1]
                return
        try:
            result.value = self._metric(output, scored_in)
        except MetricError as exc:
            result.status, result.reason = "crash", str(exc)
            return
        result.secondary = _secondary(all_output, cfg.metric.secondary)
        if outcome.predict_cpu_s is not None:
            result.secondary[PREDICT_CPU] = round(outcome.predict_cpu_s, 3)
        if cfg.holdout_command and result.horizon >= 1.0:  # a short run's holdout goes unused
            result.holdout = self._holdout(scored_in, worktree, env, deadline, log, runner,
                                           expected, result, predict_budget_s)

    def _command_phase(self, command: str | None, worktree: Path, env: Mapping[str, str],
                       deadline: float, log: Path, runner: ProcessRunner, horizon: float,
                       monitor: StepMonitor | None,
                       ) -> tuple[str, ProcessOutcome, str | None, str | None]:
        """The command phase's output, outcome, what to say if it was stopped by its
        compute budget (measured in wall time, so a slowed clock inside gains nothing), and
        why the monitor stopped it, if it did."""
        cfg = self.config
        limit, budget_reason = deadline - time.monotonic(), None
        if cfg.budget_s is not None and cfg.budget_s * horizon + cfg.budget_grace_s < limit:
            limit = cfg.budget_s * horizon + cfg.budget_grace_s
            budget_reason = (f"over budget: the command phase ran past its compute budget of "
                             f"{cfg.budget_s * horizon:g}s + {cfg.budget_grace_s:g}s grace "
                             "(wall time; killed)")
        if command is None:  # the evaluate phase runs the code
            return "", ProcessOutcome(returncode=0, timed_out=False, wall_s=0.0, cpu_s=0.0,
                                      peak_mem_mb=0.0), None, None
        sandbox = self.sandbox(worktree, sees_hidden=False)
        stopped = None
        with _PhaseOutput(log, "command", command, sandbox.limits.output_bytes) as phase:
            if monitor is None:
                phase.outcome = runner.run(command, sandbox, env, max(limit, 0.001), log)
            else:
                watcher = StepWatcher(log, phase.offset, cfg.step_metric, cfg.minimize, monitor)
                running = runner.start(command, sandbox, env, log)
                if running is not None:
                    watcher.start(running.proc.pid)
                try:
                    phase.outcome = runner.finish(running, max(limit, 0.001))
                finally:
                    watcher.stop()
                stopped = watcher.stopped
        return phase.output, phase.outcome, budget_reason, stopped

    def _overlay(self, worktree: Path, overlay: Overlay, log: Path) -> None:
        """Write the overlay's files into this run's work tree: only files the commit has, as
        regular files reached through no link, never a protected one."""
        for path, text in overlay.files.items():
            target = worktree / path
            if matches_any(path, self.config.protected) or not _plain_file(worktree, path):
                continue
            fd = os.open(target, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC)
            with os.fdopen(fd, "wb") as f:
                f.write(text.encode("utf-8"))
        with open(log, "a") as f:
            f.write(f"==> ratchet: {overlay.note}\n")

    def _filled(self, command: str | None, worktree: Path) -> str | None:
        """The command with the code state's flags (`[knobs].flags`), if the task has them.
        ratchet reads the file outside the sandbox, so it must be the file itself: a link
        could lead to a hidden file, and its text into the command line."""
        name = self.config.flags_file
        if name is None or command is None:
            return command
        if (worktree / name).resolve() != Path(os.path.normpath(worktree.resolve() / name)):
            raise FlagsError(f"the flags file {name} is a link, not a file")
        return fill(command, read_flags(worktree / name, name), name)

    def _scoring_phase(self, name: str, command: str, committed: Path, worktree: Path,
                       env: Mapping[str, str], deadline: float, log: Path,
                       runner: ProcessRunner,
                       predict_budget_s: float | None) -> tuple[str, ProcessOutcome]:
        """A protected phase, run in the `committed` tree with the hidden files; with
        `predict`, the edited model runs beside it in the command phase's `worktree`,
        read-only and without them, reached through two pipes."""
        cfg = self.config
        limit = max(deadline - time.monotonic(), 0.001)
        sandbox = self.sandbox(committed, sees_hidden=True)
        with _PhaseOutput(log, name, command, sandbox.limits.output_bytes) as phase:
            if not cfg.predict:
                phase.outcome = runner.run(command, sandbox, env, limit, log)
            else:
                phase.outcome = self._with_predictor(command, sandbox, worktree, env, limit, log,
                                                     runner, predict_budget_s)
        return phase.output, phase.outcome

    def _with_predictor(self, command: str, sandbox: Sandbox, worktree: Path,
                        env: Mapping[str, str], limit: float, log: Path,
                        runner: ProcessRunner, budget_s: float | None) -> ProcessOutcome:
        cfg = self.config
        assert cfg.predict
        to_model_r, to_model_w = os.pipe()
        from_model_r, from_model_w = os.pipe()
        model_box = self.sandbox(worktree, sees_hidden=False, writable=False)
        model_box = replace(model_box, limits=replace(model_box.limits,
                                                      cpu_seconds=budget_s))
        # Its own log: what the edited model prints never mixes with the metric's output.
        model_log = log.with_suffix(".predict.log")
        with open(model_log, "a") as f:
            f.write(f"==> ratchet: predict: {cfg.predict}\n")
        model = runner.start(cfg.predict, model_box, env, model_log,
                             stdin=to_model_r, stdout=from_model_w)
        os.close(to_model_r)
        os.close(from_model_w)
        scorer_env = {**env, PREDICT_VARIABLE: f"{to_model_w},{from_model_r}"}
        try:
            scorer = runner.start(command, sandbox, scorer_env, log,
                                  pass_fds=(to_model_w, from_model_r))
        except BaseException:
            runner.finish(model, 0.0)  # the scorer never started: no model left behind
            raise
        finally:
            os.close(to_model_w)
            os.close(from_model_r)
        outcome = runner.finish(scorer, limit)
        # After the scorer, the model has a moment to see its input close and exit.
        helper = runner.finish(model, limit + PREDICT_EXIT_GRACE_S)
        outcome.cpu_s += helper.cpu_s
        outcome.predict_cpu_s = helper.cpu_s
        outcome.peak_mem_mb = max(outcome.peak_mem_mb, helper.peak_mem_mb)
        if helper.breach and helper.breach.startswith(CPU_BREACH):
            outcome.breach = (f"over budget: the predict process used more than "
                              f"{budget_s:g}s of CPU (the edited model may not "
                              "train where the compute budget does not reach; killed)")
        elif helper.breach and not outcome.breach:
            outcome.breach = f"the predict process: {helper.breach}"
        return outcome

    def _failure(self, phase: str, outcome: ProcessOutcome, worktree: Path,
                 expected: Mapping[str, str],
                 timeout_reason: str | None = None) -> tuple[str, str] | None:
        changed = digest_changes(expected, protected_digest(worktree, self.config.protected))
        if changed:
            return "void", f"protected files changed during the {phase} phase: {', '.join(changed)}"
        if outcome.cancelled:
            return "interrupted", "stopped by the user"
        if outcome.breach and outcome.breach.startswith("over budget"):
            return "timeout", outcome.breach
        if outcome.breach:
            return "crash", f"{phase} phase killed: {outcome.breach}"
        if outcome.timed_out:
            return "timeout", timeout_reason or (f"timed out after {self.config.timeout_s:g}s "
                                                 "(process group killed)")
        if outcome.returncode != 0:
            return "crash", f"{phase} phase exited with code {outcome.returncode}"
        return None

    def _metric(self, output: str, worktree: Path) -> float:
        metric = self.config.metric
        if metric.file:
            return read_metric_file(worktree / metric.file, metric.name)
        return parse_metric(output, metric.name, metric.pattern)

    def _holdout(self, committed: Path, worktree: Path, env: Mapping[str, str],
                 deadline: float, log: Path, runner: ProcessRunner,
                 expected: Mapping[str, str], result: RunResult,
                 predict_budget_s: float | None) -> float | None:
        assert self.config.holdout_command
        output, outcome = self._scoring_phase("holdout", self.config.holdout_command, committed,
                                              worktree, env, deadline, log, runner,
                                              predict_budget_s)
        _account(result, outcome)
        failure = self._failure("holdout", outcome, committed, expected)
        if failure:
            result.holdout_problem = f"the holdout command failed: {failure[1]}"
            return None
        name = self.config.holdout_metric or self.config.metric.name
        try:
            return parse_metric(output, name)
        except MetricError as exc:
            result.holdout_problem = str(exc)
            return None


class _PhaseOutput:
    """Marks a phase in the log and reads back what the phase wrote to it: at most
    `most_bytes` (the run was killed past that); the log on disk is cut there too."""

    def __init__(self, log: Path, name: str, command: str, most_bytes: int) -> None:
        self.log, self.name, self.command = log, name, command
        self.most_bytes = most_bytes
        self.output = ""
        self.outcome: ProcessOutcome

    def __enter__(self) -> _PhaseOutput:
        self.offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "a") as f:
            f.write(f"==> ratchet: {self.name}: {self.command}\n")
        return self

    def __exit__(self, *exc: object) -> None:
        with open(self.log, "rb+") as f:
            f.seek(self.offset)
            self.output = f.read(self.most_bytes).decode("utf-8", errors="replace")
            if f.read(1):
                f.truncate(self.offset + self.most_bytes)
                f.seek(0, os.SEEK_END)
                f.write(b"\n==> ratchet: output cut here (over the output limit)\n")


def derived_predict_budget(baseline_cpu_s: float) -> float:
    """The CPU a candidate's predict process may use, from what the baseline's took."""
    return PREDICT_BUDGET_FACTOR * baseline_cpu_s + PREDICT_BUDGET_SLACK_S


def _committed_copy(worktree: Path) -> Path:
    """A copy of `worktree` as the executor made it (the committed tree, hidden files
    included), taken before any phase runs: where the protected phases run."""
    copy = worktree.with_name(worktree.name + COMMITTED_SUFFIX)
    remove_tree(copy)
    subprocess.run(["cp", "-a", "--", str(worktree), str(copy)], check=True,
                   capture_output=True)
    return copy


def _plain_file(worktree: Path, relative: str) -> bool:
    """`relative` is a regular file inside `worktree`, reached through no link."""
    target = worktree / relative
    if ".." in Path(relative).parts or not os.path.lexists(target):
        return False
    inside = Path(os.path.realpath(target)) == Path(os.path.realpath(worktree)) / relative
    return inside and stat.S_ISREG(os.lstat(target).st_mode)


def _remove_path(path: Path) -> None:
    if path.is_symlink() or path.exists():
        remove_tree(path)


def _reads_written(output: str, worktree: Path, committed: Path) -> str | None:
    """Why a protected phase failed, when its output names a file only the command phase
    wrote: it looked for it in the committed tree, where such files never are."""
    written = sorted((entry.rel for entry in walk(worktree)
                      if not os.path.lexists(committed / entry.rel)), key=len, reverse=True)
    for relative in written:
        if re.search(rf"(?<![\w.-]){re.escape(Path(relative).name)}(?![\w.-])", output):
            return (f"the evaluate phase reads {relative}, which the command phase wrote: the "
                    "evaluate and holdout phases see only the committed tree; load it in the "
                    "[task] predict process instead")
    return None


def _leaves(worktree: Path, relative: str) -> str | None:
    """Why `relative` leads out of the work tree (through a link the command planted)."""
    if not (worktree / relative).resolve().is_relative_to(worktree.resolve()):
        return f"the result file {relative} leads out of the work tree (a planted link)"
    return None


def _hidden_files(worktree: Path, read_only: Iterable[tuple[Path, Path]],
                  hidden: Iterable[str]) -> list[Path]:
    """Every file a hidden glob covers: in the work tree, and in data placed inside it."""
    hidden = tuple(hidden)
    if not hidden:
        return []
    roots = [(worktree, worktree)] + [(src, dst) for src, dst in read_only
                                      if dst.is_relative_to(worktree) and src.is_dir()]
    found = []
    for source, target in roots:
        for entry in walk(source):
            placed = (target / entry.rel).relative_to(worktree).as_posix()
            if matches_any(placed, hidden):
                found.append(target / entry.rel)
    return found


def _account(result: RunResult, outcome: ProcessOutcome) -> None:
    result.wall_s += outcome.wall_s
    result.cpu_s += outcome.cpu_s
    result.peak_mem_mb = max(result.peak_mem_mb, outcome.peak_mem_mb)


def _secondary(output: str, names: Iterable[str]) -> dict[str, float]:
    values = {}
    for name in names:
        try:
            values[name] = parse_metric(output, name)
        except MetricError:
            continue
    return values
