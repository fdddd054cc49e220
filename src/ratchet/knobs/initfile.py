"""`ratchet init` and `ratchet space --discover`: reading a repository into a task file."""

from __future__ import annotations

import contextlib
import textwrap
from pathlib import Path

from ratchet.config import TASK_FILE, load_config
from ratchet.errors import ConfigError
from ratchet.execute.gitrepo import GitRepo
from ratchet.knobs import catalog
from ratchet.knobs.source import Knob, space_toml
from ratchet.knobs.survey import Survey, survey


def _listed_files(repo: GitRepo) -> list[str]:
    listed = repo.git("ls-files", "--cached", "--others", "--exclude-standard", "-z")
    return sorted(p for p in listed.split("\0") if p and (repo.root / p).is_file())


def read_repository(repo: GitRepo) -> Survey:
    paths = _listed_files(repo)
    python = {p: (repo.root / p).read_text(errors="replace") for p in paths if p.endswith(".py")}
    return survey(python, frozenset(p for p in paths if not p.endswith(".py")))


def discover_knobs(repo: GitRepo) -> list[Knob]:
    """Knobs as the task file defines them, or as `ratchet init` would without one."""
    if (repo.root / TASK_FILE).is_file():
        with contextlib.suppress(ConfigError):
            config = load_config(repo.root)
            sources = {p: (repo.root / p).read_text(errors="replace")
                       for p in _listed_files(repo) if catalog.holds_knobs(p, config)}
            return list(catalog.knobs_in(sources, config).values())
    return read_repository(repo).knobs


def task_file_text(repo: GitRepo, found: Survey | None = None) -> str:
    found = found or read_repository(repo)
    editable = found.editable or [found.main or "main.py"]
    metric = found.metric
    lines = {
        "name": Path(repo.root).name,
        "editable": _toml_list(editable),
        "protected": _toml_list(found.protected),
        "command": f'command = "{found.command}"' if found.command else
        "# command = \"python train.py\"   # none needed: the evaluate phase runs the code",
        "evaluate": (textwrap.fill(_edited_warning(found), 98, initial_indent="# WARNING: ",
                                   subsequent_indent="# ") + "\n"
                     if found.edited_in_evaluate else "")
        + (f'evaluate = "python {found.evaluate}"' if found.evaluate else
           '# evaluate = "python evaluate.py"'),
        "metric_name": metric.name if metric else "score",
        "metric_goal": metric.goal if metric else "minimize",
        "metric_note": f"  # printed by {metric.where}" if metric else
        "  # no metric line found in the code: set the name your script prints",
        "pattern": f"pattern = '{metric.pattern}'" if metric and metric.pattern else
        "# pattern = '^score:\\s*(?P<value>\\S+)'",
        "knobs": _knobs_section(found),
        "agent_header": "[agent]" if found.program else "# [agent]",
        "program": f'program = "{found.program}"' if found.program else
        '# program = "program.md"',
        "other_goal": "maximize" if not metric or metric.goal == "minimize" else "minimize",
        "space": _space(found),
    }
    return TEMPLATE.format(**lines)


def summary(found: Survey) -> list[str]:
    """What init found, a line each, for the person who will review the file."""
    metric = found.metric
    return [
        f"command: {found.command or '(none: the evaluate phase runs the code)'}"
        + (f"; evaluate: python {found.evaluate}" if found.evaluate else ""),
        f"metric: {metric.name} ({metric.goal}), printed by {metric.where}" if metric else
        "metric: none found in the code's print lines: set [metric].name",
        f"protected (loads data or scores): {', '.join(found.protected) or 'nothing found'}",
        f"[space]: {len(found.knobs)} knobs" + (
            f"; left out as budgets or evaluation sizes: "
            f"{', '.join(k.name for k in found.held_back)}" if found.held_back else ""),
    ] + ([f"agent program: {found.program}"] if found.program else []) \
        + ([f"WARNING: {_edited_warning(found)}"] if found.edited_in_evaluate else [])


def _edited_warning(found: Survey) -> str:
    return (f"{found.evaluate} imports {', '.join(found.edited_in_evaluate)}, which proposers "
            "edit: that code runs inside the protected phase and could print a metric line of "
            "its own; move the model's run into [task].predict (see the README)")


def _knobs_section(found: Survey) -> str:
    if not found.knob_files:
        return ("# Files whose settings of any name are knobs (lowercase Python settings, YAML, "
                "JSON\n# and TOML keys); UPPER_CASE constants in editable Python files always "
                "are.\n# [knobs]\n# files = [\"config/*.yaml\"]")
    return ("# Files whose settings of any name are knobs; UPPER_CASE constants in editable "
            f"Python\n# files always are.\n[knobs]\nfiles = {_toml_list(found.knob_files)}")


def _space(found: Survey) -> str:
    text = space_toml(found.knobs) if found.knobs else "[space]\n# no knobs found yet\n"
    for knob in found.held_back:
        text += (f"# {knob.name}: left out ({knob.path}:{knob.line}): a compute budget or "
                 "evaluation size, not the method\n")
    return text


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


TEMPLATE = """\
# ratchet task file. Reference: the "Config reference" section of ratchet's README.

[task]
name = "{name}"
# Files a proposer may change (globs; ** spans folders).
editable = {editable}
# Files no proposer may change: hashed before and after every run (ratchet.toml always is).
# ratchet init protects the files that load data or score results.
protected = {protected}
# Protected files the command may not even read (answer keys, validation and holdout data):
# only the evaluate phase sees them.
# hidden = ["data/val/**"]
# What one experiment runs, from the repository root.
{command}
# An optional protected second phase; when set, the metric is read only from its output.
{evaluate}
# A protected process that runs the edited model for evaluate, without the hidden files.
# predict = "python predict.py"
timeout = "10m"
# budget = "5m"        # the command's compute budget, in wall time (as RATCHET_TIME_BUDGET)
# memory_limit = "16G"  # for the whole process tree
# Variables whose names hold KEY, TOKEN, SECRET or PASSWORD are removed unless named here.
# env_allow = ["WANDB_API_KEY"]

[metric]
# Read from the last line of the output that looks like `name: 0.123`.
name = "{metric_name}"{metric_note}
goal = "{metric_goal}"   # or "{other_goal}"
{pattern}
# file = "result.json"        # or read it from a JSON file the evaluation writes
# secondary = ["memory_gb"]   # more numbers to record, same line format

# [holdout]
# command = "python evaluate.py --split holdout"   # never shown to a proposer

[decision]
rule = "noise-aware"   # or "greedy": keep any strict improvement
baseline_runs = 4      # repeats of the unmodified code, to measure noise
max_runs = 8           # runs of a candidate that looks better, before it is judged
alpha = 0.05           # false-accept rate of the test, per candidate

[cost]
compute_usd_per_hour = 0.0   # what one evaluation slot costs

# Every phase runs in a bubblewrap sandbox: it writes only its work tree, cannot see this
# repository, the store or the hidden files, and has no network.
# [sandbox]
# mode = "bwrap"                 # or "none": unprotected, on purpose only (e.g. macOS)
# network = false
# read_only = ["data", "~/.cache/huggingface"]   # datasets and caches it may read

# The LLM proposers (agent, hybrid, claude-code, codex, aider). Keys come from the
# environment (OPENAI_API_KEY, ANTHROPIC_API_KEY or api_key_env), never from this file.
{agent_header}
# model = "anthropic:claude-sonnet-4-5"   # or "openai:gpt-5", or a local server's model
# base_url = "http://127.0.0.1:8000/v1"   # vLLM, Ollama, llama.cpp, a LiteLLM proxy
{program}  # your research program (becomes protected)
# context = ["README.md"]                 # read-only files the agent may read
# context_tokens = 16000                  # hard budget of the agent's opening prompt
# [agent.prices.my-local-model]           # dollars per million tokens
# input = 0.0
# output = 0.0

{knobs}

# Search space of the classical proposers, over knobs found in the editable files.
{space}"""
