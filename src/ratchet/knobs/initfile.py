"""`ratchet init` and `ratchet space --discover`: reading a repository into a task file.

Init follows the command (given with `--command`, else guessed), runs it unmodified in the
sandbox where allowed (`ratchet.knobs.observe`), and writes what it found, each guess marked
as one: what init could not observe is `# guessed from the code, not observed`.
"""

from __future__ import annotations

import contextlib
import json
import textwrap
from pathlib import Path, PurePosixPath

from ratchet.config import TASK_FILE, SandboxConfig, TaskConfig, load_config
from ratchet.errors import ConfigError
from ratchet.execute.gitrepo import GitRepo
from ratchet.knobs import catalog
from ratchet.knobs.command import read_command
from ratchet.knobs.method import HeldBack, method_space
from ratchet.knobs.observe import Observation, observe
from ratchet.knobs.reach import reached
from ratchet.knobs.source import Knob, space_toml
from ratchet.knobs.survey import Survey, survey

GUESSED = "guessed from the code, not observed"
MAX_UNTRACKED = 20_000  # untracked paths read for data folders (a venv is one entry)


def _listed_files(repo: GitRepo) -> list[str]:
    listed = repo.git("ls-files", "--cached", "--others", "--exclude-standard", "-z")
    return sorted(p for p in listed.split("\0") if p and (repo.root / p).is_file())


def _untracked(repo: GitRepo) -> list[str]:
    """Paths the commit lacks, ignored ones too (a folder wholly untracked is one entry)."""
    listed = repo.git("ls-files", "--others", "--directory", "--no-empty-directory", "-z")
    return [p for p in listed.split("\0") if p][:MAX_UNTRACKED]


def _python_files(repo: GitRepo, paths: list[str]) -> dict[str, str]:
    return {p: (repo.root / p).read_text(errors="replace") for p in paths if p.endswith(".py")}


def read_repository(repo: GitRepo, command: str | None = None,
                    observations: tuple[Observation, ...] = ()) -> Survey:
    paths = _listed_files(repo)
    return survey(_python_files(repo, paths), frozenset(p for p in paths if not p.endswith(".py")),
                  command, _untracked(repo), observations)


def observe_command(repo: GitRepo, command: str, timeout_s: float) -> tuple[Observation, ...]:
    """The command run twice, unmodified, in the sandbox; when its runs failed on data the
    commit lacks, twice more with that data mounted read-only, to see what it then prints."""
    first = observe(repo.root, command, timeout_s, runs=2)
    mount = [path for path in first.read_only() if mounts_by_itself(path)]
    if first.problem or first.completed or not mount:
        return (first,)
    return first, observe(repo.root, command, timeout_s, runs=2,
                          sandbox=SandboxConfig(read_only=tuple(mount)))


def discover_knobs(repo: GitRepo) -> tuple[list[Knob], list[HeldBack]]:
    """The method knobs and the held-back ones, as the task file defines knobs, or as `ratchet
    init` would without one: both through `method_space`, so both give the same answer."""
    if (repo.root / TASK_FILE).is_file():
        with contextlib.suppress(ConfigError):
            return _configured_knobs(repo, load_config(repo.root))
    found = read_repository(repo)
    return found.knobs, found.held_back


def _configured_knobs(repo: GitRepo, config: TaskConfig) -> tuple[list[Knob], list[HeldBack]]:
    paths = _listed_files(repo)
    sources = {p: (repo.root / p).read_text(errors="replace")
               for p in paths if catalog.holds_knobs(p, config)}
    python = _python_files(repo, paths)
    line = read_command(config.command, python)
    run_files = reached(line.script, python, line.config_files) if line.script else []
    if config.evaluate:
        script = read_command(config.evaluate, python).script
        run_files += reached(script, python) if script else []
    return method_space(catalog.knobs_in(sources, config).values(),
                        {p: python[p] for p in run_files if p in python}, line,
                        budgeted=bool(config.budget_s))


def space_text(knobs: list[Knob], held_back: list[HeldBack]) -> str:
    """A `[space]` table, then each held-back knob as a comment with its reason."""
    text = space_toml(knobs) if knobs else "[space]\n# no knobs found yet\n"
    for held in held_back:
        knob = held.knob
        text += f"# {knob.name}: left out ({knob.path}:{knob.line}): {held.reason}\n"
    return text


def task_file_text(repo: GitRepo, found: Survey | None = None) -> str:
    found = found or read_repository(repo)
    editable = found.editable or [found.main or "main.py"]
    metric = found.metric
    lines = {
        "name": _toml_string(Path(repo.root).name),
        "editable": _toml_list(editable),
        "protected": _toml_list(found.protected),
        "command": _command_lines(found),
        "evaluate": (textwrap.fill(_edited_warning(found), 98, initial_indent="# WARNING: ",
                                   subsequent_indent="# ") + "\n"
                     if found.edited_in_evaluate else "")
        + (f'evaluate = "python {found.evaluate}"' if found.evaluate else
           '# evaluate = "python evaluate.py"'),
        "metric_name": _toml_string(metric.name) if metric else '"score"',
        "metric_goal": metric.goal if metric else "minimize",
        "metric_note": _metric_note(found),
        "pattern": f"pattern = {_toml_literal(metric.pattern)}" if metric and metric.pattern
        else "# pattern = '^score:\\s*(?P<value>\\S+)'",
        "knobs": _knobs_section(found),
        "sandbox": _sandbox_section(found),
        "seeds": _seeds_section(found),
        "agent_header": "[agent]" if found.program else "# [agent]",
        "program": f'program = "{found.program}"' if found.program else
        '# program = "program.md"',
        "other_goal": "maximize" if not metric or metric.goal == "minimize" else "minimize",
        "space": space_text(found.knobs, found.held_back),
    }
    return TEMPLATE.format(**lines)


def summary(found: Survey) -> list[str]:
    """What init found, a line each, for the person who will review the file."""
    lines = [_command_summary(found), _metric_summary(found),
             f"protected (loads data or scores): {', '.join(found.protected) or 'nothing found'}",
             *_space_summary(found), *_read_only_summary(found), *_seeds_summary(found)]
    lines += [f"agent program: {found.program}"] if found.program else []
    lines += [f"WARNING: {_edited_warning(found)}"] if found.edited_in_evaluate else []
    for observation in found.observations:
        lines += observation.summary()
    return lines


def _command_summary(found: Survey) -> str:
    if not found.command:
        text = "command: (none: the evaluate phase runs the code)"
    elif found.command_given:
        text = f"command: {found.command}"
    else:
        text = f"command: {found.command} (guessed; say how your code runs with --command)"
    if found.evaluate:
        text += f"; evaluate: python {found.evaluate}"
    if found.run_files:
        text += f"; it runs {', '.join(found.run_files)}"
    if found.config_choices:
        text += (f"; {found.main} takes config files ({', '.join(found.config_choices[:4])}"
                 + (", ..." if len(found.config_choices) > 4 else "") + "): pass yours, e.g. "
                 f"--command \"python {found.main} {found.config_choices[0]}\"")
    return text


def _metric_summary(found: Survey) -> str:
    metric = found.metric
    if metric is None:
        return "metric: none found in what the command prints: set [metric].name"
    how = " mid-line (read with [metric].pattern)" if metric.pattern else ""
    seen = "seen in the observed output" if metric.observed else GUESSED
    return f"metric: {metric.name} ({metric.goal}), printed{how} by {metric.where}; {seen}"


def _space_summary(found: Survey) -> list[str]:
    owners = sorted({k.path for k in found.knobs})
    lines = [f"[space]: {len(found.knobs)} knobs ({', '.join(k.name for k in found.knobs)})"
             + (f", each rewritten in {', '.join(owners)}" if owners else "")]
    reasons: dict[str, list[str]] = {}
    for held in found.held_back:  # loop state by its reason, not by the line of each
        reasons.setdefault(held.reason.split(" (")[0], []).append(held.knob.name)
    lines += [f"left out of [space]: {', '.join(names)}: {reason}"
              for reason, names in reasons.items()]
    return lines


def _read_only_summary(found: Survey) -> list[str]:
    return [f"[sandbox] read_only: {r.path}: {r.why}" + ("" if r.observed else f" ({GUESSED})")
            + ("" if mounts_by_itself(r.path) else
               " (outside the repository or hidden: offered in a comment, not mounted)")
            for r in found.read_only]


def _seeds_summary(found: Survey) -> list[str]:
    if not found.seeds:
        return []
    lines = [f"hard-coded seeds: {'; '.join(map(str, found.seeds))}: [seeds] files = "
             f"{_toml_list(found.seed_files)} gives each run its own seed, in the run's copy "
             "only (your files stay as they are)"]
    if found.fixed_seed:
        lines.append("fixed seed: the observed runs printed identical "
                     f"{', '.join(found.fixed_seed)} although each had its own RATCHET_SEED")
    elif not found.observed:
        lines.append(f"fixed seed: whether repeated runs print the same is {GUESSED}")
    return lines


def _command_lines(found: Survey) -> str:
    if not found.command:
        return "# command = \"python train.py\"   # none needed: the evaluate phase runs the code"
    text = f"command = {_toml_string(found.command)}"
    if not found.command_given:
        text = f"# {GUESSED}: say how your code runs (ratchet init --command \"...\")\n" + text
    if found.config_choices:
        text = (f"# {found.main} takes config files ({', '.join(found.config_choices)}): pass the "
                "one to tune, e.g.\n"
                f"# command = \"python {found.main} {found.config_choices[0]}\"\n" + text)
    return text


def _metric_note(found: Survey) -> str:
    metric = found.metric
    if metric is None:
        return "  # no metric line found in what the command prints: set the name it prints"
    if metric.observed:
        return f"  # printed by {metric.where}, seen in the observed runs' output"
    return f"  # printed by {metric.where}; {GUESSED}"


def _knobs_section(found: Survey) -> str:
    if not found.knob_files:
        return ("# Files whose settings of any name are knobs (lowercase Python settings, YAML, "
                "JSON\n# and TOML keys); UPPER_CASE constants in editable Python files always "
                "are.\n# [knobs]\n# files = [\"config/*.yaml\"]")
    return ("# Files whose settings of any name are knobs; UPPER_CASE constants in editable "
            "Python\n# files always are. A knob is rewritten where the run takes its value: the "
            "last config\n# file on the command line that sets it, else the script; never a "
            f"protected file.\n[knobs]\nfiles = {_toml_list(found.knob_files)}")


def _sandbox_section(found: Survey) -> str:
    head = ("# Every phase runs in a bubblewrap sandbox: it writes only its work tree, cannot see "
            "this\n# repository, the store or the hidden files, and has no network.\n")
    if not found.read_only:
        return head + ("# [sandbox]\n# mode = \"bwrap\"                 # or \"none\": "
                       "unprotected, on purpose only (e.g. macOS)\n# network = false\n"
                       "# read_only = [\"data\", \"~/.cache/huggingface\"]   # datasets and "
                       "caches it may read")
    notes = "".join(f"# {r.path}: {r.why}" + ("" if r.observed else f" ({GUESSED})") + "\n"
                    for r in found.read_only)
    mounted = [r.path for r in found.read_only if mounts_by_itself(r.path)]
    elsewhere = [r.path for r in found.read_only if not mounts_by_itself(r.path)]
    offered = ("# Outside the repository, or hidden: what it holds becomes readable by every "
               "proposal's\n# code (and its output by the agents): add it only if that is "
               f"fine.\n# read_only = {_toml_list(mounted + elsewhere)}\n" if elsewhere else "")
    return (head + "[sandbox]\n# mode = \"bwrap\"                 # or \"none\": unprotected, on "
            "purpose only (e.g. macOS)\n# network = false\n# Data the runs read that the commit "
            "lacks (a study's runs see only committed files):\n" + notes + offered
            + f"read_only = {_toml_list(mounted)}")


def mounts_by_itself(path: str) -> bool:
    """Whether init may mount a folder on its own: one inside the repository and not hidden.
    Anything else (HOME, /etc, a dotfile) it only suggests, in a comment."""
    parts = PurePosixPath(path).parts
    return bool(parts) and not path.startswith(("/", "~")) and parts[0] != ".." \
        and not any(part.startswith(".") for part in parts)


def _seeds_section(found: Survey) -> str:
    if not found.seeds:
        return ("# Files whose hard-coded seeds (torch.manual_seed(1337), random.seed(0), "
                "SEED = 42) each run\n# gets as its own RATCHET_SEED, in the run's copy only.\n"
                "# [seeds]\n# files = [\"train.py\"]")
    sites = "".join(f"#   {site}\n" for site in found.seeds)
    if found.fixed_seed:
        evidence = (f"# The observed runs printed identical {', '.join(found.fixed_seed)} "
                    "although each had its own RATCHET_SEED:\n# the code fixes its seed.\n")
    elif found.observed:
        evidence = ""
    else:
        evidence = f"# Whether repeated runs print the same value is {GUESSED}.\n"
    return ("# Hard-coded seeds found in the code the command runs:\n" + sites + evidence
            + "# ratchet rewrites them to each run's RATCHET_SEED in that run's copy of the code "
            "only, never\n# in your files, so repeated runs measure the noise a seed hides.\n"
            f"[seeds]\nfiles = {_toml_list(found.seed_files)}")


def _edited_warning(found: Survey) -> str:
    return (f"{found.evaluate} imports {', '.join(found.edited_in_evaluate)}, which proposers "
            "edit: that code runs inside the protected phase and could print a metric line of "
            "its own; move the model's run into [task].predict (see the README)")


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(_toml_string(i) for i in items) + "]"


def _toml_string(text: str) -> str:
    """A TOML basic string: JSON's escapes (quotes, backslashes, control characters) are
    TOML's too."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_literal(text: str) -> str:
    """A regular expression as a TOML literal string (no escapes), else a basic one."""
    plain = "'" not in text and not any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)
    return f"'{text}'" if plain else _toml_string(text)


TEMPLATE = """\
# ratchet task file. Reference: the "Config reference" section of ratchet's README.

[task]
name = {name}
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
# Read from the last line of the output that looks like `name: 0.123`, or matches `pattern`.
name = {metric_name}{metric_note}
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
# deterministic = true # only if the value depends on nothing random, seeds included

[cost]
compute_usd_per_hour = 0.0   # what one evaluation slot costs

{sandbox}

{seeds}

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

# Search space of the classical proposers: method knobs only. Each left-out knob says why.
{space}"""
