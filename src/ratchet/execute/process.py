"""Running one command: under a launcher, in its own process group, watched, and killed whole.

A `ProcessRunner` starts a shell command under a launcher (see `sandbox`), waits for it with a
timeout, and afterwards kills whatever the command left behind. A watchdog samples the memory
of the whole process tree (every descendant, not just the largest process), records its peak,
and kills the tree when it passes the task's limit: this works for CUDA processes, whose huge
virtual address space made `ulimit -v` useless, and needs no cgroup. It also adds up the tree's
CPU time, which `wait4` cannot see through a PID namespace (it misses at most the last sample
interval).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ratchet.execute.sandbox import Launcher, NoLauncher, Sandbox

KILL_GRACE_S = 2.0
SAMPLE_INTERVAL_S = 0.1
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class ProcessOutcome:
    returncode: int | None
    timed_out: bool
    wall_s: float
    cpu_s: float
    peak_mem_mb: float
    cancelled: bool = False
    memory_exceeded: bool = False


class _Running:
    """A started command: its process, its watchdog, and when it started."""

    def __init__(self, proc: subprocess.Popen[bytes], watchdog: TreeWatchdog) -> None:
        self.proc, self.watchdog = proc, watchdog
        self.started = time.monotonic()


class ProcessRunner:
    """Runs commands each in a new process group under one launcher, killing the whole tree."""

    def __init__(self, launcher: Launcher | None = None,
                 on_start: Callable[[int], None] | None = None) -> None:
        self.launcher = launcher or NoLauncher()
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
            kill_tree(pgid)

    def run(self, command: str, sandbox: Sandbox, env: Mapping[str, str], timeout_s: float,
            log: Path, memory_limit_bytes: int | None = None) -> ProcessOutcome:
        running = self.start(command, sandbox, env, log, memory_limit_bytes)
        return self.finish(running, timeout_s)

    def start(self, command: str, sandbox: Sandbox, env: Mapping[str, str], log: Path,
              memory_limit_bytes: int | None = None, stdin: int | None = None,
              stdout: int | None = None, pass_fds: Sequence[int] = ()) -> _Running | None:
        """Start `command`; None when the runner was cancelled. Output goes to `log` unless
        `stdout` names another descriptor (a pipe); stderr always goes to `log`."""
        argv = self.launcher.wrap(["/bin/sh", "-c", command], sandbox)
        with self._lock:
            if self._cancelled:
                return None
            with open(log, "ab") as out:
                proc = subprocess.Popen(
                    argv, cwd=sandbox.workdir, env=dict(env),
                    stdin=subprocess.DEVNULL if stdin is None else stdin,
                    stdout=out if stdout is None else stdout, stderr=out,
                    start_new_session=True, pass_fds=tuple(pass_fds))
            self._groups.add(proc.pid)
        if self.on_start:
            self.on_start(proc.pid)
        watchdog = TreeWatchdog(proc.pid, memory_limit_bytes)
        watchdog.start()
        return _Running(proc, watchdog)

    def finish(self, running: _Running | None, timeout_s: float) -> ProcessOutcome:
        """Wait for a started command (killing it past `timeout_s`), then kill its leftovers."""
        if running is None:
            return ProcessOutcome(None, False, 0.0, 0.0, 0.0, cancelled=True)
        proc = running.proc
        remaining = max(timeout_s - (time.monotonic() - running.started), 0.001)
        try:
            status, usage, timed_out = _wait_or_kill(proc.pid, remaining)
        finally:
            running.watchdog.stop()
            # Leftovers: background children in the group (under bwrap, the namespace's end
            # has taken every process already). The pid is reaped: never signal it alone now.
            kill_group(proc.pid, signal.SIGKILL)
            with self._lock:
                self._groups.discard(proc.pid)
                cancelled = self._cancelled
        proc.returncode = os.waitstatus_to_exitcode(status)
        return ProcessOutcome(
            returncode=proc.returncode,
            timed_out=timed_out,
            wall_s=time.monotonic() - running.started,
            cpu_s=max(usage.ru_utime + usage.ru_stime, running.watchdog.cpu_s),
            peak_mem_mb=max(running.watchdog.peak_bytes, usage.ru_maxrss * 1024) / 2**20,
            cancelled=cancelled and not timed_out,
            memory_exceeded=running.watchdog.exceeded,
        )


class TreeWatchdog:
    """Samples the resident memory of a process and all its descendants; kills past a limit."""

    def __init__(self, pid: int, limit_bytes: int | None) -> None:
        self.pid, self.limit_bytes = pid, limit_bytes
        self.peak_bytes = 0
        self.cpu_s = 0.0  # the most CPU time seen in the tree at one sample
        self.exceeded = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.is_set():
            tree = process_tree(self.pid, max_age_s=SAMPLE_INTERVAL_S / 2)
            used = sum(_rss_bytes(pid) for pid in tree)
            self.peak_bytes = max(self.peak_bytes, used)
            self.cpu_s = max(self.cpu_s, sum(_cpu_seconds(pid) for pid in tree))
            if self.limit_bytes is not None and used > self.limit_bytes:
                self.exceeded = True
                kill_tree(self.pid)
                return
            self._stop.wait(SAMPLE_INTERVAL_S)


def process_tree(root: int, max_age_s: float = 0.0) -> list[int]:
    """`root` and every live descendant of it, found through /proc (a table read at most
    `max_age_s` ago will do: many watchdogs then share one scan)."""
    children = _PROCESS_TABLE.children(max_age_s)
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


class _ProcessTable:
    """Parent-to-children map of every process, one /proc scan shared by all who ask."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.read_at = -1.0
        self.table: dict[int, list[int]] = {}

    def children(self, max_age_s: float) -> dict[int, list[int]]:
        with self.lock:
            if time.monotonic() - self.read_at > max_age_s:
                self.table, self.read_at = _scan_children(), time.monotonic()
            return self.table


def _scan_children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        ppid = _parent_of(int(entry.name))
        if ppid is not None:
            children.setdefault(ppid, []).append(int(entry.name))
    return children


_PROCESS_TABLE = _ProcessTable()


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return int(stat.rsplit(b")", 1)[1].split()[1])


def _cpu_seconds(pid: int) -> float:
    """CPU time of `pid` and of the children it has waited for."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(tick) for tick in fields[11:15]) / CLOCK_TICKS


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE_BYTES
    except (OSError, IndexError, ValueError):
        return 0


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
        kill_tree(pid)
        waiter.join()
    _, status, usage = box["r"]
    return status, usage, timed_out


def kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def kill_tree(pid: int) -> None:
    """SIGKILL the process group `pid` leads and every descendant, even those that left it."""
    tree = process_tree(pid)
    kill_group(pid, signal.SIGKILL)
    for member in tree:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(member, signal.SIGKILL)
