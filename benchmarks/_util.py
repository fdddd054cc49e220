"""Helpers shared by the benchmarks: throwaway task repositories."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def git_repo(files: dict[str, str]) -> Path:
    root = Path(tempfile.mkdtemp(prefix="ratchet-bench-"))
    for name, text in files.items():
        (root / name).write_text(text)
    _commit(root)
    return root


def example_repo(name: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix=f"ratchet-bench-{name}-")) / name
    shutil.copytree(EXAMPLES / name, root)
    _commit(root)
    return root


def _commit(root: Path) -> None:
    for args in (["init", "-q"], ["add", "-A"],
                 ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "bench"]):
        subprocess.run(["git", *args], cwd=root, check=True)
