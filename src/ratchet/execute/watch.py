"""Watching a running command's intermediate values (`ratchet.steps` lines in its log) and
stopping its whole process tree when the monitor says the run is hopeless."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol

from ratchet.execute.process import kill_tree
from ratchet.steps import Curve, parse_line

POLL_S = 0.1
MAX_LINE = 4096  # longer lines are no step lines; they are skipped, not buffered


class StepMonitor(Protocol):
    def report(self, step: int, value: float) -> str | None:
        """Take one more value of the running curve; a reason to stop the run, or None."""


class StepWatcher:
    """Reads the log from `offset` while the command runs; stops it on the monitor's word."""

    def __init__(self, log: Path, offset: int, metric: str, minimize: bool,
                 monitor: StepMonitor) -> None:
        self.log, self.offset, self.metric, self.monitor = log, offset, metric, monitor
        self.curve = Curve(minimize)
        self.stopped: str | None = None  # why the run was stopped
        self.pgid: int | None = None
        self._pending = b""
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="steps")

    def start(self, pgid: int) -> None:
        self.pgid = pgid
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()

    def _watch(self) -> None:
        with open(self.log, "rb") as f:
            f.seek(self.offset)
            while not self._done.wait(POLL_S):
                if self._read(f):
                    return
            self._read(f)  # what came before the end, without stopping anything now

    def _read(self, f: object) -> bool:
        """Take the new complete lines; whether the run was stopped."""
        chunk = f.read()  # type: ignore[attr-defined]
        if not chunk:
            return False
        lines = (self._pending + chunk).split(b"\n")
        self._pending = lines.pop()
        if len(self._pending) > MAX_LINE:
            self._pending = b""
        for raw in lines:
            found = parse_line(raw[:MAX_LINE].decode("utf-8", "replace"), self.metric)
            if found is None or not self.curve.add(*found):
                continue
            step = found[0]
            reason = self.monitor.report(step, self.curve.values[step])
            if reason is not None and not self._done.is_set() and self.pgid is not None:
                self.stopped = reason
                kill_tree(self.pgid)
                return True
        return False
