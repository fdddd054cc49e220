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
    commit_all(root)
    return root


ONE_FILE_TASK = """\
[task]
editable = ["task.py"]
command = "{command}"
timeout = "60s"

[metric]
name = "score"

[decision]
rule = "greedy"
baseline_runs = {baseline_runs}
deterministic = true  # the commands print fixed scores: repeated runs agree, no seed hidden

[space]
A = {{ float = [0.0, 1.0] }}
"""


def one_file_task(command: str, baseline_runs: int = 4) -> Path:
    """A repository whose one knob A is searched and whose command must print `score: x`."""
    text = ONE_FILE_TASK.format(command=command, baseline_runs=baseline_runs)
    return git_repo({"ratchet.toml": text, "task.py": "A = 0.5\n"})


def example_repo(name: str, replace: dict[str, tuple[str, str]] | None = None) -> Path:
    """A bundled example as a fresh repository, with `replace` edits made before its commit."""
    root = Path(tempfile.mkdtemp(prefix=f"ratchet-bench-{name}-")) / name
    shutil.copytree(EXAMPLES / name, root)
    for path, (old, new) in (replace or {}).items():
        text = (root / path).read_text()
        assert old in text, f"{old!r} is not in {name}/{path}"
        (root / path).write_text(text.replace(old, new))
    commit_all(root)
    return root


def commit_all(root: Path) -> None:
    for args in (["init", "-q"], ["add", "-A"],
                 ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "bench"]):
        subprocess.run(["git", *args], cwd=root, check=True)
