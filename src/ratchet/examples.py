"""The example tasks that ship with ratchet (the repository's `examples/` folder)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ratchet.errors import UsageError

NAMES = ("quadratic", "digits")
DEMO = "digits"
DEMO_EXPERIMENTS = {"quadratic": 40, "digits": 24}


def path(name: str) -> Path:
    """Where example `name` lies: inside an installed wheel, or in a source checkout."""
    bundled = Path(str(resources.files("ratchet"))) / "bundled_examples" / name
    checkout = Path(__file__).resolve().parents[2] / "examples" / name
    for candidate in (bundled, checkout):
        if (candidate / "ratchet.toml").is_file():
            return candidate
    raise UsageError(f"example {name!r} is not bundled with this installation")
