"""Knobs: module-level constants in editable files, found and rewritten in place.

A knob is an assignment at the top of a module whose name is UPPER_CASE (any case in a task's
knob files, as nanoGPT's `batch_size = 12`) and whose value is a literal (int, float, str, bool,
or a tuple of those; arithmetic on numbers such as `2**19` is evaluated). Rewriting goes
through libcst, so comments and formatting around a knob survive.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import libcst as cst

from ratchet.config import Param

_KNOB_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
_ANY_CASE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_RATIO_NAME = re.compile(r"FRAC|RATIO|DROPOUT|BETA|MOMENTUM|WARMUP|WARMDOWN|PROB|ALPHA")
_NOT_SEARCHED = re.compile(r"SEED")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Pow: operator.pow}


@dataclass(frozen=True)
class Knob:
    name: str
    value: Any
    path: str
    line: int


def find_knobs(source: str, path: str = "", any_case: bool = False) -> list[Knob]:
    """The knobs of one module, in file order. Source that does not parse has none, a value
    too deep to evaluate (a sum of thousands of terms) is no knob."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # ValueError: NUL bytes
        return []
    knobs = []
    names = _ANY_CASE_NAME if any_case else _KNOB_NAME
    for node in tree.body:
        target, value = _assignment(node)
        if target is None or not names.match(target):
            continue
        try:
            knobs.append(Knob(target, _literal(value), path, node.lineno))
        except (ValueError, ArithmeticError, RecursionError, MemoryError):
            continue
    return knobs


def _assignment(node: ast.stmt) -> tuple[str | None, ast.expr | None]:
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        target = node.targets[0]
        if isinstance(target, ast.Name):
            return target.id, node.value
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
        return node.target.id, node.value
    return None, None


def _literal(node: ast.expr | None) -> Any:
    """The value of a literal expression, with number arithmetic; ValueError for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float | str | bool):
        return node.value
    if isinstance(node, ast.Tuple):
        return tuple(_literal(e) for e in node.elts)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        operand = _literal(node.operand)
        if _is_number(operand):
            return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _literal(node.left), _literal(node.right)
        if _is_number(left) and _is_number(right):
            if isinstance(node.op, ast.Pow) and abs(right) > 64:
                raise ValueError("exponent too large for a knob")
            return _BINARY[type(node.op)](left, right)
    raise ValueError("not a literal")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def rewrite_knobs(source: str, values: Mapping[str, Any]) -> str:
    """`source` with each named knob's value replaced, all other text left exactly as it was.
    KnobRewriteError when that cannot be done (no such knob, code libcst cannot handle)."""
    try:
        module = cst.parse_module(source)
        rewriter = _KnobRewriter(values)
        new_module = module.visit(rewriter)
        code = new_module.code
    except cst.ParserSyntaxError as exc:
        raise KnobRewriteError(f"the code does not parse: {str(exc).splitlines()[0]}") from None
    except (RecursionError, MemoryError):
        raise KnobRewriteError("the code is nested too deeply to rewrite") from None
    missing = set(values) - rewriter.done
    if missing:
        raise KnobRewriteError(f"no module-level knob named {', '.join(sorted(missing))}")
    return code


class KnobRewriteError(KeyError):
    """Knob values could not be written into a file; the message says why."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class _KnobRewriter(cst.CSTTransformer):
    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values = values
        self.done: set[str] = set()
        self.depth = 0

    def visit_IndentedBlock(self, node: cst.IndentedBlock) -> bool:
        self.depth += 1
        return True

    def leave_IndentedBlock(self, original: cst.IndentedBlock,
                            updated: cst.IndentedBlock) -> cst.IndentedBlock:
        self.depth -= 1
        return updated

    def leave_Assign(self, original: cst.Assign, updated: cst.Assign) -> cst.Assign:
        if self.depth or len(updated.targets) != 1:
            return updated
        target = updated.targets[0].target
        if isinstance(target, cst.Name) and target.value in self.values:
            self.done.add(target.value)
            return updated.with_changes(value=_expression(self.values[target.value], updated.value))
        return updated

    def leave_AnnAssign(self, original: cst.AnnAssign, updated: cst.AnnAssign) -> cst.AnnAssign:
        target = updated.target
        if not self.depth and isinstance(target, cst.Name) and target.value in self.values:
            self.done.add(target.value)
            return updated.with_changes(value=_expression(self.values[target.value], updated.value))
        return updated


def _expression(value: Any, original: cst.BaseExpression | None) -> cst.BaseExpression:
    text = format_value(value)
    if isinstance(value, str) and isinstance(original, cst.SimpleString) \
            and original.quote == '"' and '"' not in value and "\\" not in value:
        text = f'"{value}"'  # keep the file's quote style
    return cst.parse_expression(text)


def format_value(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ValueError(f"a knob cannot be set to {value}")
        return repr(value)
    if isinstance(value, tuple):
        inner = ", ".join(format_value(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    return repr(value)


def suggest_param(knob: Knob) -> Param | None:
    """A default search range near the knob's value (rates within a factor of 4, sizes of 2),
    or None where none can be guessed."""
    name, value = knob.name.upper(), knob.value
    if _NOT_SEARCHED.search(name):
        return None
    if isinstance(value, bool):
        return Param(name=knob.name, kind="choice", choices=(True, False))
    if isinstance(value, int):
        if value < 0:
            return None
        if value <= 1:
            return Param(name=knob.name, kind="int", low=value, high=4)
        return Param(name=knob.name, kind="int", low=max(1, value // 2), high=value * 2,
                     log=value >= 16)
    if isinstance(value, float):
        if _RATIO_NAME.search(name) and 0.0 <= value <= 1.0:
            return _ratio(knob.name, value)
        if value > 0:
            return Param(name=knob.name, kind="float", low=_round(value / 4),
                         high=_round(value * 4), log=True)
        if value == 0:
            return Param(name=knob.name, kind="float", low=0.0, high=1.0)
        return Param(name=knob.name, kind="float", low=2 * value, high=-2 * value)
    return None


def _ratio(name: str, value: float) -> Param:
    """A fraction: near 1 (a momentum of 0.95) the range keeps its distance to 1 in scale."""
    if value > 0.5:
        gap = 1.0 - value
        return Param(name=name, kind="float", low=_round(1.0 - 2 * gap), high=_round(1 - gap / 2))
    return Param(name=name, kind="float", low=0.0, high=_round(min(1.0, max(0.2, 3 * value))))


def _round(value: float) -> float:
    return float(f"{value:.3g}")


def space_toml(knobs: list[Knob]) -> str:
    """A `[space]` table for the knobs, with the ones that have no guessable range commented."""
    lines = ["[space]"]
    for knob in knobs:
        param = suggest_param(knob)
        where = f"# {knob.path}:{knob.line}, now {format_value(knob.value)}"
        key = knob.name if _BARE_KEY.match(knob.name) else _toml_scalar(knob.name)
        if param is None:
            lines.append(f"# {key} = ?  {where[2:]} (no range guessed)")
        else:
            lines.append(f"{key} = {param_toml(param)}  {where}")
    return "\n".join(lines) + "\n"


def param_toml(param: Param) -> str:
    if param.kind == "choice":
        choices = ", ".join(_toml_scalar(c) for c in param.choices)
        return f"{{ choice = [{choices}] }}"
    low, high = _toml_scalar(param.low), _toml_scalar(param.high)
    extra = ", log = true" if param.log else ""
    return f"{{ {param.kind} = [{low}, {high}]{extra} }}"


def _toml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)
