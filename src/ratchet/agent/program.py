"""The research program: what the agent is told its job is, once, at the top of every episode.

A user replaces the default with their own file (`[agent].program = "program.md"`); the task's
facts (metric, direction, editable and protected files) are always appended, so a program never
goes stale when the task file changes.
"""

from __future__ import annotations

from ratchet.config import TaskConfig

DEFAULT_PROGRAM = """\
# Research program

You are an autonomous ML researcher improving this code. Each episode you make ONE change,
then the experiment loop (not you) runs the protected evaluation and keeps the change only if
it really improves the metric beyond noise. Then a new episode starts from the best code.

## Goal
Make the metric better: the evaluation prints it; you cannot run it yourself.

## Rules
- Change only the editable files. Protected files (the evaluation, the data, the task file)
  are off limits; a change that touches them is voided without running.
- Do not try to game the metric (reading evaluation data, printing fake values): the
  evaluation is protected and such changes are voided or simply fail.
- Keep the code runnable: a crash or timeout wastes an experiment.
- Learn from the lab notebook: do not retry what was already tried and failed, build on what
  was kept, and prefer ideas with a clear expected effect.

## Simplicity
All else being equal, simpler is better. A tiny gain that adds ugly complexity is not worth
it; an equal result with simpler code is a win. Removing code is a fine experiment.
"""

WORKING_RULES = """\
## How you work
Use the tools: read the code, make your change with `replace` (or `write_file`), run
`check_syntax`, then call `finish` with a one-line description, your hypothesis and the effect
you expect. Use `note` for an insight worth remembering in later episodes. You have a limited
number of tool calls; do not explain at length, act.
"""


def task_facts(config: TaskConfig) -> str:
    lines = [
        "## This task",
        f"- Metric: {config.metric.name}, to {config.metric.goal} "
        f"({'lower' if config.minimize else 'higher'} is better).",
        f"- Editable files: {', '.join(config.editable)}",
        f"- Protected files: {', '.join(config.protected)}",
        f"- Each experiment runs: {' then '.join(filter(None, (config.command, config.evaluate)))}",
    ]
    if config.timeout_s:
        lines.append(f"- Time limit per experiment: {config.timeout_s:g} s (longer is a "
                     "timeout: discarded).")
    if config.space:
        lines.append("- Known knobs (module-level constants): "
                     + ", ".join(p.name for p in config.space))
    return "\n".join(lines) + "\n"


def system_prompt(config: TaskConfig, program: str | None = None) -> str:
    return "\n".join([(program or DEFAULT_PROGRAM).rstrip() + "\n", task_facts(config),
                      WORKING_RULES])
