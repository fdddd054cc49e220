"""`ratchet space --llm`: the agent reads the editable code and writes the `[space]` table.

Its proposal is checked against the knobs discovered in the code: every name must be a knob,
the kind must fit the knob's value, and the range must contain the value the code has now.
A proposal that fails gets the reasons back and the agent tries again within its episode.
This gives a classical optimizer the same prior knowledge the agent has.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from typing import Any

from ratchet.agent.episode import EpisodeResult, Limits, run_episode
from ratchet.agent.tools import TOOL_SPECS, AgentTools, Finish, ToolFailure
from ratchet.config import Param, parse_space
from ratchet.errors import ConfigError, RatchetError
from ratchet.knobs.source import Knob, param_toml
from ratchet.llm.chat import ChatModel, ToolSpec

SYSTEM = """\
You choose the search space for a classical hyperparameter optimizer (Optuna's TPE, CMA-ES).
Read the editable code, decide which module-level constants (knobs) are worth searching and
over which ranges, using what you know about such code. Then call write_space with a TOML
[space] table, one line per knob, in this form:

[space]
LEARNING_RATE = { float = [1e-4, 1e-1], log = true }
DEPTH = { int = [2, 12] }
ACTIVATION = { choice = ["relu", "gelu"] }

Every range must contain the knob's current value. Leave out knobs that are not worth
searching (seeds, paths, sizes of the evaluation).
"""

WRITE_SPACE = ToolSpec("write_space", "Propose the [space] table (TOML text).",
                       {"type": "object", "properties": {"toml": {"type": "string"}},
                        "required": ["toml"], "additionalProperties": False})
READING = [s for s in TOOL_SPECS if s.name in ("list_files", "read_file", "search")]


@dataclass
class SpaceTools(AgentTools):
    knobs: dict[str, Knob] | None = None
    space: tuple[Param, ...] = ()

    def _tool_write_space(self, toml: str) -> str:
        self.space = check_space(toml, self.knobs or {})
        self.finished = Finish("search space", "", "")
        return f"accepted: {len(self.space)} knobs"


def check_space(text: str, knobs: dict[str, Knob]) -> tuple[Param, ...]:
    """The parsed table, or ToolFailure listing every problem against the discovered knobs."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ToolFailure(f"write_space: not valid TOML: {exc}") from None
    table = data.get("space", data)
    if not isinstance(table, dict) or not table:
        raise ToolFailure("write_space: no knobs in the table")
    try:
        params = parse_space(table, "the proposed space")
    except ConfigError as exc:
        raise ToolFailure(f"write_space: {exc}") from None
    problems = [p for param in params if (p := _problem(param, knobs))]
    if problems:
        raise ToolFailure("write_space: " + "; ".join(problems))
    return params


def _problem(param: Param, knobs: dict[str, Knob]) -> str | None:
    knob = knobs.get(param.name)
    if knob is None:
        return f"{param.name} is not a knob of the code (knobs: {', '.join(sorted(knobs))})"
    value: Any = knob.value
    if param.kind == "choice":
        if value not in param.choices and list(param.choices) != [True, False]:
            return f"{param.name}: the choices must include the current value {value!r}"
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{param.name} is {value!r}, not a number: use choice"
    if param.kind == "int" and not isinstance(value, int):
        return f"{param.name} is a float ({value!r}): use float"
    assert param.low is not None and param.high is not None
    if not param.low <= value <= param.high:
        return f"{param.name}: [{param.low}, {param.high}] must contain the current value {value}"
    return None


@dataclass(frozen=True)
class SpaceResult:
    params: tuple[Param, ...]
    episode: EpisodeResult

    def toml(self, knobs: dict[str, Knob]) -> str:
        lines = ["[space]  # written by the agent, checked against the knobs in the code"]
        for param in self.params:
            knob = knobs[param.name]
            lines.append(f"{param.name} = {param_toml(param)}  # {knob.path}:{knob.line}")
        return "\n".join(lines) + "\n"


def write_space(chat: ChatModel, files: dict[str, str], knobs: list[Knob],
                editable: tuple[str, ...], limits: Limits | None = None) -> SpaceResult:
    by_name = {k.name: k for k in knobs}
    tools = SpaceTools(files, {}, editable, (), knobs=by_name)
    listing = "\n".join(f"- {k.name} = {k.value!r}  ({k.path}:{k.line})" for k in knobs)
    opening = f"The knobs found in the editable code:\n{listing}\n\nWrite the [space] table."
    episode = run_episode(chat, SYSTEM, opening, tools, limits or Limits(max_tool_calls=20),
                          specs=[*READING, WRITE_SPACE])
    if not tools.space:
        raise RatchetError(f"the agent wrote no valid [space] table ({episode.ended_because})")
    return SpaceResult(tools.space, episode)
