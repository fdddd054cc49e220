"""What `ratchet init` learns by reading a repository's Python files.

Pure functions over `{path: text}`: which script trains, which files load data or score results
(those are protected, never editable), which metric the code prints and in which direction it
improves, and which knobs are safe to hand an optimizer. A name that looks like a compute
budget or an evaluation size is a knob an optimizer would "improve" by buying compute or
shrinking the test, so it stays out of `[space]`, with a comment saying why.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from ratchet.globs import matches_any
from ratchet.knobs.source import Knob, find_knobs

# Files by their name: these load data or score results.
_SCORING_FILE = re.compile(r"^(evaluate|evaluation|eval|prepare|data|dataset|datasets|metric|"
                           r"metrics|score|scoring|scorer|benchmark|grade|grader)(_\w+)?$")
# Names imported from a module that make it part of the scoring: `from prepare import
# evaluate_bpb` protects prepare.py.
_SCORING_NAME = re.compile(r"eval|score|metric|grade", re.IGNORECASE)
_MAIN_SCRIPTS = ("train.py", "main.py", "run.py", "model.py")
# Knob names that set the compute or the test, not the method.
_HELD_BACK = re.compile(r"BUDGET|EVAL|TOKENS|PEAK_FLOPS|FLOPS|TIME_LIMIT|MAX_TIME|"
                        r"NUM_VAL|VAL_SIZE|TEST_SIZE|VAL_STEPS|TIMEOUT", re.IGNORECASE)
# A metric line a script prints: print(f"val_bpb: {x}") or print("accuracy", acc).
_PRINTED_METRIC = re.compile(r"""print\(\s*f?["']\s*([A-Za-z_][\w./-]*)\s*[:=]?\s*["'{ ]""")
_MID_LINE_METRIC = re.compile(r"""(?<![\w{])([A-Za-z_]\w*(?: [A-Za-z_]\w*)?) ?[:=]? \{""")
_LOWER_IS_BETTER = re.compile(r"loss|bpb|bpc|perplexity|ppl|error|err|mse|rmse|mae|nll|"
                              r"time|latency|seconds|regret|cost", re.IGNORECASE)
_HIGHER_IS_BETTER = re.compile(r"acc|accuracy|f1|auc|score|reward|precision|recall|bleu|"
                               r"rouge|map|ndcg|throughput|r2|win", re.IGNORECASE)
_HELD_OUT_FIRST = re.compile(r"val|valid|test|eval|holdout", re.IGNORECASE)


@dataclass(frozen=True)
class Metric:
    name: str
    goal: str
    where: str  # the file that prints it
    pattern: str | None = None  # for a metric printed mid-line, as nanoGPT's `val loss 2.1`


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
    held_back: list[Knob] = field(default_factory=list)
    program: str | None = None


def survey(files: Mapping[str, str], others: frozenset[str] = frozenset()) -> Survey:
    """`files`: the repository's Python files by path; `others`: its other file paths."""
    scoring = _scoring_files(files)
    main = _main_script(files, scoring)
    editable = sorted(p for p in files if p not in scoring and not _is_test(p))
    evaluate = next((p for p in sorted(scoring) if _prints_metric(files[p])
                     and PurePosixPath(p).stem.startswith("eval")), None)
    knob_files = _knob_files(files, main, others)
    knobs = [k for path in sorted(set(editable) | {p for p in files if matches_any(p, knob_files)})
             for k in find_knobs(files[path], path, any_case=matches_any(path, knob_files))]
    owned = {}
    for knob in knobs:  # as ratchet reads them: the first file in path order owns a name
        owned.setdefault(knob.name, knob)
    edited_in_evaluate = _edited_in_evaluate(files, evaluate, editable)
    # The task file names knob files by glob, and [knobs] files must be editable.
    editable = sorted(set(knob_files) | {p for p in editable if not matches_any(p, knob_files)})
    return Survey(
        main=main, editable=editable, protected=sorted(scoring), evaluate=evaluate,
        command=_command(files, main, edited_in_evaluate),
        metric=_metric(files, evaluate or main), edited_in_evaluate=edited_in_evaluate,
        knob_files=knob_files,
        knobs=[k for k in owned.values() if not _HELD_BACK.search(k.name)],
        held_back=[k for k in owned.values() if _HELD_BACK.search(k.name)],
        program="program.md" if "program.md" in others else None)


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


def _knob_files(files: Mapping[str, str], main: str | None,
                others: frozenset[str]) -> list[str]:
    """Files whose lowercase settings are knobs: a main script configured by module-level
    assignments (nanoGPT's train.py) and its config/*.py files; config folders' data files."""
    globs = []
    if main and len(find_knobs(files[main], main, any_case=True)) > \
            2 * len(find_knobs(files[main], main)) + 2:
        globs.append(main)
        globs += sorted({f"{PurePosixPath(p).parent}/*.py" for p in files
                         if PurePosixPath(p).parts[0] in ("config", "configs")})
    globs += sorted({f"{PurePosixPath(p).parent}/*{PurePosixPath(p).suffix}" for p in others
                     if PurePosixPath(p).parts[0] in ("conf", "config", "configs")
                     and p.endswith((".yaml", ".yml", ".json", ".toml"))})
    return sorted(globs)


def _scoring_files(files: Mapping[str, str]) -> set[str]:
    """Files named for data or scoring, and local modules scripts import scoring names from."""
    scoring = {p for p in files if _SCORING_FILE.match(PurePosixPath(p).stem)}
    modules = {PurePosixPath(p).with_suffix("").as_posix().replace("/", "."): p for p in files}
    for text in files.values():
        for module, names in _imports(text):
            path = modules.get(module)
            if path and any(_SCORING_NAME.search(n) for n in names):
                scoring.add(path)
    return scoring


def _imports(text: str) -> list[tuple[str, list[str]]]:
    """The absolute imports of a module: (module, names imported from it; none for `import m`)."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # ValueError: NUL bytes
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
    return any(_goal(n) for n in _PRINTED_METRIC.findall(text))


def _metric(files: Mapping[str, str], where: str | None) -> Metric | None:
    """The metric the scoring script (else any script) prints, held-out names first: as a
    `name: value` line, else as words before a value mid-line (`val loss {x}`)."""
    ordered = [where] if where else []
    ordered += sorted(p for p in files if p != where)
    for finder in (_PRINTED_METRIC, _MID_LINE_METRIC):
        for path in ordered:
            printed = "\n".join(ln for ln in files[path].splitlines() if "print(" in ln)
            names = [n for n in finder.findall(printed) if _goal(n)]
            if names:
                name = next((n for n in names if _HELD_OUT_FIRST.search(n)), names[0])
                if finder is _PRINTED_METRIC:
                    return Metric(name, _goal(name) or "minimize", path)
                return Metric(name.replace(" ", "_"), _goal(name) or "minimize", path,
                              r"\s+".join(map(re.escape, name.split()))
                              + r"\s*[:=]?\s*(?P<value>[-+0-9.eE]+)")
    return None


def _goal(name: str) -> str | None:
    if _LOWER_IS_BETTER.search(name):
        return "minimize"
    if _HIGHER_IS_BETTER.search(name):
        return "maximize"
    return None
