"""What people see: experiment rows, the plain line-per-experiment log, and the live view."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ratchet.decide import gain
from ratchet.engine import Progress
from ratchet.records import (
    CRASH,
    DISCARD,
    KEEP,
    PENDING,
    RUNNING,
    TIMEOUT,
    VOID,
    WAITING,
    Experiment,
)
from ratchet.reports.safe_text import printable
from ratchet.reports.summary import better_by, fmt
from ratchet.units import format_duration

STATUS_STYLE = {KEEP: "bold green", DISCARD: "yellow", CRASH: "red", TIMEOUT: "red",
                VOID: "magenta", RUNNING: "cyan", PENDING: "dim", WAITING: "cyan"}


def experiment_cells(e: Experiment, minimize: bool = True) -> list[str]:
    """number, status, metric, better by, holdout, duration, scope, description (with the
    reason if it failed), ready to print: the description's control characters escaped. On a
    rich table, pass them as `Text`, never as markup."""
    description = e.description
    if e.reason and e.status != KEEP and e.status != DISCARD:
        description = f"{description} [{e.reason}]"
    runs = f" ({len(e.values)} runs)" if len(e.values) > 1 else ""
    return [str(e.number), e.status, fmt(e.value) + runs, fmt(better_by(e, minimize), signed=True),
            fmt(e.holdout), format_duration(e.wall_s), (e.scope or "-").upper(),
            printable(description)]


LOG_HEADERS = ["#", "status", "metric", "better by", "holdout", "time", "space", "description"]


def plain_line(e: Experiment, progress: Progress | None = None) -> str:
    minimize = progress.minimize if progress is not None else True
    number, status, value, better, _, duration, scope, description = \
        experiment_cells(e, minimize)
    line = f"#{number:>4} {status:<8} {value:>14} {better:>12} {duration:>8} {scope:<7}"
    if progress is not None and progress.best is not None:
        line += f"  best={fmt(progress.best.value)} ${progress.spent_usd:.4f}"
    return f"{line}  {description}"


def progress_line(progress: Progress) -> str:
    budget = progress.budget
    of = f" of {budget.max_experiments}" if budget.max_experiments else ""
    parts = [f"study {printable(progress.study)}", f"experiment {progress.experiments}{of}"]
    if progress.best is not None:
        best = f"best {fmt(progress.best.value)} (#{progress.best.number}"
        if progress.baseline is not None:
            beats = gain(progress.best.value, progress.baseline,  # type: ignore[arg-type]
                         progress.minimize)
            best += f", better than the baseline by {fmt(beats)}"
        parts.append(best + ")")
    if progress.last is not None:
        parts.append(f"last #{progress.last.number} {progress.last.status} "
                     f"{fmt(progress.last.value)}")
    money = f"${progress.spent_usd:.4f} spent"
    if budget.max_usd is not None:
        money += f" of ${budget.max_usd:g}"
    parts.append(money)
    left = progress.time_left_s
    parts.append(f"{format_duration(left)} left" if left is not None
                 else f"{format_duration(progress.elapsed_s)} elapsed")
    if progress.running:
        parts.append(f"{progress.running} running")
    if progress.drivers > 1:
        parts.append(f"{progress.drivers} drivers on this study")
    return " · ".join(parts)


class PlainReporter:
    """One line per finished experiment: for logs, CI and anything that is not a terminal."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout
        self.stop_requested = False

    def update(self, progress: Progress) -> None:
        pass

    def finished_experiment(self, experiment: Experiment, progress: Progress) -> None:
        self._print(plain_line(experiment, progress))

    def message(self, text: str) -> None:
        self._print(f"ratchet: {printable(text)}")

    def _print(self, line: str) -> None:
        if self.stop_requested:
            return
        try:
            print(line, file=self.stream, flush=True)
        except BrokenPipeError:  # piped into `head`, which has had enough
            self.stop_requested = True
            _silence(self.stream)


def _silence(stream: TextIO) -> None:
    """Point a closed pipe's descriptor at /dev/null, so nothing more fails on it (not even
    the flush at exit)."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)


class LiveReporter:
    """A live panel at the bottom of the terminal, with finished experiments scrolling above."""

    def __init__(self, console: Console | None = None, recent: int = 8) -> None:
        self.console = console or Console()
        self.recent: list[Experiment] = []
        self.keep = recent
        self.live = Live(console=self.console, refresh_per_second=4, transient=False)
        self.progress: Progress | None = None
        self.stop_requested = False

    def __enter__(self) -> LiveReporter:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(None, None, None)

    def update(self, progress: Progress) -> None:
        self.progress = progress
        self.live.update(self._render())

    def finished_experiment(self, experiment: Experiment, progress: Progress) -> None:
        self.recent = [*self.recent, experiment][-self.keep:]
        self.update(progress)

    def message(self, text: str) -> None:
        self.live.console.print(Text.assemble(("ratchet:", "bold"), " ", printable(text)))

    def _render(self) -> Group:
        table = Table(*LOG_HEADERS, expand=True, show_edge=False)
        minimize = self.progress.minimize if self.progress else True
        for e in self.recent:
            cells = experiment_cells(e, minimize)
            table.add_row(Text(cells[0]), Text(cells[1], style=STATUS_STYLE.get(e.status, "")),
                          *map(Text, cells[2:]))
        header = Text(progress_line(self.progress) if self.progress else "starting…",
                      style="bold")
        return Group(header, table)
