"""`ratchet serve`: a live, read-only dashboard over the store (SQLite or PostgreSQL).

A small HTTP server on localhost answers GET only: the page, plotly.js (from the plotly
package, so nothing is fetched from the internet), and JSON about studies and experiments.
Any other method is refused, and no handler calls a method of the store that writes.
"""

from __future__ import annotations

import json
import re
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import unquote, urlparse

from ratchet.records import KEEP, UNFINISHED, Experiment, StudyRecord
from ratchet.reports.summary import better_by, goal_of, overview
from ratchet.store.database import Store

STUDY = re.compile(r"^/api/studies/([^/]+)$")
EXPERIMENT = re.compile(r"^/api/studies/([^/]+)/experiments/(\d+)$")


@cache
def _plotly_js() -> bytes:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs().encode()


def _page() -> bytes:
    return (resources.files("ratchet.reports") / "web" / "dashboard.html").read_bytes()


class Dashboard:
    """The JSON the page reads, computed from the store at each request."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def studies(self) -> list[dict[str, Any]]:
        return [self._overview(r, self.store.experiments(r.id or 0))
                for r in self.store.studies()]

    def study(self, name: str) -> dict[str, Any] | None:
        record = self.store.get_study(name)
        if record is None:
            return None
        experiments = self.store.experiments(record.id or 0)
        summary = self._overview(record, experiments)
        minimize = summary["goal"] == "minimize"
        return {**summary, "experiments": [_row(e, minimize) for e in experiments],
                "curve": _curve(experiments)}

    def _overview(self, record: StudyRecord, experiments: list[Experiment]) -> dict[str, Any]:
        study_id = record.id or 0
        return overview(record, experiments, self.store.best(study_id),
                        self.store.drivers(study_id, live=True))

    def experiment(self, name: str, number: int) -> dict[str, Any] | None:
        record = self.store.get_study(name)
        found = record and self.store.experiment(record.id or 0, number)
        if not found:
            return None
        return {**_row(found, goal_of(record) == "minimize"), "diff": found.diff,
                "reason": found.reason,
                "decision": found.decision, "rationale": found.rationale,
                "commit": found.commit, "values": found.values}


def _row(e: Experiment, minimize: bool) -> dict[str, Any]:
    return {"number": e.number, "status": e.status, "value": e.value, "delta": e.delta,
            "better_by": better_by(e, minimize), "holdout": e.holdout, "runs": len(e.values),
            "scope": e.scope, "cost_usd": e.cost_usd, "llm_usd": e.llm_usd,
            "description": e.description, "wall_s": e.wall_s}


def _curve(experiments: list[Experiment]) -> dict[str, list[Any]]:
    """Every finished experiment's metric, and the best kept so far after it."""
    x, value, best_curve = [], [], []
    best = None
    for e in experiments:
        if e.status in UNFINISHED:
            continue
        if e.status == KEEP and e.value is not None:
            best = e.value
        x.append(e.number)
        value.append(e.value)
        best_curve.append(best)
    return {"x": x, "value": value, "best": best_curve}


def make_server(store: Store, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    dashboard = Dashboard(store)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = unquote(urlparse(self.path).path)
            if path in ("/", "/index.html"):
                self._send(200, _page(), "text/html; charset=utf-8")
            elif path == "/plotly.js":
                self._send(200, _plotly_js(), "application/javascript")
            elif path == "/api/studies":
                self._json(dashboard.studies())
            elif match := EXPERIMENT.match(path):
                self._json(dashboard.experiment(match.group(1), int(match.group(2))))
            elif match := STUDY.match(path):
                self._json(dashboard.study(match.group(1)))
            else:
                self._send(404, b"not found", "text/plain")

        def _refuse(self) -> None:
            self._send(405, b"read-only dashboard", "text/plain")

        do_POST = do_PUT = do_DELETE = do_PATCH = _refuse  # noqa: N815

        def _json(self, value: Any) -> None:
            if value is None:
                self._send(404, b'{"error": "not found"}', "application/json")
            else:
                self._send(200, json.dumps(value).encode(), "application/json")

        def _send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(body)))
            self.send_header("cache-control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return ThreadingHTTPServer((host, port), Handler)
