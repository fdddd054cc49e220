"""ratchet: propose a code change, evaluate it under protection, keep it only if it is better.

The architecture, as layers from the bottom. A module imports only from its own layer or
below, and never in a circle (tests/test_layers.py reads every import and checks both):

    1. errors, units, globs, records, flags, steps
    2. llm, config, decide, pruning, fidelity
    3. execute, store
    4. knobs
    5. context
    6. agent, proposers
    7. engine
    8. study
    9. generalize, importer, bench, reports, examples
    10. mcp_server, commands, status, cli, __main__, ratchet

`records` are the typed rows every layer passes around; `execute` runs evaluations (executors,
sandbox, processes, code states as commits); `store` keeps studies, experiments and drivers;
`context` is the one narrow object the engine and the proposers get; `engine` is a driver's
loop; `study` is the facade the command line and the Python API use.
"""

import importlib
from typing import Any

# Loaded on first use, so `ratchet --help` does not import the whole package.
_EXPORTS = {"Budget": "engine", "Progress": "engine", "ConfigError": "errors",
            "RatchetError": "errors", "UsageError": "errors", "Proposal": "proposers",
            "ProposalContext": "proposers", "Proposer": "proposers", "Experiment": "records",
            "StudyRecord": "records", "Study": "study", "open_study": "study"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ratchet' has no attribute {name!r}")
    return getattr(importlib.import_module(f"ratchet.{_EXPORTS[name]}"), name)


__version__ = "0.1.0"
