"""`ratchet mcp`: the loop as MCP tools over stdio, for an agent that drives (Claude Code, Codex).

The agent edits the repository's files itself, as in autoresearch; `evaluate` takes the working
tree's change against the study's base, runs the protected evaluation through the same path as
any proposal, decides keep or discard, and records it. Standard output is the protocol channel,
so nothing here prints.
"""

from __future__ import annotations

from pathlib import Path

from mcp.server.mcpserver import MCPServer

from ratchet.proposers import EXTERNAL
from ratchet.records import KEEP
from ratchet.reports.summary import fmt
from ratchet.study import Study, open_study


def build_server(study: Study) -> MCPServer:
    server = MCPServer("ratchet", instructions=(
        f"ratchet runs the protected evaluation of {study.config.name!r} and keeps a change "
        f"only if {study.config.metric.name} ({study.config.metric.goal}) really improves. "
        "Edit the editable files, then call evaluate."))

    @server.tool()
    def evaluate(description: str) -> str:
        """Evaluate the working tree's current change (against the study's base) and decide
        keep or discard. Give a short description of the change."""
        return evaluate_working_tree(study, description)

    @server.tool()
    def history(limit: int = 20) -> str:
        """The latest experiments: number, status, metric, delta, description."""
        return history_text(study, limit)

    @server.tool()
    def best() -> str:
        """The best result so far and its diff against the base."""
        return best_text(study)

    return server


def evaluate_working_tree(study: Study, description: str) -> str:
    patch = study.repo.working_tree_diff(study.record.base_commit, study.config.editable)
    if not patch.strip():
        return "nothing to evaluate: the working tree holds no change against the base"
    experiment = study.try_patch(patch, description or "agent change", onto_base=True)
    metric = study.config.metric.name
    lines = [f"experiment {experiment.number}: {experiment.status}",
             f"{metric}: {fmt(experiment.value)} (delta {fmt(experiment.delta, signed=True)})"]
    if experiment.reason:
        lines.append(f"reason: {experiment.reason}")
    current = study.best()
    if current is not None:
        lines.append(f"best so far: {fmt(current.value)} (experiment {current.number})")
    if experiment.status != KEEP:
        lines.append("not kept: revert your edits (e.g. `git checkout -- <files>`) or build on "
                     "them; the best code is on branch " + f"ratchet/{study.name}")
    return "\n".join(lines)


def history_text(study: Study, limit: int = 20) -> str:
    rows = [f"#{e.number} {e.status} {fmt(e.value)} {fmt(e.delta, signed=True)} {e.description}"
            for e in study.experiments()[-max(limit, 1):]]
    return "\n".join(rows) or "no experiments yet"


def best_text(study: Study) -> str:
    result = study.publish_best()
    e = result.experiment
    return (f"best: experiment {e.number}, {study.config.metric.name} {fmt(e.value)} "
            f"({e.description}); branch {result.branch}\n{result.diff or '(no change)'}")


def serve(repo: str | Path, study_name: str | None, storage: str | None) -> None:
    study = open_study(repo, study_name or "mcp", storage=storage, proposer=EXTERNAL)
    build_server(study).run("stdio")
