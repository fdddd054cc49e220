"""How a code state seeds its randomness, told apart between a parent and a candidate.

A candidate that pins a lucky seed (plus a jitter to pass for noise) could be kept on runs that
all repeat one draw. `seeds.only_seeds_differ` catches the literals ratchet can rewrite; this
module catches the class: whatever form a seed takes, a candidate that changes how the code
seeds its randomness is no experiment. Each changed file is read as a list of seeding facts,
and any fact added, removed or changed between parent and candidate is the difference:

- Python, on the parsed code: every call to a seeding function (`random.seed(a=1075)`,
  `np.random.default_rng(int('137'))`, whatever its arguments), every binding of a seed name
  (`SEED = ...`, `cfg['seed'] = ...`, `def main(seed=1337)`, a dataclass field, a `seed=`
  keyword, a `'seed':` dict key, an option named `--seed`) and of any bare name a seeding call
  reads (`S = 137; random.seed(S)`), and every mention of RATCHET_SEED;
- YAML, JSON and TOML files: every key whose last part is a seed name;
- other text files: every line that names a seed or RATCHET_SEED.

Facts are compared as written by `ast.unparse`, never by line number: moving or reformatting
seeding code changes nothing; comments never count.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from ratchet.knobs import datafile
from ratchet.knobs.seeds import RANDOM_MODULES, SEED_VARIABLE, SEEDING_CALLS, is_seed_name

_DOCUMENTS = (".md", ".rst")  # prose that may speak of seeds without setting one
_SEED_ARGUMENTS = frozenset({"a", "x", "key", "entropy"})  # random.seed(a=), SeedSequence(entropy=)
_WORD = re.compile(r"[A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)*")


@dataclass(frozen=True)
class Fact:
    """One way a file seeds its randomness: its line (for the message) and its text."""

    line: int
    text: str


def seeding_change(old: Mapping[str, str | None], new: Mapping[str, str | None]) -> str | None:
    """The first difference in how the changed files seed their randomness, as
    "path:line code" (a removal says so), or None when they seed it the same way."""
    for path in sorted(set(old) | set(new)):
        before, after = facts(old.get(path), path), facts(new.get(path), path)
        difference = _first_difference(before, after)
        if difference is not None:
            return f"{path}:{difference}"
    return None


def facts(text: str | None, path: str) -> list[Fact]:
    """The seeding facts of one file's text (none for an absent or binary file)."""
    if text is None:
        return []
    if path.endswith(".py"):
        return _python_facts(text)
    if datafile.is_data_file(path):
        return _data_facts(text, path)
    return [] if path.endswith(_DOCUMENTS) else _line_facts(text)


def _first_difference(before: list[Fact], after: list[Fact]) -> str | None:
    """A fact of `after` the parent lacks, else one of `before` the candidate dropped."""
    left = Counter(f.text for f in before) - Counter(f.text for f in after)
    added = Counter(f.text for f in after) - Counter(f.text for f in before)
    new = next((f for f in after if added[f.text] > 0), None)
    if new is not None:
        return f"{new.line} {new.text}"
    gone = next((f for f in before if left[f.text] > 0), None)
    return None if gone is None else f"{gone.line} {gone.text} (removed)"


# Python


def _python_facts(text: str) -> list[Fact]:
    try:
        tree = ast.parse(text.removeprefix("\ufeff"))
        found = list(_PythonFacts(tree).facts())
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # unreadable: by its lines
        return _line_facts(text)
    return sorted(found, key=lambda f: f.line)


class _PythonFacts:
    """The seeding facts of one parsed module (names are matched module-wide, by name)."""

    def __init__(self, tree: ast.Module) -> None:
        self.tree = tree
        self.parents = {child: node for node in ast.walk(tree)
                        for child in ast.iter_child_nodes(node)}
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _seeds(n.func)]
        self.calls = {id(call) for call in calls}
        self.read = {name for call in calls for name in _bare_names(call)}

    def facts(self) -> Iterator[Fact]:
        for node in ast.walk(self.tree):
            if id(node) in self.calls:
                yield _fact(node, ast.unparse(node))
            if isinstance(node, ast.Call):
                yield from _call_facts(node)
            elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
                yield from self._binding(node)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                yield from _parameters(node)
            elif isinstance(node, ast.Dict):
                yield from _dict_facts(node)
            if _names_run_seed(node):
                yield self._mention(node)

    def _binding(self, node: ast.Assign | ast.AnnAssign | ast.AugAssign) -> Iterator[Fact]:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        names = [n for t in targets for n in _target_names(t)]
        if any(is_seed_name(n) or n in self.read for n in names):
            yield _fact(node, ast.unparse(node))

    def _mention(self, node: ast.AST) -> Fact:
        """The simple statement that mentions RATCHET_SEED, or the header expression of a
        compound one (`if os.environ.get("RATCHET_SEED"):`, not its whole body)."""
        while node in self.parents and not isinstance(node, ast.stmt):
            parent = self.parents[node]
            if isinstance(parent, ast.stmt) and hasattr(parent, "body"):
                break
            node = parent
        return _fact(node, ast.unparse(node))


def _seeds(func: ast.expr) -> bool:
    """A seeding function, by its last attribute; `key` only as `jax.random.key`."""
    if isinstance(func, ast.Name):
        return func.id in SEEDING_CALLS
    if not isinstance(func, ast.Attribute):
        return False
    if func.attr == "key":
        owner = func.value
        return (owner.attr if isinstance(owner, ast.Attribute)
                else getattr(owner, "id", "")) in RANDOM_MODULES
    return func.attr in SEEDING_CALLS


def _bare_names(call: ast.Call) -> set[str]:
    """Names a seeding call reads as its seed (`S` in `seed(S + 1)`, `seed(a=S)`), not objects
    it reads from (`args` in `seed(args.seed)`), functions it calls, or other settings
    (`device` in `Generator(device=device)`)."""
    values = [*call.args, *(k.value for k in call.keywords
                            if k.arg in _SEED_ARGUMENTS or is_seed_name(k.arg or ""))]
    skipped = {id(n.value) for v in values for n in ast.walk(v)
               if isinstance(n, ast.Attribute | ast.Subscript)}
    skipped |= {id(n.func) for v in values for n in ast.walk(v) if isinstance(n, ast.Call)}
    return {n.id for v in values for n in ast.walk(v)
            if isinstance(n, ast.Name) and id(n) not in skipped}


def _call_facts(call: ast.Call) -> Iterator[Fact]:
    """`seed=` keywords (shown with their callee alone), and a whole call that declares a seed
    option (`add_argument("--seed", default=1337)`)."""
    if any(isinstance(a, ast.Constant) and isinstance(a.value, str) and is_seed_name(a.value)
           for a in call.args):
        yield _fact(call, ast.unparse(call))
        return
    callee = ast.unparse(call.func)
    for keyword in call.keywords:
        if keyword.arg is not None and is_seed_name(keyword.arg):
            yield _fact(keyword.value, f"{callee}({keyword.arg}={ast.unparse(keyword.value)})")


def _target_names(target: ast.expr) -> Iterator[str]:
    """The names a binding sets: `x`, `obj.x`, `cfg["x"]`, each element of a tuple."""
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, ast.Attribute):
        yield target.attr
    elif isinstance(target, ast.Subscript) and isinstance(target.slice, ast.Constant) \
            and isinstance(target.slice.value, str):
        yield target.slice.value
    elif isinstance(target, ast.Tuple | ast.List | ast.Starred):
        for element in getattr(target, "elts", [getattr(target, "value", None)]):
            if element is not None:
                yield from _target_names(element)


def _parameters(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> Iterator[Fact]:
    """Seed parameters with their defaults: `def main(seed=1337)` gives `main(seed=1337)`."""
    args = node.args
    positional = [*args.posonlyargs, *args.args]
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults))
    pairs = [*zip(positional, [*defaults, *args.defaults], strict=True),
             *zip(args.kwonlyargs, args.kw_defaults, strict=True)]
    name = getattr(node, "name", "lambda")
    for arg, default in pairs:
        if is_seed_name(arg.arg):
            shown = arg.arg if default is None else f"{arg.arg}={ast.unparse(default)}"
            yield _fact(arg, f"{name}({shown})")


def _dict_facts(node: ast.Dict) -> Iterator[Fact]:
    for key, value in zip(node.keys, node.values, strict=True):
        if isinstance(key, ast.Constant) and isinstance(key.value, str) \
                and is_seed_name(key.value):
            yield _fact(key, f"{{{ast.unparse(key)}: {ast.unparse(value)}}}")


def _names_run_seed(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return SEED_VARIABLE in node.value
    return isinstance(node, ast.Name) and node.id == SEED_VARIABLE


def _fact(node: ast.AST, text: str) -> Fact:
    return Fact(getattr(node, "lineno", 0), text)


# other files


def _data_facts(text: str, path: str) -> list[Fact]:
    """Seed keys of a YAML, JSON or TOML file (`train.seed: 1337`), and its lines that name
    RATCHET_SEED; a file that does not parse is read by its lines."""
    entries = datafile.entries(text, path)
    if not entries and text.strip():
        return _line_facts(text)
    found = [Fact(e.line, f"{e.key}: {e.value!r}") for e in entries
             if is_seed_name(e.key.rsplit(".", 1)[-1])]
    return found + [f for f in _line_facts(text) if SEED_VARIABLE in f.text]


def _line_facts(text: str) -> list[Fact]:
    """Lines that name a seed (`--seed 1075`, `SEED=1075`) or RATCHET_SEED, stripped."""
    return [Fact(number, line.strip()) for number, line in enumerate(text.splitlines(), 1)
            if SEED_VARIABLE in line or any(is_seed_name(w) for w in _WORD.findall(line))]
