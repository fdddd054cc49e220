"""Evaluations on a Ray cluster: each run a Ray task with the task's resources.

The code state travels as data (the candidate commit as a tar archive), so no filesystem is
shared: the worker unpacks it into a scratch directory and evaluates it there, in the sandbox,
exactly as a local slot would. The log and the result come back to the driver, which alone
writes the store. A worker or node lost mid-run is Ray's to retry elsewhere; if that too is
lost, the run comes back `lost` and the engine queues it again: never a crash of the code.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import stat
import tarfile
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ratchet.config import TaskConfig
from ratchet.errors import UsageError
from ratchet.execute.evaluate import Evaluator, Overlay, RunResult
from ratchet.execute.executor import LOST, Executor, Job
from ratchet.execute.gitrepo import GitRepo, remove_tree
from ratchet.execute.process import ProcessRunner
from ratchet.execute.sandbox import launcher_for
from ratchet.execute.watch import StepMonitor
from ratchet.execute.workspace import run_failure

SYSTEM_RETRIES = 3  # times Ray re-runs a task whose worker or node died
LOOPBACK = ("127.0.0.1", "localhost")
CONNECT_TIMEOUT_S = 5.0
WARM_UP_TIMEOUT_S = 120.0
WARM_UP_HOLD_S = 1.0
_CHECKED: set[str] = set()  # sandbox modes checked in this worker process


def evaluate_archive(archive: bytes, config: TaskConfig, env: dict[str, str],
                     horizon: float = 1.0, monitor: StepMonitor | None = None,
                     predict_budget_s: float | None = None, seed: int | None = None,
                     overlay: Overlay | None = None) -> tuple[RunResult, bytes]:
    """On the worker: unpack the code state, evaluate it in the sandbox (`monitor` watching
    its intermediate values there, and stopping it there), return the result and the log."""
    # Not a TemporaryDirectory: its clean-up recurses, and the run may leave a tree nested
    # a thousand deep, or folders no one may enter.
    scratch = Path(tempfile.mkdtemp(prefix="ratchet-ray-"))
    try:
        tree, log = scratch / "tree", scratch / "run.log"
        tree.mkdir()
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tree, filter="data")
        _check_sandbox(config.sandbox.mode)
        launcher = launcher_for(config.sandbox.mode)
        try:
            result = Evaluator(config).evaluate(tree, log, ProcessRunner(launcher), env,
                                                horizon=horizon, monitor=monitor,
                                                predict_budget_s=predict_budget_s,
                                                seed=seed, overlay=overlay)
        except UsageError:
            raise  # this worker cannot run evaluations: the driver's problem, not the code's
        except Exception as exc:  # noqa: BLE001 - what the candidate caused is its outcome
            status, reason = run_failure(exc)
            result = RunResult(status=status, reason=reason)
        return result, _read_log(log)
    finally:
        with contextlib.suppress(OSError):
            remove_tree(scratch)


def _read_log(log: Path) -> bytes:
    """The run's log (a link or FIFO the run put in its place reads as nothing)."""
    try:
        fd = os.open(log, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return b""
    with os.fdopen(fd, "rb") as f:
        return f.read() if stat.S_ISREG(os.fstat(fd).st_mode) else b""


def warm_up(sandbox_mode: str) -> None:
    """On a worker: check the sandbox once, and stay long enough that the warm-up tasks of one
    driver overlap (each then starts a worker of its own)."""
    _check_sandbox(sandbox_mode)
    time.sleep(WARM_UP_HOLD_S)


def _check_sandbox(mode: str) -> None:
    if mode not in _CHECKED:  # once per worker process
        launcher_for(mode).check()
        _CHECKED.add(mode)


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, repo: GitRepo, config: TaskConfig, address: str, capacity: int) -> None:
        self.ray = _import_ray()
        self.repo, self.config, self.capacity = repo, config, capacity
        self._connect(address)
        resources = config.resources
        self.remote = self.ray.remote(evaluate_archive).options(
            num_cpus=resources.cpus, num_gpus=resources.gpus,
            memory=config.memory_limit_bytes, max_retries=SYSTEM_RETRIES,
            retry_exceptions=False)
        self._warm_up(capacity)
        self.pool = ThreadPoolExecutor(max_workers=capacity, thread_name_prefix="ray")
        self.lock = threading.Lock()
        self.running: set[Any] = set()  # ObjectRefs of the runs in flight
        self.cancelled = False

    def _connect(self, address: str) -> None:
        self.connected_here = not self.ray.is_initialized()
        if not self.connected_here:
            return
        host, _, port = address.removeprefix("ray://").rpartition(":")
        if host and port.isdigit():
            _check_reachable(address, host, int(port))
        # On loopback, the driver must say so: Ray otherwise picks an outside interface.
        extra = {"_node_ip_address": "127.0.0.1"} if host in LOOPBACK else {}
        try:
            self.ray.init(address=address, logging_level="ERROR", log_to_driver=False, **extra)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise UsageError(f"--address {address}: cannot connect to a Ray cluster "
                             f"({str(exc).splitlines()[0]})") from None

    def _warm_up(self, workers: int) -> None:
        """Start the workers and check the sandbox on them before the first run, so no run's
        time includes a worker's start-up (tasks that overlap get workers of their own)."""
        warm = self.ray.remote(warm_up).options(num_cpus=self.config.resources.cpus,
                                                num_gpus=self.config.resources.gpus)
        try:
            self.ray.get([warm.remote(self.config.sandbox.mode) for _ in range(workers)],
                         timeout=WARM_UP_TIMEOUT_S)
        except self.ray.exceptions.GetTimeoutError:
            pass  # a cluster smaller than --parallel: the rest start with their first run
        except self.ray.exceptions.RayTaskError as exc:
            raise UsageError(f"the Ray workers cannot run evaluations: "
                             f"{str(exc.cause).splitlines()[0]}") from None

    def submit(self, job: Job) -> Future[RunResult]:
        return self.pool.submit(self._run, job)

    def _run(self, job: Job) -> RunResult:
        commit = job.code()
        archive = self.repo.archive(commit)
        overlay = job.overlay(commit) if job.overlay is not None else None
        with self.lock:
            if self.cancelled:
                return RunResult(status="interrupted", reason="cancelled before it started")
            ref = self.remote.remote(archive, self.config, dict(job.env), job.horizon,
                                     job.monitor, job.predict_budget_s, job.seed, overlay)
            self.running.add(ref)
        try:
            result, log = self.ray.get(ref)
        except self.ray.exceptions.TaskCancelledError:
            return RunResult(status="interrupted", reason="cancelled")
        except self.ray.exceptions.RayTaskError as exc:
            # ratchet's own code failed on the worker: the engine records it as the run's
            # crash, with the worker's exception as the reason
            cause = getattr(exc, "cause", None)
            if isinstance(cause, Exception):
                raise cause from None
            raise
        except self.ray.exceptions.RayError as exc:  # worker, node or object lost
            return RunResult(status=LOST, reason=f"lost on the cluster ({type(exc).__name__})")
        finally:
            with self.lock:
                self.running.discard(ref)
        job.log.parent.mkdir(parents=True, exist_ok=True)
        job.log.write_bytes(log)
        return result

    def cancel(self) -> None:
        with self.lock:
            self.cancelled = True
            refs = list(self.running)
        for ref in refs:
            self.ray.cancel(ref, force=True)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        if self.connected_here:
            self.ray.shutdown()


def _check_reachable(address: str, host: str, port: int) -> None:
    """A quick refusal for an address where nothing listens (Ray itself retries for a minute)."""
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise UsageError(f"--address {address}: cannot connect to a Ray cluster "
                         f"({exc.strerror or exc})") from None


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray needs Ray: pip install 'ratchet-loop[ray]'") from None
    return ray
