"""What `ratchet init` learns by reading a repository's Python files, following its command.

Pure functions over `{path: text}`. The command (given, or guessed as `python train.py`) says
which script runs and which config files it passes; the metric, the knobs, the seeds and the
data are read from the files that run (the script, its config files, the repository modules it
imports or execs), never from a `bench.py` beside it. Files that load data or score results are
protected. A knob is owned by the file the run takes its value from, and only method knobs go
into `[space]` (`ratchet.knobs.method`). Where an observed run is given
(`ratchet.knobs.observe`), what it printed and could not open replaces the guesses.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from ratchet.globs import matches_any
from ratchet.knobs import printnames
from ratchet.knobs.catalog import owners, sources_of_values
from ratchet.knobs.command import CommandLine, read_command
from ratchet.knobs.datadirs import ReadOnly, read_only
from ratchet.knobs.method import HeldBack, method_space
from ratchet.knobs.reach import reached
from ratchet.knobs.seeds import SeedSite, find_seeds
from ratchet.knobs.source import Knob, find_knobs

if TYPE_CHECKING:
    from ratchet.knobs.observe import Observation

# Files by their name: these load data or score results.
_SCORING_FILE = re.compile(r"^(evaluate|evaluation|eval|prepare|data|dataset|datasets|metric|"
                           r"metrics|score|scoring|scorer|benchmark|grade|grader)(_\w+)?$")
# Names imported from a module that make it part of the scoring: `from prepare import
# evaluate_bpb` protects prepare.py.
_SCORING_NAME = re.compile(r"eval|score|metric|grade", re.IGNORECASE)
_MAIN_SCRIPTS = ("train.py", "main.py", "run.py", "model.py")
_CONFIG_DIRS = ("config", "configs", "conf")
# A config file that sets one of these configures an evaluation, not a training run.
_EVAL_SWITCHES = ("eval_only", "evaluate_only", "do_eval_only")



@dataclass(frozen=True)
class Metric:
    name: str
    goal: str
    where: str  # the file that prints it
    pattern: str | None = None  # for a metric printed mid-line, as nanoGPT's `val loss 2.1`
    observed: bool = False  # seen in an observed run's output, not only in the code


@dataclass
class Survey:
    main: str | None
    editable: list[str]
    protected: list[str]
    evaluate: str | None
    command: str | None
    metric: Metric | None
    knob_files: list[str] = field(default_factory=list)
    edited_in_evaluate: list[str] = field(default_factory=list)
    knobs: list[Knob] = field(default_factory=list)
    held_back: list[HeldBack] = field(default_factory=list)
    program: str | None = None
    command_line: CommandLine = field(default_factory=CommandLine)
    command_given: bool = False  # the user said how the code runs (`--command`)
    run_files: list[str] = field(default_factory=list)
    config_choices: list[str] = field(default_factory=list)  # configs the script could take
    read_only: list[ReadOnly] = field(default_factory=list)
    seeds: list[SeedSite] = field(default_factory=list)  # in files ratchet may rewrite
    fixed_seed: list[str] = field(default_factory=list)  # names printed alike across seeds
    observations: tuple[Observation, ...] = ()  # runs of the command, the last with data

    @property
    def observation(self) -> Observation | None:
        return self.observations[-1] if self.observations else None

    @property
    def observed(self) -> bool:
        """An observed run completed: what it printed is a fact, not a guess."""
        return self.observation is not None and bool(self.observation.completed)

    @property
    def seed_files(self) -> list[str]:
        return sorted({s.path for s in self.seeds})


def survey(files: Mapping[str, str], others: frozenset[str] = frozenset(),
           command: str | None = None, untracked: Collection[str] = (),
           observations: Sequence[Observation] = (), budgeted: bool = False) -> Survey:
    """`files`: the repository's Python files by path; `others`: its other file paths;
    `command`: how the code runs, as the user said (else guessed); `untracked`: paths in the
    working tree that the commit lacks (data a sandboxed run will not have); `observations`:
    runs of the command, the last with what the earlier ones could not open mounted."""
    scoring = _scoring_files(files)
    line = read_command(command, files)
    main = line.script if line.script in files else _main_script(files, scoring)
    editable = sorted(p for p in files if p not in scoring and not _is_test(p))
    evaluate = next((p for p in sorted(scoring) if _prints_metric(files[p])
                     and PurePosixPath(p).stem.startswith("eval")
                     and PurePosixPath(p).parts[0] not in _CONFIG_DIRS), None)
    edited_in_evaluate = _edited_in_evaluate(files, evaluate, editable)
    if command is None:
        line = read_command(_command(files, main, edited_in_evaluate), files)
    run_files = _run_files(files, main, evaluate, line)
    knob_files = _knob_files(files, main, others, line)
    every = _definitions(files, editable, knob_files)
    owned = owners(every, line, sorted(scoring))
    space, held = method_space(sorted(owned.values(), key=lambda k: (k.path, k.line)),
                               {p: files[p] for p in run_files}, line, budgeted)
    held += _set_by_protected(every, line, scoring, owned)
    metric = _metric(files, reached(evaluate, files) if evaluate else run_files,
                     evaluate or main, None if evaluate else _last(observations))
    return Survey(
        main=main, editable=_editable(editable, knob_files), protected=sorted(scoring),
        evaluate=evaluate, command=line.text or None, metric=metric,
        knob_files=knob_files, edited_in_evaluate=edited_in_evaluate, knobs=space,
        held_back=held, program="program.md" if "program.md" in others else None,
        command_line=line, command_given=command is not None, run_files=run_files,
        config_choices=_config_choices(files, main, scoring, line),
        read_only=read_only(files, run_files, untracked, observations),
        seeds=[s for p in run_files if p not in scoring for s in find_seeds(files[p], p)],
        fixed_seed=_fixed_seed(_last(observations), metric),
        observations=tuple(observations))


def _last(observations: Sequence[Observation]) -> Observation | None:
    return observations[-1] if observations else None


def _run_files(files: Mapping[str, str], main: str | None, evaluate: str | None,
               line: CommandLine) -> list[str]:
    """The files one experiment runs: the command's script and what it reaches, then the
    evaluate script's."""
    found = reached(main, files, line.config_files) if main else []
    if evaluate:
        found += [p for p in reached(evaluate, files) if p not in found]
    return found


def _set_by_protected(every: list[Knob], line: CommandLine, scoring: set[str],
                      owned: Mapping[str, Knob]) -> list[HeldBack]:
    """Names the run takes from a protected config file the command passes."""
    values = sources_of_values(every, line, tuple(sorted(scoring)))
    return [HeldBack(k, f"its value comes from {k.path}, which is protected")
            for name, k in values.items() if name not in owned]


def _definitions(files: Mapping[str, str], editable: list[str],
                 knob_files: list[str]) -> list[Knob]:
    """Every knob definition of the editable and knob files (protected ones among them: the
    owners rule, not this list, keeps a knob out of a protected file)."""
    paths = sorted(set(editable) | {p for p in files if matches_any(p, knob_files)})
    return [k for p in paths for k in find_knobs(files[p], p, any_case=matches_any(p, knob_files))]


def _editable(editable: list[str], knob_files: list[str]) -> list[str]:
    """The task file names knob files by glob, and [knobs] files must be editable."""
    return sorted(set(knob_files) | {p for p in editable if not matches_any(p, knob_files)})


def _command(files: Mapping[str, str], main: str | None,
             edited_in_evaluate: list[str]) -> str | None:
    """The training command; none when the evaluate script imports the code and runs it."""
    if main is None:
        return None
    if main in edited_in_evaluate and not _prints_metric(files[main]):
        return None
    return f"python {main}"


def _edited_in_evaluate(files: Mapping[str, str], evaluate: str | None,
                        editable: list[str]) -> list[str]:
    """The editable modules the evaluate script imports: proposed code that would run inside
    the protected phase, where it could print a metric line of its own."""
    if evaluate is None:
        return []
    modules = {PurePosixPath(p).with_suffix("").as_posix().replace("/", "."): p for p in editable}
    return sorted({modules[m] for m, _ in _imports(files[evaluate]) if m in modules})


def _knob_files(files: Mapping[str, str], main: str | None, others: frozenset[str],
                line: CommandLine) -> list[str]:
    """Files whose lowercase settings are knobs: a main script configured by module-level
    assignments (nanoGPT's train.py), its config/*.py files and the config files its command
    passes; config folders' data files."""
    globs = []
    if main and len(find_knobs(files[main], main, any_case=True)) > \
            2 * len(find_knobs(files[main], main)) + 2:
        globs.append(main)
        globs += sorted({f"{PurePosixPath(p).parent}/*.py" for p in files
                         if PurePosixPath(p).parts[0] in _CONFIG_DIRS})
    globs += [p for p in line.config_files if p in files and not matches_any(p, globs)]
    globs += sorted({f"{PurePosixPath(p).parent}/*{PurePosixPath(p).suffix}" for p in others
                     if PurePosixPath(p).parts[0] in _CONFIG_DIRS
                     and p.endswith((".yaml", ".yml", ".json", ".toml"))})
    return sorted(set(globs))


def _config_choices(files: Mapping[str, str], main: str | None, scoring: set[str],
                    line: CommandLine) -> list[str]:
    """Config files a configurator-style script could be given, when the command gives none."""
    if main is None or line.config_files or "sys.argv" not in "".join(
            files[p] for p in reached(main, files)):
        return []
    found = [p for p in files if PurePosixPath(p).parts[0] in _CONFIG_DIRS
             and p not in scoring and len(PurePosixPath(p).parts) == 2]
    return sorted(found, key=lambda p: (not PurePosixPath(p).stem.startswith("train"), p))


def _scoring_files(files: Mapping[str, str]) -> set[str]:
    """Files named for data or scoring, config files that configure an evaluation, and local
    modules scripts import scoring names from."""
    scoring = {p for p in files if _SCORING_FILE.match(PurePosixPath(p).stem)}
    scoring |= {p for p in files if PurePosixPath(p).parts[0] in _CONFIG_DIRS
                and _configures_evaluation(files[p])}
    modules = {PurePosixPath(p).with_suffix("").as_posix().replace("/", "."): p for p in files}
    for text in files.values():
        for module, names in _imports(text):
            path = modules.get(module)
            if path and any(_SCORING_NAME.search(n) for n in names):
                scoring.add(path)
    return scoring


def _configures_evaluation(text: str) -> bool:
    """nanoGPT's config/eval_gpt2.py sets `eval_only = True`."""
    return any(k.name in _EVAL_SWITCHES and k.value is True
               for k in find_knobs(text, any_case=True))


def _imports(text: str) -> list[tuple[str, list[str]]]:
    """The absolute imports of a module: (module, names imported from it; none for `import m`)."""
    tree = _parse(text)
    if tree is None:
        return []
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names]
    return found


def _main_script(files: Mapping[str, str], scoring: set[str]) -> str | None:
    candidates = [p for p in files if p not in scoring and not _is_test(p)]
    for name in _MAIN_SCRIPTS:
        if name in candidates:
            return name
    printing = sorted(p for p in candidates if _prints_metric(files[p]))
    return printing[0] if printing else None


def _is_test(path: str) -> bool:
    parts = PurePosixPath(path).parts
    return parts[0] in ("tests", "test") or parts[-1].startswith("test_") or \
        parts[-1] == "conftest.py" or parts[-1] == "setup.py"


def _prints_metric(text: str) -> bool:
    return any(printnames.goal(n) for n in printnames.PRINTED_AT_START.findall(text))


def _metric(files: Mapping[str, str], run_files: list[str], first: str | None,
            observation: Observation | None) -> Metric | None:
    """The metric the files that run print (the scoring or main script first), held-out names
    first; among those an observed run really printed, where one was observed. With an
    evaluate phase, the metric is its output: read from the evaluate script and what it runs
    (the observed command does not run it)."""
    ordered = ([first] if first in files else []) + [p for p in run_files if p != first]
    candidates = [c for path in ordered for c in printnames.printed_in(path, files[path])]
    if observation is not None and observation.lines:
        seen = [c for c in candidates if printnames.seen_in(c, observation.lines)]
        seen = seen or printnames.from_output(observation.printed(), observation.lines,
                                              "the observed output")
        chosen = printnames.choose(seen)
        if chosen is not None:
            return Metric(chosen.name, chosen.goal, chosen.where, chosen.pattern, observed=True)
    chosen = printnames.choose(candidates)
    return Metric(chosen.name, chosen.goal, chosen.where, chosen.pattern) if chosen else None


def _fixed_seed(observation: Observation | None, metric: Metric | None) -> list[str]:
    """The metric, as printed, when completed runs printed it alike although each had its
    own RATCHET_SEED (settings echoed alike say nothing of a seed)."""
    if observation is None or metric is None or not metric.observed:
        return []
    return [n for n in observation.identical() if n.replace(" ", "_") == metric.name]


def _parse(text: str) -> ast.Module | None:
    try:
        return ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # ValueError: NUL bytes
        return None
