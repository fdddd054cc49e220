"""What a process that runs a proposer's code may see and do, and the launchers that enforce it.

A `Sandbox` says it in plain terms: the one directory it works in (writable or not), the paths it
must not see, the paths it may read, and whether it has a network. A launcher turns a command
into one that runs under those rules: `bwrap` (bubblewrap, Linux namespaces) enforces them;
`none` runs the command as it is and says, once per run, what is left unprotected.

Under bwrap everything on the machine is read-only; the work directory, a private /tmp and an
empty HOME are the only writable places; the concealed paths (the user's repository, the store,
the git metadata) and the hidden files are not there at all; /run (where database and other
local sockets live) is empty; the network is a loopback of its own unless allowed; the process
gets its own PID namespace and dies with its parent, so every process it starts ends with it.
"""

from __future__ import annotations

import glob
import os
import shutil
import site
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ratchet.config import SANDBOX_MODES
from ratchet.errors import UsageError

GPU_DEVICES = ("/dev/nvidia*", "/dev/nvidia-caps", "/dev/dri")
INSTALL_BWRAP = "sudo apt-get install bubblewrap (or dnf/pacman install bubblewrap)"


@dataclass(frozen=True)
class Sandbox:
    """The rules one process runs under."""

    workdir: Path
    writable: bool = True
    network: bool = False
    conceal: tuple[Path, ...] = ()  # directories or files that must not be visible at all
    hidden: tuple[Path, ...] = ()  # files inside `workdir` that must not be readable
    read_only: tuple[tuple[Path, Path], ...] = ()  # (source, where it appears), read-only
    private_home: bool = True  # HOME an empty tmpfs; False: the real HOME, writable (CLIs)
    home: Path = field(default_factory=Path.home)


class Launcher(Protocol):
    name: str

    def wrap(self, argv: list[str], sandbox: Sandbox) -> list[str]:
        """`argv` rewritten to run under `sandbox`."""
        ...

    def check(self) -> None:
        """A UsageError naming the cause and the way out when this launcher cannot work here."""
        ...

    def warning(self) -> str | None:
        """What this launcher leaves unprotected, said once per run; None when nothing."""
        ...


class NoLauncher:
    """Runs commands as they are: for machines without namespaces, on purpose only."""

    name = "none"

    def wrap(self, argv: list[str], sandbox: Sandbox) -> list[str]:
        return list(argv)

    def check(self) -> None:
        pass

    def warning(self) -> str | None:
        return ("warning: sandbox is off ([sandbox] mode = \"none\"): edited code can read hidden "
                "and protected files, the repository and the store, use the network, and leave "
                "processes running")


class BwrapLauncher:
    """bubblewrap: namespaces and bind mounts, no privileges needed."""

    name = "bwrap"

    def __init__(self, executable: str = "bwrap") -> None:
        self.executable = executable

    def wrap(self, argv: list[str], sandbox: Sandbox) -> list[str]:
        args = [self.executable, "--unshare-user", "--unshare-ipc", "--unshare-pid",
                "--unshare-uts", "--unshare-cgroup-try", "--disable-userns", "--cap-drop", "ALL",
                "--die-with-parent", "--new-session",
                "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                "--tmpfs", "/tmp", "--tmpfs", "/dev/shm", "--tmpfs", "/run",
                "--setenv", "TMPDIR", "/tmp"]
        if not sandbox.network:
            args.append("--unshare-net")
        for device in _gpu_devices():
            args += ["--dev-bind", device, device]
        private = [sandbox.home] if sandbox.private_home else []
        if not sandbox.private_home and sandbox.home.is_dir():
            args += ["--bind", str(sandbox.home), str(sandbox.home)]
        for path in _outermost([*private, *sandbox.conceal]):
            args += _conceal(path)
        covered = [Path("/tmp"), Path("/run"), *private, *sandbox.conceal]
        for path in _interpreter_paths():
            if _inside_any(path, covered):
                args += ["--ro-bind", str(path), str(path)]
        inside = [(s, t) for s, t in sandbox.read_only if Path(t).is_relative_to(sandbox.workdir)]
        for source, target in sandbox.read_only:
            if (source, target) not in inside:
                args += ["--ro-bind", str(source), str(target)]
        work = str(sandbox.workdir)
        args += ["--bind" if sandbox.writable else "--ro-bind", work, work]
        for source, target in inside:  # read-only data placed inside the work tree
            args += ["--ro-bind", str(source), str(target)]
        for path in sandbox.hidden:
            args += ["--ro-bind", "/dev/null", str(path)]
        return [*args, "--chdir", work, "--", *argv]

    def check(self) -> None:
        if not sys.platform.startswith("linux"):
            raise UsageError(f"[sandbox] mode = \"bwrap\" needs Linux (this is {sys.platform}); "
                             "set [sandbox] mode = \"none\" in ratchet.toml to run unprotected")
        if shutil.which(self.executable) is None:
            raise UsageError(f"bubblewrap (`{self.executable}`) is not installed, and the "
                             f"sandbox needs it: {INSTALL_BWRAP}; or set [sandbox] mode = "
                             "\"none\" in ratchet.toml to run unprotected")
        with tempfile.TemporaryDirectory(prefix="ratchet-probe-") as scratch:
            probe = self.wrap(["true"], Sandbox(workdir=Path(scratch)))
            try:
                proc = subprocess.run(probe, capture_output=True, text=True, timeout=30)
            except subprocess.TimeoutExpired:
                raise UsageError("bwrap did not answer within 30 s") from None
        if proc.returncode != 0:
            detail = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
            raise UsageError(
                f"bwrap cannot create its namespaces here ({detail}): unprivileged user "
                "namespaces are probably restricted (sysctl kernel.unprivileged_userns_clone=1, "
                "or kernel.apparmor_restrict_unprivileged_userns=0 on Ubuntu; in a container, "
                "allow user namespaces); or set [sandbox] mode = \"none\" to run unprotected")

    def warning(self) -> str | None:
        return None


def launcher_for(mode: str) -> Launcher:
    if mode == "bwrap":
        return BwrapLauncher()
    if mode == "none":
        return NoLauncher()
    raise UsageError(f"unknown sandbox mode {mode!r} (known: {', '.join(SANDBOX_MODES)})")


def _conceal(path: Path) -> list[str]:
    """bwrap arguments that make `path` invisible: an empty directory, or an empty file."""
    if path.is_dir():
        return ["--tmpfs", str(path)]
    if path.exists():
        return ["--ro-bind", "/dev/null", str(path)]
    return []


def _outermost(paths: Iterable[Path]) -> list[Path]:
    """The paths that are not inside another of them (mounting the inner ones is pointless)."""
    unique = sorted({Path(os.path.abspath(p)) for p in paths}, key=lambda p: len(p.parts))
    kept: list[Path] = []
    for path in unique:
        if path != Path("/") and not _inside_any(path, kept):
            kept.append(path)
    return kept


def _inside_any(path: Path, roots: Iterable[Path]) -> bool:
    return any(path.is_relative_to(root) for root in roots)


def _interpreter_paths() -> list[Path]:
    """Where the interpreter running ratchet and its packages live (a venv in the repo, pyenv
    or `pip install --user` in HOME): they stay visible, read-only."""
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))),
                site.getusersitepackages()}
    return sorted(Path(p) for p in prefixes if p and os.path.isdir(p))


def _gpu_devices() -> list[str]:
    return sorted({path for pattern in GPU_DEVICES for path in glob.glob(pattern)})
