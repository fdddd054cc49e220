"""The `ratchet` command line: parses arguments, then runs the command (`ratchet.commands`,
or for `status` the lighter `ratchet.status`).

Only light modules are imported here, so `ratchet --help` does not wait for the database,
optimizer and parser libraries the commands need.
"""

from __future__ import annotations

import argparse
import os
import sys

from ratchet import examples
from ratchet.errors import RatchetError
from ratchet.records import PROPOSER_NAMES, SAMPLER_NAMES
from ratchet.reports.export import FORMATS
from ratchet.units import parse_duration


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        # The heavy imports come after --help has had its chance; a quick look skips them.
        if args.handler == "status":
            from ratchet import status as commands
        else:
            from ratchet import commands  # type: ignore[no-redef]
        return int(getattr(commands, f"cmd_{args.handler}")(args) or 0)
    except RatchetError as exc:
        from ratchet.reports.safe_text import printable

        print(f"ratchet: error: {printable(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("ratchet: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ratchet", description=(
        "Propose a code change, evaluate it under protection, keep it only if it is really "
        "better, repeat."))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    store = argparse.ArgumentParser(add_help=False)  # where the studies are
    store.add_argument("--repo", default=".", help="the git repository (default: .)")
    store.add_argument("--storage", help="database URL (default: sqlite in .ratchet/)")
    common = argparse.ArgumentParser(add_help=False, parents=[store])  # ... and which one
    common.add_argument("--study", help="study name (default: the most recent study)")

    p = sub.add_parser("init", help="write a commented ratchet.toml for this repository")
    p.add_argument("--repo", default=".")
    p.add_argument("--force", action="store_true", help="overwrite an existing ratchet.toml")
    p.add_argument("--command", help="how your code runs, e.g. \"python train.py "
                   "config/small.py\" (default: a guess, such as python train.py)")
    p.add_argument("--no-run", action="store_true", help="read the code only: do not run the "
                   "command in the sandbox to see what it prints and opens")
    p.add_argument("--observe-timeout", type=_duration, default=60.0,
                   help="how long each of the two observed runs may take (default 60s)")
    p.set_defaults(handler="init")

    p = sub.add_parser("run", parents=[common], help="start a study, or resume it")
    _run_options(p)
    p.set_defaults(handler="run")

    p = sub.add_parser("status", parents=[common], help="the studies of this repository")
    p.set_defaults(handler="status")

    p = sub.add_parser("log", parents=[common], help="one row per experiment")
    p.add_argument("--plain", action="store_true", help="plain text instead of a table")
    p.set_defaults(handler="log")

    p = sub.add_parser("show", parents=[common], help="an experiment's diff, log tail, numbers")
    p.add_argument("number", type=int)
    p.add_argument("--lines", type=int, default=30, help="log lines to show (default 30)")
    p.set_defaults(handler="show")

    p = sub.add_parser("try", parents=[common],
                       help="evaluate your own change (a patch file, or your uncommitted edits)")
    p.add_argument("patch", nargs="?", help="patch file, or - for standard input "
                   "(default: the working tree's uncommitted edits)")
    p.add_argument("-m", "--message", default=None, help="description to record")
    p.add_argument("--onto", choices=("best", "base"), default="best",
                   help="apply the change to the best code so far (default) or to the base")
    p.add_argument("--plain", action="store_true")
    p.set_defaults(handler="try")

    p = sub.add_parser("best", parents=[common],
                       help="put the kept chain on branch ratchet/<study>, print its diff")
    p.set_defaults(handler="best")

    p = sub.add_parser("export", parents=[common], help="experiments as tsv, csv or jsonl")
    p.add_argument("--format", choices=FORMATS, default="tsv")
    p.add_argument("-o", "--output", help="file to write (default: standard output)")
    p.set_defaults(handler="export")

    p = sub.add_parser("space", help="print a [space] table for the knobs found")
    p.add_argument("--repo", default=".")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--discover", action="store_true",
                     help="find module-level constants in the editable files, guess ranges")
    how.add_argument("--llm", action="store_true",
                     help="have the agent read the code and choose knobs and ranges")
    p.add_argument("--model", help="the agent's model (default: [agent].model)")
    p.add_argument("--base-url", help="the model's endpoint (default: the SDK's variable)")
    p.set_defaults(handler="space")

    p = sub.add_parser("bench", parents=[store],
                       help="every method x seed as its own study, same budget")
    p.add_argument("--name", default="bench", help="the bench's name, its studies' prefix")
    p.add_argument("--methods", required=True,
                   help="comma-separated: tpe,cmaes,random,gp,agent:MODEL,hybrid:MODEL,...")
    p.add_argument("--seeds", type=_positive_int, default=3, help="seeds per method")
    p.add_argument("--seed", type=int, default=0, help="the first seed (then +1, +2, ...)")
    p.add_argument("--budget-usd", type=float, help="dollars per study (compute + tokens)")
    p.add_argument("--budget-experiments", type=_positive_int, help="experiments per study")
    p.add_argument("--base-url", help="the agents' endpoint")
    p.add_argument("--parallel", type=_positive_int, default=1)
    p.add_argument("--plain", action="store_true")
    p.set_defaults(handler="bench")

    p = sub.add_parser("generalize", parents=[store],
                       help="re-run each bench study's best at longer horizons")
    p.add_argument("--bench", default="bench", help="the bench's name")
    p.add_argument("--horizons", default="1,2,4", help="multiples of the task's budget, "
                   "given to the command as RATCHET_HORIZON (default 1,2,4)")
    p.add_argument("--runs", type=_positive_int, default=3, help="runs per horizon")
    p.set_defaults(handler="generalize")

    p = sub.add_parser("report", parents=[common],
                       help="an HTML report (and PNG figures) of a study or a bench")
    p.add_argument("--bench", help="a bench's name (default: the study's, or the latest "
                   "study's bench if it belongs to one)")
    p.add_argument("--reference", action="append", default=[],
                   help="a study to show beside the bench, e.g. an imported results log")
    p.add_argument("-o", "--output", default="ratchet-report.html")
    p.set_defaults(handler="report")

    p = sub.add_parser("serve", parents=[store],
                       help="a live, read-only web dashboard over the store")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    p.set_defaults(handler="serve")

    p = sub.add_parser("import", parents=[store], help="bring an autoresearch results.tsv "
                       "into the store as a study of its own")
    p.add_argument("file", help="the results log (commit, metric, memory_gb, status, "
                   "description)")
    p.add_argument("--study", help="study name (default: the file's name)")
    p.add_argument("--task", help="the task it belongs to (default: this repository's task)")
    p.add_argument("--goal", choices=("minimize", "maximize"),
                   help="metric direction (default: the task's, else minimize)")
    p.set_defaults(handler="import")

    p = sub.add_parser("mcp", parents=[common], help="serve evaluate/history/best as MCP tools "
                       "over stdio, for an agent that drives (default study: mcp)")
    p.set_defaults(handler="mcp")

    p = sub.add_parser("demo", help="run a classical study on a bundled example, offline")
    p.add_argument("--example", choices=examples.NAMES, default=examples.DEMO)
    p.add_argument("--dir", help="where to put the demo repository (default: a new temp dir)")
    p.add_argument("--proposer", choices=SAMPLER_NAMES, default="tpe")
    p.add_argument("--max-experiments", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--parallel", type=int, default=min(2, os.cpu_count() or 1),
                   help="evaluations at once (default: 2, or 1 on a one-core machine)")
    p.add_argument("--plain", action="store_true")
    p.set_defaults(handler="demo")
    return parser


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--proposer", help=f"one of: {', '.join(PROPOSER_NAMES)} (default: tpe, or the "
                   "study's own when resuming)")
    p.add_argument("--max-experiments", type=_positive_int, help="stop after N experiments")
    p.add_argument("--max-time", type=_duration, help="stop after this long, e.g. 90m or 2h")
    p.add_argument("--max-usd", type=float, help="stop once this many dollars are spent")
    p.add_argument("--seed", type=int, help="sampler seed (recorded with the study)")
    p.add_argument("--model", help="the agent's model, e.g. anthropic:claude-sonnet-4-5, "
                   "openai:gpt-5, or a local server's model name (agent and hybrid)")
    p.add_argument("--base-url", help="an OpenAI-compatible or Anthropic endpoint "
                   "(default: OPENAI_BASE_URL / ANTHROPIC_BASE_URL, or [agent].base_url)")
    p.add_argument("--fresh", action="store_true", help="the agent ignores what earlier "
                   "studies of this task learned")
    p.add_argument("--parallel", type=_positive_int, default=1, help="evaluations at once")
    p.add_argument("--gpus", help="comma-separated GPU ids, one per slot (CUDA_VISIBLE_DEVICES)")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="where evaluations run: local slots, or Ray tasks on a cluster")
    p.add_argument("--address", help="the Ray cluster to use with --executor ray "
                   "(default: auto, the cluster this machine belongs to)")
    p.add_argument("--plain", action="store_true", help="one line per experiment, no live view")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


if __name__ == "__main__":
    sys.exit(main())
