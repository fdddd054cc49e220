"""Which knobs are the method, and which an optimizer must not touch, each with its reason.

An optimizer "improves" whatever it is given: a step count or a batch size buys compute when
training stops after a number of steps, an evaluation size changes the test, a checkpoint or
logging switch changes nothing (or crashes offline, as `wandb_log`), a device or compile switch
changes how the code runs and not what it learns, and a loop counter's starting value is no
setting at all. `ratchet init` and `ratchet space --discover` both ask `method_space`, so they
give the same answer.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ratchet.knobs.command import CommandLine
from ratchet.knobs.printnames import words
from ratchet.knobs.source import Knob

SEED = "a seed: ratchet gives each run its own ([seeds]), never searches it"
EVALUATION = "an evaluation setting: it changes the test, not the method"
IO = "I/O, logging, checkpoints or the data chosen: not the method"
SYSTEM = "a device, precision, compile or distributed switch: how it runs, not what it learns"
STEPS = "a step count: more steps buy compute (fair under a time budget)"
BATCH = ("data per step: buys compute when training stops after a step count (fair under a "
         "time budget)")
MODEL = ("model size: buys compute when training stops after a step count (fair under a time "
         "budget)")
BUDGET = "a compute budget or hardware constant, not the method"
LOOP_STATE = "loop state: updated as training runs"
REASSIGNED = "reassigned as the script runs: the value it starts with is not what runs"
_NO_COMMAND = CommandLine()

_EVALUATION = frozenset({"eval", "evaluation", "val", "valid", "validation", "test", "holdout"})
_IO = frozenset({"dir", "path", "file", "folder", "log", "logging", "logger", "wandb",
                 "tensorboard", "mlflow", "checkpoint", "ckpt", "save", "resume", "out",
                 "output", "print", "verbose", "dataset", "data", "project", "run", "sample",
                 "download", "cache", "url", "report", "plot", "profile", "debug"})
_IO_NAMES = frozenset({"init_from", "always_save_checkpoint"})
_SYSTEM = frozenset({"dtype", "compile", "backend", "ddp", "distributed", "precision", "tf32",
                     "amp", "cuda", "cudnn", "gpu", "gpus", "nccl", "fsdp", "deepspeed"})
_SYSTEM_NAMES = frozenset({"device", "device_type", "num_workers", "workers", "world_size",
                           "rank", "local_rank", "pin_memory", "num_threads", "threads"})
_STEP_WORDS = frozenset({"iters", "iter", "iterations", "steps", "step", "epochs", "epoch",
                         "updates"})
_SCHEDULE = frozenset({"warmup", "warmdown", "decay", "cooldown", "lr", "interval", "every",
                       "freq", "frequency", "patience", "accumulation", "accum"})
_BATCH = frozenset({"batch", "seq", "sequence", "context", "ctx", "accumulation", "accum",
                    "microbatch", "tokens"})
_BATCH_NAMES = frozenset({"block_size", "max_len", "max_length", "seq_len", "context_length",
                          "gradient_accumulation_steps", "grad_accum_steps"})
_MODEL = frozenset({"layer", "layers", "embd", "emb", "embed", "embedding", "head", "heads",
                    "depth", "width", "hidden", "dim", "channels", "filters", "units"})
_MODEL_NAMES = frozenset({"d_model", "vocab_size", "n_ctx", "d_ff", "ffn_dim"})
_BUDGET = frozenset({"budget", "flops", "timeout", "deadline"})
_TIME_BUDGET = frozenset({"time_budget", "max_time", "time_limit", "max_seconds",
                          "max_minutes", "max_hours", "train_time", "training_time"})


@dataclass(frozen=True)
class HeldBack:
    knob: Knob
    reason: str


def method_space(knobs: Iterable[Knob], run_files: Mapping[str, str],
                 command: CommandLine = _NO_COMMAND,
                 budgeted: bool = False) -> tuple[list[Knob], list[HeldBack]]:
    """The knobs an optimizer may search, and the others with the reason each is left out.
    `run_files`: the files the command runs (for the names the code reassigns as it runs);
    `budgeted`: the task has a time budget, under which batch and model sizes are fair. They
    buy compute only where training stops after a step count: code with no step count and no
    budget (a toy objective) keeps them."""
    knobs = list(knobs)
    changed = reassigned(run_files)
    stepped = not (budgeted or time_budgeted(run_files)) and any(
        is_step_count(k.name) and k.name not in changed for k in knobs)
    space: list[Knob] = []
    held: list[HeldBack] = []
    for knob in knobs:
        reason = held_back_reason(knob.name, stepped, command, changed)
        if reason is None:
            space.append(knob)
        else:
            held.append(HeldBack(knob, reason))
    return space, held


def held_back_reason(name: str, stepped: bool, command: CommandLine = _NO_COMMAND,
                     changed: Mapping[str, str] | None = None) -> str | None:
    """Why `name` stays out of the space, or None for a method knob. `stepped`: training
    stops after a step count, with no time budget (step counts, batch and model sizes then
    buy compute)."""
    if name in command.overrides:
        return (f"set on the command line ({command.override_text(name)}), which overrides "
                "every file: no rewrite can change it")
    tokens = set(words(name))
    lower = name.lower()
    if "seed" in lower:
        return SEED
    changed = changed or {}
    if changed.get(name, "").startswith(LOOP_STATE):  # best_val_loss: loop state, no val size
        return changed[name]
    return _named_reason(lower, tokens) or _compute_reason(lower, tokens, stepped) \
        or changed.get(name)


def _named_reason(lower: str, tokens: set[str]) -> str | None:
    if tokens & _EVALUATION:
        return EVALUATION
    if lower in _IO_NAMES or tokens & _IO:
        return IO
    if lower in _SYSTEM_NAMES or tokens & _SYSTEM:
        return SYSTEM
    if tokens & _BUDGET or lower in _TIME_BUDGET or "peak" in tokens and "flops" in lower:
        return BUDGET
    return None


def _compute_reason(lower: str, tokens: set[str], stepped: bool) -> str | None:
    if not stepped:
        return None
    if lower in _BATCH_NAMES or tokens & _BATCH:
        return BATCH
    if is_step_count(lower):
        return STEPS
    if lower in _MODEL_NAMES or tokens & _MODEL or lower in ("n_layer", "n_head", "n_embd"):
        return MODEL
    return None


def is_step_count(name: str) -> bool:
    """`max_iters`, `num_epochs`, `EPOCHS`: how long training runs (not `warmup_iters`)."""
    tokens = set(words(name))
    return bool(tokens & _STEP_WORDS) and not tokens & _SCHEDULE \
        and not tokens & (_EVALUATION | _IO) and name.lower() not in _BATCH_NAMES


def time_budgeted(files: Mapping[str, str]) -> bool:
    """Whether the code stops training on time: it reads RATCHET_TIME_BUDGET or sets a
    time budget (autoresearch's TIME_BUDGET)."""
    for text in files.values():
        if "RATCHET_TIME_BUDGET" in text:
            return True
        tree = _parse(text)
        if tree is not None and any(_assigned_name(n).lower() in _TIME_BUDGET
                                    for n in tree.body):
            return True
    return False


def reassigned(files: Mapping[str, str]) -> dict[str, str]:
    """Module-level names the code assigns again after their first top-level assignment,
    with the reason: in a loop (loop state), in a function that declares them global, or in a
    block at module level (a resumed checkpoint's `iter_num = checkpoint['iter_num']`). An
    augmented assignment in a module-level `if` keeps the knob: its value still flows on
    (nanoGPT's `gradient_accumulation_steps //= ddp_world_size` under DDP)."""
    found: dict[str, str] = {}
    for path, text in files.items():
        tree = _parse(text)
        if tree is None:
            continue
        first: set[str] = set()
        for node in tree.body:
            name = _assigned_name(node)
            if name and name not in first:
                first.add(name)
                continue
            for target, line, how in _stores(node, in_loop=False, in_block=False):
                if not found.get(target, "").startswith(LOOP_STATE):  # a loop says most
                    found[target] = f"{how} ({path}:{line})"
        for function in _functions(tree):
            for target, line in _global_stores(function):
                found.setdefault(target, f"{LOOP_STATE} ({path}:{line}, in a function)")
    return found


def _stores(node: ast.stmt, in_loop: bool, in_block: bool) -> list[tuple[str, int, str]]:
    """(name, line, why) for every module-scope store under `node`, skipping functions and
    classes (their own scopes)."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return []
    loop = in_loop or isinstance(node, ast.For | ast.AsyncFor | ast.While)
    block = in_block or isinstance(node, ast.If | ast.With | ast.AsyncWith | ast.Try | ast.Match)
    found = [(name, node.lineno, _why(node, loop, block)) for name in _targets(node)]
    found = [f for f in found if f[2]]
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.stmt):
            found += _stores(child, loop, block)
        elif isinstance(child, ast.excepthandler | ast.match_case):
            for stmt in child.body:
                found += _stores(stmt, loop, True)
    return found


def _why(node: ast.stmt, in_loop: bool, in_block: bool) -> str:
    if in_loop:
        return LOOP_STATE
    if isinstance(node, ast.AugAssign):
        return "" if in_block else REASSIGNED
    return REASSIGNED


def _targets(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.Assign):
        return [n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    if isinstance(node, ast.AugAssign | ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    if isinstance(node, ast.For | ast.AsyncFor):
        return [n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)]
    if isinstance(node, ast.With | ast.AsyncWith):
        return [n.id for item in node.items if item.optional_vars
                for n in ast.walk(item.optional_vars) if isinstance(n, ast.Name)]
    return []


def _functions(tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def _global_stores(function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[tuple[str, int]]:
    declared = {name for n in ast.walk(function) if isinstance(n, ast.Global) for name in n.names}
    return [(name, n.lineno) for n in ast.walk(function) if isinstance(n, ast.stmt)
            for name in _targets(n) if name in declared]


def _assigned_name(node: ast.stmt) -> str:
    if isinstance(node, ast.Assign) and len(node.targets) == 1 \
            and isinstance(node.targets[0], ast.Name):
        return node.targets[0].id
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
        return node.target.id
    return ""


def _parse(text: str) -> ast.Module | None:
    try:
        return ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # ValueError: NUL bytes
        return None
