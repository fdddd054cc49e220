"""Running a candidate: the command in its own process group, limits, and the metric read back.

The run goes in phases: the task's command (edited code runs here), then the protected
`evaluate` command if the task has one. The metric is read only from the last phase, so a line
printed by edited code cannot forge it when a protected phase exists. Protected files are hashed
before, between and after the phases; any change voids the run.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from ratchet.config import TaskConfig, metric_regex
from ratchet.workspace import digest_changes, protected_digest

SECRET_MARKERS = ("KEY", "TOKEN", "SECRET", "PASSWORD")
# A protected evaluate phase may void a run it refuses to score (a non-causal model, say).
VOID_LINE = re.compile(r"^ratchet-void:\s*(?P<reason>.+)$", re.MULTILINE)
KILL_GRACE_S = 2.0


class MetricError(ValueError):
    """The output holds no usable metric value; the message says why."""


@dataclass
class ProcessOutcome:
    returncode: int | None
    timed_out: bool
    wall_s: float
    cpu_s: float
    peak_mem_mb: float
    cancelled: bool = False


@dataclass
class RunResult:
    """The outcome of one evaluation run of a candidate."""

    status: str  # ok | crash | timeout | void | interrupted
    value: float | None = None
    secondary: dict[str, float] = field(default_factory=dict)
    holdout: float | None = None
    reason: str | None = None
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_mem_mb: float = 0.0


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
        raise MetricError(f"no {name!r} value found in the output")
    return _finite(matches[-1].group("value"), name)


def read_metric_file(path: Path, name: str) -> float:
    if not path.is_file():
        raise MetricError(f"result file {path.name} was not written")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MetricError(f"result file {path.name} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or name not in data:
        raise MetricError(f"result file {path.name} has no key {name!r}")
    return _finite(data[name], name)


def _finite(raw: object, name: str) -> float:
    if isinstance(raw, bool):
        raise MetricError(f"{name} is not a number: {raw!r}")
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise MetricError(f"{name} is not a number: {raw!r}") from None
    if math.isnan(value):
        raise MetricError(f"{name} is NaN")
    if math.isinf(value):
        raise MetricError(f"{name} is infinite")
    return value


class ProcessRunner:
    """Runs shell commands each in a new process group, killing the whole group when done."""

    def __init__(self, on_start: Callable[[int], None] | None = None) -> None:
        self.on_start = on_start
        self._groups: set[int] = set()
        self._cancelled = False
        self._lock = threading.Lock()

    def cancel(self) -> None:
        """Kill whatever this runner is running now and refuse to start more."""
        with self._lock:
            self._cancelled = True
            groups = list(self._groups)
        for pgid in groups:
            kill_group(pgid, signal.SIGKILL)

    def run(self, command: str, cwd: Path, env: Mapping[str, str], timeout_s: float,
            log: Path, memory_limit_bytes: int | None = None) -> ProcessOutcome:
        if memory_limit_bytes:
            command = f"ulimit -v {memory_limit_bytes // 1024} && {command}"
        start = time.monotonic()
        with self._lock:
            if self._cancelled:
                return ProcessOutcome(None, False, 0.0, 0.0, 0.0, cancelled=True)
            with open(log, "ab") as out:
                proc = subprocess.Popen(["/bin/sh", "-c", command], cwd=cwd, env=dict(env),
                                        stdin=subprocess.DEVNULL, stdout=out,
                                        stderr=subprocess.STDOUT, start_new_session=True)
            self._groups.add(proc.pid)
        if self.on_start:
            self.on_start(proc.pid)
        try:
            status, usage, timed_out = _wait_or_kill(proc.pid, timeout_s)
        finally:
            kill_group(proc.pid, signal.SIGKILL)  # leftovers: background children, orphans
            with self._lock:
                self._groups.discard(proc.pid)
                cancelled = self._cancelled
        proc.returncode = os.waitstatus_to_exitcode(status)
        return ProcessOutcome(
            returncode=proc.returncode,
            timed_out=timed_out,
            wall_s=time.monotonic() - start,
            cpu_s=usage.ru_utime + usage.ru_stime,
            peak_mem_mb=usage.ru_maxrss / 1024.0,
            cancelled=cancelled and not timed_out,
        )


def _wait_or_kill(pid: int, timeout_s: float) -> tuple[int, os.struct_rusage, bool]:
    """Wait for `pid`; past the timeout, SIGTERM its group, then SIGKILL it after a grace."""
    box: dict[str, tuple[int, int, os.struct_rusage]] = {}
    waiter = threading.Thread(target=lambda: box.setdefault("r", os.wait4(pid, 0)), daemon=True)
    waiter.start()
    waiter.join(timeout_s)
    timed_out = waiter.is_alive()
    if timed_out:
        kill_group(pid, signal.SIGTERM)
        waiter.join(KILL_GRACE_S)
        kill_group(pid, signal.SIGKILL)
        waiter.join()
    _, status, usage = box["r"]
    return status, usage, timed_out


def kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class Evaluator:
    """Evaluates one candidate checked out in `worktree`, phase by phase."""

    def __init__(self, config: TaskConfig, base_env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.base_env = base_env  # None: the process environment at the time of each run

    def environment(self) -> dict[str, str]:
        agent_key = self.config.agent.api_key_env  # the agent's key, whatever it is called
        env = scrub_env(os.environ if self.base_env is None else self.base_env,
                        self.config.env_allow, [agent_key] if agent_key else [])
        # `python` in a task's command means the interpreter ratchet itself runs under.
        env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
        return env

    def evaluate(self, worktree: Path, log: Path, runner: ProcessRunner,
                 extra_env: Mapping[str, str] | None = None) -> RunResult:
        cfg = self.config
        env = {**self.environment(), **(extra_env or {})}
        deadline = time.monotonic() + cfg.timeout_s
        expected = protected_digest(worktree, cfg.protected)
        result = RunResult(status="ok")
        phases = [("command", cfg.command)]
        if cfg.evaluate:
            phases.append(("evaluate", cfg.evaluate))
        output, all_output = "", ""
        for phase, command in phases:
            if phase == "evaluate" and cfg.metric.file:
                # edited code must not be able to pre-write the result file
                (worktree / cfg.metric.file).unlink(missing_ok=True)
            output, outcome = self._phase(phase, command, worktree, env, deadline, log, runner)
            all_output += output
            _account(result, outcome)
            refused = VOID_LINE.search(output) if phase == "evaluate" else None
            if refused:
                result.status = "void"
                result.reason = f"the evaluator refused to score it: {refused.group('reason')}"
                return result
            failure = self._failure(phase, outcome, worktree, expected)
            if failure:
                result.status, result.reason = failure
                return result
        try:
            result.value = self._metric(output, worktree)
        except MetricError as exc:
            result.status, result.reason = "crash", str(exc)
            return result
        result.secondary = _secondary(all_output, cfg.metric.secondary)
        if cfg.holdout_command:
            result.holdout = self._holdout(worktree, env, deadline, log, runner, expected, result)
        return result

    def _phase(self, phase: str, command: str, worktree: Path, env: Mapping[str, str],
               deadline: float, log: Path, runner: ProcessRunner) -> tuple[str, ProcessOutcome]:
        offset = log.stat().st_size if log.exists() else 0
        with open(log, "a") as f:
            f.write(f"==> ratchet: {phase}: {command}\n")
        remaining = max(deadline - time.monotonic(), 0.001)
        outcome = runner.run(command, worktree, env, remaining, log, self.config.memory_limit_bytes)
        with open(log, "rb") as f:
            f.seek(offset)
            output = f.read().decode("utf-8", errors="replace")
        return output, outcome

    def _failure(self, phase: str, outcome: ProcessOutcome, worktree: Path,
                 expected: Mapping[str, str]) -> tuple[str, str] | None:
        changed = digest_changes(expected, protected_digest(worktree, self.config.protected))
        if changed:
            return "void", f"protected files changed during the {phase} phase: {', '.join(changed)}"
        if outcome.cancelled:
            return "interrupted", "stopped by the user"
        if outcome.timed_out:
            return "timeout", f"timed out after {self.config.timeout_s:g}s (process group killed)"
        if outcome.returncode != 0:
            return "crash", f"{phase} phase exited with code {outcome.returncode}"
        return None

    def _metric(self, output: str, worktree: Path) -> float:
        metric = self.config.metric
        if metric.file:
            return read_metric_file(worktree / metric.file, metric.name)
        return parse_metric(output, metric.name, metric.pattern)

    def _holdout(self, worktree: Path, env: Mapping[str, str], deadline: float, log: Path,
                 runner: ProcessRunner, expected: Mapping[str, str],
                 result: RunResult) -> float | None:
        assert self.config.holdout_command
        output, outcome = self._phase("holdout", self.config.holdout_command, worktree, env,
                                      deadline, log, runner)
        _account(result, outcome)
        if self._failure("holdout", outcome, worktree, expected):
            return None
        name = self.config.holdout_metric or self.config.metric.name
        try:
            return parse_metric(output, name)
        except MetricError:
            return None


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
