"""`ratchet init` and `ratchet space --discover`: finding knobs in a repository."""

from __future__ import annotations

import contextlib
from pathlib import Path

from ratchet.config import TASK_FILE, load_config
from ratchet.errors import ConfigError
from ratchet.execute.gitrepo import GitRepo
from ratchet.globs import matches_any
from ratchet.knobs.source import Knob, find_knobs, space_toml


def _python_files(repo: GitRepo) -> list[str]:
    listed = repo.git("ls-files", "--cached", "--others", "--exclude-standard", "-z")
    return sorted(p for p in listed.split("\0") if p.endswith(".py"))


def discover_knobs(repo: GitRepo) -> list[Knob]:
    """Knobs in the editable files of the task file, or in every Python file without one."""
    editable: tuple[str, ...] = ("**",)
    if (repo.root / TASK_FILE).is_file():
        with contextlib.suppress(ConfigError):
            editable = load_config(repo.root).editable
    knobs: list[Knob] = []
    for path in _python_files(repo):
        if matches_any(path, editable):
            knobs.extend(find_knobs((repo.root / path).read_text(errors="replace"), path))
    return knobs


def task_file_text(repo: GitRepo) -> str:
    knobs = discover_knobs(repo)
    files = sorted({k.path for k in knobs})
    main = "train.py" if (repo.root / "train.py").is_file() else (files[0] if files else "main.py")
    editable = files or [main]
    space = space_toml(knobs) if knobs else "[space]\n# no knobs found yet\n"
    return TEMPLATE.format(name=Path(repo.root).name, editable=_toml_list(editable),
                           command=f"python {main}", space=space)


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


TEMPLATE = """\
# ratchet task file. Reference: the "Config reference" section of ratchet's README.

[task]
name = "{name}"
# Files a proposer may change (globs; ** spans folders).
editable = {editable}
# Files no proposer may change: hashed before and after every run (ratchet.toml always is).
protected = []
# Protected files the command may not even read (answer keys, validation and holdout data):
# only the evaluate phase sees them.
# hidden = ["data/val/**"]
# What one experiment runs, from the repository root.
command = "{command}"
# An optional protected second phase; when set, the metric is read only from its output.
# evaluate = "python evaluate.py"
# A protected process that runs the edited model for evaluate, without the hidden files.
# predict = "python predict.py"
timeout = "10m"
# budget = "5m"        # the command's compute budget, in wall time (as RATCHET_TIME_BUDGET)
# memory_limit = "16G"  # for the whole process tree
# Variables whose names hold KEY, TOKEN, SECRET or PASSWORD are removed unless named here.
# env_allow = ["WANDB_API_KEY"]

[metric]
# Read from the last line of the output that looks like `score: 0.123`.
name = "score"
goal = "minimize"   # or "maximize"
# pattern = '^score:\\s*(?P<value>\\S+)'
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
# [agent]
# model = "anthropic:claude-sonnet-4-5"   # or "openai:gpt-5", or a local server's model
# base_url = "http://127.0.0.1:8000/v1"   # vLLM, Ollama, llama.cpp, a LiteLLM proxy
# program = "program.md"                  # your research program (becomes protected)
# context = ["README.md"]                 # read-only files the agent may read
# context_tokens = 16000                  # hard budget of the agent's opening prompt
# [agent.prices.my-local-model]           # dollars per million tokens
# input = 0.0
# output = 0.0

# Search space of the classical proposers, over knobs found in the editable files.
{space}"""
