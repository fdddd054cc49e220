"""Running one command: under a launcher, in its own process group, watched, and killed whole.

A `ProcessRunner` starts a shell command under a launcher (see `sandbox`), waits for it with a
timeout, and afterwards kills whatever the command left behind. The sandbox's `Limits` are kept
two ways. What the kernel can cap at once is set as rlimits before the command starts (open
files, the size of any one file, processes of its user as a backstop, no core dumps). The rest
a watchdog samples, killing the whole tree on a breach and saying which: the resident memory of
the whole process tree (every descendant, not just the largest process) plus what it holds in
its private tmpfs, the number of its processes, the size of its output, and what it added to
its work tree. This needs no cgroup, and works for CUDA processes, whose huge virtual address
space made `ulimit -v` useless. The watchdog also adds up the tree's CPU time, which `wait4`
cannot see through a PID namespace (it misses at most the last sample interval).
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ratchet.execute.sandbox import Launcher, Limits, NoLauncher, Sandbox
from ratchet.execute.tree_walk import MAX_ENTRIES
from ratchet.units import format_memory

KILL_GRACE_S = 2.0
SAMPLE_INTERVAL_S = 0.1
DISK_EVERY = 20  # samples between two measures of the work tree (a walk of its files)
# The rlimit on processes counts every thread of the user (all slots' runs share uid 65534
# under a root driver; a user's desktop counts too under theirs): a backstop against fork
# bombs, set far above what the watchdog allows one sandbox.
THREADS_PER_PROCESS = 64
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
    breach: str | None = None  # the limit it broke, when the watchdog killed it
    predict_cpu_s: float | None = None  # of a scoring phase: what its predict process took


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
            log: Path) -> ProcessOutcome:
        running = self.start(command, sandbox, env, log)
        return self.finish(running, timeout_s)

    def start(self, command: str, sandbox: Sandbox, env: Mapping[str, str], log: Path,
              stdin: int | None = None, stdout: int | None = None,
              pass_fds: Sequence[int] = ()) -> _Running | None:
        """Start `command`; None when the runner was cancelled. Output goes to `log` unless
        `stdout` names another descriptor (a pipe); stderr always goes to `log`."""
        argv = self.launcher.wrap(["/bin/sh", "-c", command], sandbox)
        self.launcher.prepare(sandbox)
        with self._lock:
            if self._cancelled:
                return None
            with open(log, "ab") as out:
                offset = out.tell()
                proc = subprocess.Popen(
                    argv, cwd=sandbox.workdir, env=dict(env),
                    stdin=subprocess.DEVNULL if stdin is None else stdin,
                    stdout=out if stdout is None else stdout, stderr=out,
                    start_new_session=True, pass_fds=tuple(pass_fds),
                    preexec_fn=_rlimits_setter(sandbox.limits))
            self._groups.add(proc.pid)
        if self.on_start:
            self.on_start(proc.pid)
        watchdog = TreeWatchdog(proc.pid, sandbox.limits, _Output(log, offset),
                                sandbox.workdir if sandbox.writable else None,
                                [sandbox.home] if sandbox.private_home else [])
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
            breach=running.watchdog.breach,
        )


CPU_BREACH = "over budget: its processes together used more than"


def _rlimits_setter(limits: Limits) -> Callable[[], None]:
    """What the child sets before it becomes the command: async-signal-safe calls only."""
    values = [(resource.RLIMIT_NOFILE, limits.open_files),
              (resource.RLIMIT_FSIZE, limits.disk_bytes + 2**20),  # past it: a breach
              (resource.RLIMIT_NPROC, limits.processes * THREADS_PER_PROCESS),
              (resource.RLIMIT_CORE, 0)]

    def set_limits() -> None:
        for kind, value in values:
            _, hard = resource.getrlimit(kind)
            cap = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(kind, (cap, cap))
    return set_limits


@dataclass
class _Output:
    """Where a process's output goes, from which offset: its size is watched."""

    log: Path
    offset: int

    def size(self) -> int:
        try:
            return os.stat(self.log).st_size - self.offset
        except OSError:
            return 0


class TreeWatchdog:
    """Samples a process tree against its limits and kills it whole at the first breach:
    resident memory plus private tmpfs use, processes, output, what it adds to its work tree."""

    def __init__(self, pid: int, limits: Limits | None = None, output: _Output | None = None,
                 workdir: Path | None = None, private_dirs: Sequence[Path] = ()) -> None:
        self.pid, self.limits, self.output = pid, limits or Limits(), output
        self.workdir = workdir
        self.tmpfs = ["tmp", "dev/shm", *(str(p).lstrip("/") for p in private_dirs)]
        self.disk_before = _disk_use(workdir)[0] if workdir is not None else 0
        self.peak_bytes = 0
        self.cpu_s = 0.0  # the most CPU time seen in the tree at one sample
        self.breach: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling; a run that ended between samples is measured once more."""
        self._stop.set()
        self._thread.join()
        if self.breach is None:
            self.breach = self._breach([], 0, measure_disk=True)

    def _watch(self) -> None:
        samples = 0
        while not self._stop.is_set():
            tree = process_tree(self.pid, max_age_s=SAMPLE_INTERVAL_S / 2)
            used = sum(_rss_bytes(pid) for pid in tree) + self._tmpfs_bytes(tree)
            self.peak_bytes = max(self.peak_bytes, used)
            self.cpu_s = max(self.cpu_s, sum(_cpu_seconds(pid) for pid in tree))
            self.breach = self._breach(tree, used, samples % DISK_EVERY == DISK_EVERY - 1)
            if self.breach:
                kill_tree(self.pid)
                return
            samples += 1
            self._stop.wait(SAMPLE_INTERVAL_S)

    def _breach(self, tree: list[int], used: int, measure_disk: bool) -> str | None:
        limits = self.limits
        if limits.memory_bytes is not None and used > limits.memory_bytes:
            return (f"its processes together used more than the memory limit of "
                    f"{format_memory(limits.memory_bytes)} "
                    "(their private /tmp, /dev/shm and HOME included)")
        if limits.cpu_seconds is not None and self.cpu_s > limits.cpu_seconds:
            return f"{CPU_BREACH} {limits.cpu_seconds:g}s of CPU"
        if len(tree) > limits.processes:
            return f"it ran more than {limits.processes} processes at once"
        if self.output is not None and self.output.size() > limits.output_bytes:
            return f"it printed more than {format_memory(limits.output_bytes)}"
        if measure_disk and self.workdir is not None:
            used_bytes, entries = _disk_use(self.workdir)
            if entries >= MAX_ENTRIES:
                return f"it made more than {MAX_ENTRIES:,} files and folders in its work tree"
            if used_bytes - self.disk_before > limits.disk_bytes:
                return f"it wrote more than {format_memory(limits.disk_bytes)} into its work tree"
        return None

    def _tmpfs_bytes(self, tree: list[int]) -> int:
        """What the tree holds in its private tmpfs, seen through a process inside the
        sandbox's mount namespace (the tree's root, bwrap, is outside it)."""
        inside = tree[1:2]
        total = 0
        for pid in inside:
            for path in self.tmpfs:
                with contextlib.suppress(OSError):
                    inner = f"/proc/{pid}/root/{path}"
                    if os.stat(inner).st_dev == os.stat(f"/{path}").st_dev:
                        continue  # no mount of its own (no sandbox): the host's directory
                    stats = os.statvfs(inner)
                    total += (stats.f_blocks - stats.f_bfree) * stats.f_frsize
        return total


def _disk_use(root: Path) -> tuple[int, int]:
    """Bytes the files under `root` take on disk (allocated blocks: a sparse file costs what
    it holds) and the entries counted, at most MAX_ENTRIES; walked without recursion, links
    never followed. Not `tree_walk.walk`: this tree is live, and what vanishes while it is
    walked is skipped, not an error."""
    total, seen, todo = 0, 0, [str(root)]
    while todo and seen < MAX_ENTRIES:
        with contextlib.suppress(OSError), os.scandir(todo.pop()) as entries:
            for entry in entries:
                seen += 1
                with contextlib.suppress(OSError):
                    info = entry.stat(follow_symlinks=False)
                    total += info.st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        todo.append(entry.path)
    return total, seen


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
