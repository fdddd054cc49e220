"""Hard-coded seeds in Python source: found, rewritten to a run's seed, and told apart.

Code that fixes its own seed (`torch.manual_seed(1337 + seed_offset)`) repeats one draw of its
noise on every run, so repeated runs look noise-free and a lucky seed looks like a discovery.
This module finds such seeds so that ratchet can say so, vary them per run in the run's own copy
of the code, and refuse a change that alters nothing but them.

A seed site is, judged on the parsed code (`ast`), never on text:

- a call whose function (its last attribute) is a seeding function (`manual_seed`, `seed`,
  `set_seed`, `PRNGKey`, `default_rng`, `RandomState`, ...) with an int literal in its first
  argument;
- a keyword argument `seed=<int>` (any seed name, `is_seed_name`) or `random_state=<int>`;
- a `default=<int>` of a call that names a "seed" option (`add_argument("--seed", default=0)`);
- a default of a seed parameter (`def main(seed=1337)`);
- an assignment of an int literal to a seed name, any case (`SEED = 42`; never a count of
  seeds such as `NUM_SEEDS = 3`, which sets how much work a run does).

"An int literal in" a value means the value itself, or a term of a sum or difference, or a
branch of `or` / `a if c else b`, where the term is an int (`-1` and `2**10` count as one).
A literal inside another call, a subscript, a string or an f-string is not found: a seed
computed as `int("137")` or taken from `seeds[0]` is invisible here, and so is any code that
mentions `RATCHET_SEED` (it reads the run's seed already). Code that does not parse has none.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass

# The last attribute of a call that seeds a generator; `key` counts only as `jax.random.key`.
SEEDING_CALLS = frozenset({
    "manual_seed", "manual_seed_all", "seed", "set_seed", "seed_everything", "set_random_seed",
    "PRNGKey", "default_rng", "RandomState", "Random", "Generator", "PCG64", "PCG64DXSM",
    "Philox", "MT19937", "SFC64", "SeedSequence",
})
RANDOM_MODULES = frozenset({"random", "jr", "jrandom"})
# Parts of a name that make it a count of seeds, never a seed (NUM_SEEDS, n_seed, seed_count).
_COUNT_PARTS = frozenset({"num", "n", "count", "number", "nb", "total"})
SEED_VARIABLE = "RATCHET_SEED"  # the run's own seed, in its environment (ratchet.execute)


@dataclass(frozen=True)
class SeedSite:
    """One hard-coded seed: where it is, its line as written, and what kind of site it is."""

    path: str
    line: int
    code: str  # the source line, stripped
    kind: str  # "call", "keyword", "option default" or "assignment"

    def __str__(self) -> str:
        return f"{self.path}:{self.line} {_without_comment(self.code)}"


@dataclass(frozen=True)
class _Found:
    line: int
    col: int
    kind: str
    literals: tuple[ast.expr, ...]


def find_seeds(text: str, path: str) -> list[SeedSite]:
    """Every hard-coded seed of one Python source, in file order."""
    tree = _parse(text)
    if tree is None:
        return []
    lines = [line.rstrip("\r\n") for line in _lines(text)]
    return [SeedSite(path, found.line, _line(lines, found.line), found.kind)
            for found in _found(tree)]


def rewrite_seeds(text: str, path: str, seed: int) -> str:
    """`text` with every literal of every seed site replaced by `seed`; all else as written.

    `path` names the file in nothing but the signature's symmetry with `find_seeds`; source
    that does not parse comes back unchanged."""
    del path
    bom = "\ufeff" if text.startswith("\ufeff") else ""
    tree = _parse(text)
    if tree is None:
        return text
    literals = {id(node): node for found in _found(tree) for node in found.literals}
    return bom + _replace(text[len(bom):], list(literals.values()), str(seed))


def only_seeds_differ(old: str, new: str, path: str) -> bool:
    """True when the two sources' parsed trees differ, and no longer do once every seed
    literal is blanked: a change of seed values and nothing else (comments and formatting
    never count). Code too deeply nested to compare is never called a seed-only change."""
    before, after = _dump(old), _dump(new)
    if before is None or after is None or before == after:
        return False
    blank_old, blank_new = _dump(rewrite_seeds(old, path, 0)), _dump(rewrite_seeds(new, path, 0))
    return blank_old is not None and blank_old == blank_new


def same_code(old: str, new: str) -> bool:
    """Two sources that parse to the same tree (comments and formatting aside)."""
    before = _dump(old)
    return before is not None and before == _dump(new)


def _dump(text: str) -> str | None:
    """The parsed tree as text, for comparison; None where it does not parse or nests too
    deeply to walk (`ast.dump` recurses)."""
    tree = _parse(text)
    try:
        return ast.dump(tree) if tree is not None else None
    except (RecursionError, MemoryError):
        return None


def _parse(text: str) -> ast.Module | None:
    """The module's tree (a leading byte-order mark ignored, as Python ignores it), or None."""
    try:
        return ast.parse(text.removeprefix("\ufeff"))
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # ValueError: NUL bytes
        return None


def _lines(text: str) -> list[str]:
    """Lines as Python counts them (\\n, \\r\\n, \\r; not the form feeds str.splitlines
    also splits at), each with its ending."""
    return io.StringIO(text.removeprefix("\ufeff"), newline="").readlines()


def _line(lines: list[str], number: int) -> str:
    return lines[number - 1].strip() if 0 < number <= len(lines) else ""


def _without_comment(code: str) -> str:
    """A line without its trailing comment (a `#` inside a string stays)."""
    try:
        for token in tokenize.generate_tokens(io.StringIO(code).readline):
            if token.type == tokenize.COMMENT:
                return code[:token.start[1]].rstrip()
    except (tokenize.TokenError, SyntaxError):  # a line of a longer statement
        pass
    return code


def _found(tree: ast.Module) -> list[_Found]:
    return sorted(_walk_sites(tree), key=lambda f: (f.line, f.col))


def _walk_sites(tree: ast.Module) -> Iterator[_Found]:
    for node in ast.walk(tree):  # iterative: any depth
        try:
            found = _site(node)
        except RecursionError:  # a value nested too deeply to read: no seed there
            continue
        if found is not None:
            yield found


def _site(node: ast.AST) -> _Found | None:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return _parameter_site(node)
    if not isinstance(node, ast.Call | ast.Assign | ast.AnnAssign) or _mentions_run_seed(node):
        return None
    if isinstance(node, ast.Call):
        literals, kind = _call_literals(node)
    else:
        literals, kind = _assignment_literals(node), "assignment"
    return _Found(node.lineno, node.col_offset, kind, tuple(literals)) if literals else None


def _parameter_site(node: ast.FunctionDef | ast.AsyncFunctionDef) -> _Found | None:
    """`def main(seed=1337)`: the int literals of seed parameters' defaults, found at the
    first of them (a signature may span lines)."""
    args = node.args
    positional = [*args.posonlyargs, *args.args][len(args.posonlyargs) + len(args.args)
                                                 - len(args.defaults):]
    pairs = [*zip(positional, args.defaults, strict=True),
             *zip(args.kwonlyargs, args.kw_defaults, strict=True)]
    literals = [lit for arg, default in pairs
                if default is not None and is_seed_name(arg.arg)
                and not _mentions_run_seed(default) for lit in _int_literals(default)]
    if not literals:
        return None
    return _Found(literals[0].lineno, literals[0].col_offset, "parameter default",
                  tuple(literals))


def _mentions_run_seed(node: ast.AST) -> bool:
    """A call or assignment that reads RATCHET_SEED has no hard-coded seed to vary."""
    return any(isinstance(n, ast.Constant) and isinstance(n.value, str) and SEED_VARIABLE in n.value
               for n in ast.walk(node))


def _call_literals(call: ast.Call) -> tuple[list[ast.expr], str]:
    kinds: list[str] = []
    literals: list[ast.expr] = []
    if _is_seeding(call.func) and call.args:
        literals += _int_literals(call.args[0])
        kinds += ["call"] if literals else []
    for keyword in call.keywords:
        name = keyword.arg or ""
        if is_seed_name(name):
            found = _int_literals(keyword.value)
            literals += found
            kinds += ["keyword"] if found else []
        elif name == "default" and _names_seed_option(call):
            found = _int_literals(keyword.value)
            literals += found
            kinds += ["option default"] if found else []
    return literals, (kinds[0] if kinds else "")


def _is_seeding(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in SEEDING_CALLS
    if not isinstance(func, ast.Attribute):
        return False
    if func.attr == "key":  # jax.random.key(0), not any mapping's key()
        owner = func.value
        name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
        return name in RANDOM_MODULES
    return func.attr in SEEDING_CALLS


def is_seed_name(name: str) -> bool:
    """A name that holds one seed: `seed`, `SEED`, `data_seed`, `seed_offset`, `randomSeed`,
    `--random-seed`, `random_state`. A count or a list of seeds (`NUM_SEEDS`, `n_seeds`,
    `seeds`, `seed_count`) is not one: rewriting it to a run's seed would change the work."""
    parts = _name_parts(name)
    if parts == ["random", "state"]:
        return True
    return "seed" in (parts[:1] + parts[-1:]) and not _COUNT_PARTS.intersection(parts)


def _name_parts(name: str) -> list[str]:
    """`--Random-Seed`, `randomSeed`, `RANDOM_SEED` all give ["random", "seed"]."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name.strip().lstrip("-"))
    return [part for part in re.split(r"[^a-z0-9]+", snake.lower()) if part]


def _names_seed_option(call: ast.Call) -> bool:
    """`add_argument("--seed", default=0)`, `click.option("--seed", default=0)`."""
    return any(isinstance(a, ast.Constant) and isinstance(a.value, str)
               and is_seed_name(a.value) for a in call.args)


def _assignment_literals(node: ast.Assign | ast.AnnAssign) -> list[ast.expr]:
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    if node.value is None or not any(isinstance(t, ast.Name) and is_seed_name(t.id)
                                     for t in targets):
        return []
    return _int_literals(node.value)


def _int_literals(node: ast.expr) -> list[ast.expr]:
    """The int literals of a seed's value: the value itself when it is an int (constant
    arithmetic included), else the terms of a sum or difference and the branches of `or` and
    of a conditional expression. Nothing inside calls, subscripts or strings."""
    if _is_int_constant(node):
        return [node]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub):
        return _int_literals(node.left) + _int_literals(node.right)
    if isinstance(node, ast.BoolOp):
        return [lit for value in node.values for lit in _int_literals(value)]
    if isinstance(node, ast.IfExp):
        return _int_literals(node.body) + _int_literals(node.orelse)
    return []


def _is_int_constant(node: ast.expr) -> bool:
    """An int literal, or arithmetic on int literals alone (`-1`, `2**31 - 1`); never a bool."""
    if isinstance(node, ast.Constant):
        return type(node.value) is int
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        return _is_int_constant(node.operand)
    if isinstance(node, ast.BinOp):
        return _is_int_constant(node.left) and _is_int_constant(node.right)
    return False


def _replace(text: str, nodes: list[ast.expr], replacement: str) -> str:
    """Replace each node's source span; ast's columns are UTF-8 byte offsets of their lines."""
    lines = _lines(text)
    encoded = [line.encode("utf-8") for line in lines]
    spans = sorted(((n.lineno, n.col_offset, n.end_lineno or n.lineno,
                     n.end_col_offset or n.col_offset) for n in nodes), reverse=True)
    for start_line, start_col, end_line, end_col in spans:
        head = encoded[start_line - 1][:start_col]
        tail = encoded[end_line - 1][end_col:]
        encoded[start_line - 1:end_line] = [head + replacement.encode("utf-8") + tail]
    return b"".join(encoded).decode("utf-8")
