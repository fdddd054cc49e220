"""What a process that runs a proposer's code may see and do, and the launchers that enforce it.

A `Sandbox` says it in plain terms: the one directory it works in (writable or not), the paths it
must not see, the paths it may read, and whether it has a network. A launcher turns a command
into one that runs under those rules: `bwrap` (bubblewrap, Linux namespaces) enforces them;
`none` runs the command as it is and says, once per run, what is left unprotected.

Under bwrap the sandbox is denied by default: it holds the system's programs and libraries,
the interpreter and its packages, the task's read-only data and the work tree, nothing else of
the machine (not the user's repository, the store, other users' files, ratchet's own copies of
its example tasks, /run's sockets, /etc's secrets); the work directory and private, sized tmpfs
at /tmp, /dev/shm and HOME are the only writable places; hidden files are unreadable; the
network is a loopback of its own unless allowed; the process gets its own PID namespace and
dies with its parent, so every process it starts ends with it. It is never root: a root driver
builds the sandbox, then the run drops to an unprivileged user with no capabilities.
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

from ratchet.config import SANDBOX_MODES, TaskConfig
from ratchet.errors import UsageError

GPU_DEVICES = ("/dev/nvidia*", "/dev/nvidia-caps", "/dev/dri")
SANDBOX_UID = 65534  # "nobody": when ratchet runs as root, a run is this user, never root
SYSTEM_DIRS = ("/usr", "/etc", "/sys")
USR_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")  # merged /usr, or not
SECRETS = ("/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-", "/etc/sudoers",
           "/etc/sudoers.d", "/etc/ssh", "/etc/ssl/private", "/etc/security/opasswd")
PROC_READ_ONLY = ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus")
RESOLVER_DIRS = ("/run/systemd/resolve", "/run/resolvconf")  # where /etc/resolv.conf may lead
INSTALL_BWRAP = "sudo apt-get install bubblewrap (or dnf/pacman install bubblewrap)"


@dataclass(frozen=True)
class Limits:
    """What one sandboxed process tree may take besides time. Each is enforced where it can
    be at once (rlimits, tmpfs sizes) and watched where it cannot (see `process`)."""

    processes: int = 512  # alive at once in the tree
    open_files: int = 4096  # per process
    output_bytes: int = 64 * 2**20  # what it prints into its log
    disk_bytes: int = 20 * 2**30  # what it adds to a writable work tree (also any one file)
    tmpfs_bytes: int = 2 * 2**30  # the size of each private tmpfs
    memory_bytes: int | None = None  # resident memory of the tree plus its tmpfs use
    cpu_seconds: float | None = None  # CPU time of the whole tree (a compute budget)


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
    limits: Limits = field(default_factory=Limits)
    # A root driver runs the process as SANDBOX_UID; False keeps the driver's own user
    # (a coding-agent CLI that needs the user's HOME and its login).
    unprivileged: bool = True


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

    def prepare(self, sandbox: Sandbox) -> None:
        """Make `sandbox`'s work tree usable by the process that will run there."""
        ...


class NoLauncher:
    """Runs commands as they are: for machines without namespaces, on purpose only."""

    name = "none"

    def wrap(self, argv: list[str], sandbox: Sandbox) -> list[str]:
        return list(argv)

    def check(self) -> None:
        pass

    def prepare(self, sandbox: Sandbox) -> None:
        pass

    def warning(self) -> str | None:
        return ("warning: sandbox is off ([sandbox] mode = \"none\"): edited code can read hidden "
                "and protected files, the repository and the store, use the network, and leave "
                "processes running")


class BwrapLauncher:
    """bubblewrap: namespaces and bind mounts. Deny by default: the sandbox is built up from
    nothing, binding only what a run needs (see `wrap`)."""

    name = "bwrap"

    def __init__(self, executable: str = "bwrap") -> None:
        self.executable = executable

    def wrap(self, argv: list[str], sandbox: Sandbox) -> list[str]:
        """`argv` under bwrap. What the process sees: the system's programs and libraries
        (/usr and its merged links, /etc without its secrets, /sys), the interpreter running
        ratchet and its packages (not ratchet's bundled examples), the task's `read_only`
        paths and its work tree; /proc of its own with /proc/sys read-only; empty private
        tmpfs at /tmp, /dev/shm and HOME, sized. Nothing else of the machine is there."""
        root_driver = os.geteuid() == 0 and sandbox.unprivileged
        mounts = _Mounts()
        args = [self.executable, "--unshare-ipc", "--unshare-pid", "--unshare-uts",
                "--unshare-cgroup-try", "--die-with-parent", "--new-session"]
        if not root_driver:  # the user's own uid, mapped into a user namespace of its own
            args += ["--unshare-user", "--disable-userns", "--cap-drop", "ALL"]
        if not sandbox.network:
            args.append("--unshare-net")
        args += ["--dev", "/dev", "--proc", "/proc"]
        for path in PROC_READ_ONLY:
            args += ["--ro-bind-try", path, path]
        for device in _gpu_devices():
            args += ["--dev-bind", device, device]
        args += mounts.system(sandbox.network)
        size = str(sandbox.limits.tmpfs_bytes)
        for path in ("/tmp", "/dev/shm"):
            args += ["--perms", "1777", "--size", size, "--tmpfs", path]
        mounts.made.add(Path("/tmp"))  # empty: the directories above a bind there are made
        if sandbox.private_home:
            args += mounts.dirs_above(sandbox.home)
            args += ["--perms", "1777", "--size", size, "--tmpfs", str(sandbox.home)]
            mounts.made.add(Path(os.path.abspath(sandbox.home)))
        elif sandbox.home.is_dir():
            args += mounts.bind(sandbox.home, sandbox.home, "--bind")
        for path in _interpreter_paths(sandbox.conceal):
            args += mounts.bind(path, path)
        for path in _bundled_examples():
            args += ["--tmpfs", str(path)]
        inside = [(s, t) for s, t in sandbox.read_only if Path(t).is_relative_to(sandbox.workdir)]
        for source, target in sandbox.read_only:
            if (source, target) not in inside:
                args += mounts.bind(Path(source), Path(target))
        for path in _outermost(p for p in sandbox.conceal if mounts.shows(p)):
            args += _conceal(path)
        work = sandbox.workdir
        args += mounts.bind(work, work, "--bind" if sandbox.writable else "--ro-bind")
        for source, target in inside:  # read-only data placed inside the work tree
            args += ["--ro-bind", str(source), str(target)]
        for path in sandbox.hidden:
            args += ["--ro-bind", "/dev/null", str(path)]
        args += ["--setenv", "TMPDIR", "/tmp", "--chdir", str(work), "--"]
        return args + (_drop_to_sandbox_user(argv) if root_driver else list(argv))

    def prepare(self, sandbox: Sandbox) -> None:
        """A root driver's runs are SANDBOX_UID: their writable work tree becomes theirs."""
        if os.geteuid() == 0 and sandbox.unprivileged and sandbox.writable:
            subprocess.run(["chown", "-R", "-P", f"{SANDBOX_UID}:{SANDBOX_UID}",
                            str(sandbox.workdir)], check=True, capture_output=True)

    def check(self) -> None:
        if not sys.platform.startswith("linux"):
            raise UsageError(f"[sandbox] mode = \"bwrap\" needs Linux (this is {sys.platform}); "
                             "set [sandbox] mode = \"none\" in ratchet.toml to run unprotected")
        if shutil.which(self.executable) is None:
            raise UsageError(f"bubblewrap (`{self.executable}`) is not installed, and the "
                             f"sandbox needs it: {INSTALL_BWRAP}; or set [sandbox] mode = "
                             "\"none\" in ratchet.toml to run unprotected")
        if os.geteuid() == 0 and shutil.which("setpriv") is None:
            raise UsageError("ratchet runs as root, and its sandbox needs `setpriv` (util-linux) "
                             "to run evaluations as an unprivileged user: apt-get install "
                             "util-linux; or run ratchet as a normal user")
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
    unique = sorted({Path(os.path.abspath(p)) for p in paths}, key=lambda p: (len(p.parts), p))
    kept: list[Path] = []
    for path in unique:
        if path != Path("/") and not _inside_any(path, kept):
            kept.append(path)
    return kept


def _inside_any(path: Path, roots: Iterable[Path]) -> bool:
    return any(path.is_relative_to(root) for root in roots)


def _interpreter_paths(conceal: Iterable[Path] = ()) -> list[Path]:
    """Where the interpreter running ratchet and its packages live (a venv, pyenv or
    `pip install --user` in HOME, an editable install's source): they stay visible, read-only.
    Nothing that holds a concealed path (the user's repository) is; of the import path, the
    current directory and anything inside a concealed path are left out too (a venv inside
    the repository stays: it is the interpreter)."""
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))),
                site.getusersitepackages()}
    here = Path(os.path.realpath(os.getcwd()))
    concealed = [Path(os.path.abspath(p)) for p in conceal]
    found = [Path(os.path.abspath(p)) for p in prefixes if p and os.path.isdir(p)]
    for entry in sys.path:
        if entry and os.path.isabs(entry) and os.path.isdir(entry):
            path = Path(os.path.abspath(entry))
            if Path(os.path.realpath(path)) != here and not _inside_any(path, concealed):
                found.append(path)
    return _outermost(p for p in found if not any(c.is_relative_to(p) for c in concealed))


def _bundled_examples() -> list[Path]:
    """ratchet's own copy of its example tasks (the wheel ships them, hidden files and all)."""
    import ratchet

    path = Path(ratchet.__file__).resolve().parent / "bundled_examples"
    return [path] if path.is_dir() else []


def _gpu_devices() -> list[str]:
    return sorted({path for pattern in GPU_DEVICES for path in glob.glob(pattern)})


class _Mounts:
    """Bookkeeping for building a sandbox from nothing: what is already visible, and the
    directories a bind needs above it (made 0755: bwrap would make them 0700, closed to an
    unprivileged user)."""

    def __init__(self) -> None:
        self.covered: list[Path] = []  # mounted trees: anything inside exists already
        self.made: set[Path] = {Path("/")}

    def shows(self, path: Path) -> bool:
        return _inside_any(Path(os.path.abspath(path)), self.covered)

    def dirs_above(self, path: Path) -> list[str]:
        args: list[str] = []
        for parent in reversed(Path(os.path.abspath(path)).parents):
            if parent in self.made or _inside_any(parent, self.covered):
                continue
            args += ["--perms", "0755", "--dir", str(parent)]
            self.made.add(parent)
        return args

    def bind(self, source: Path, target: Path, how: str = "--ro-bind") -> list[str]:
        args = [*self.dirs_above(target), how, str(source), str(target)]
        self.covered.append(Path(os.path.abspath(target)))
        return args

    def system(self, network: bool) -> list[str]:
        args: list[str] = []
        for link in USR_LINKS:
            if os.path.islink(link):
                args += ["--symlink", os.readlink(link), link]
            elif os.path.isdir(link):
                args += self.bind(Path(link), Path(link))
        for path in SYSTEM_DIRS:
            if os.path.isdir(path):
                args += self.bind(Path(path), Path(path))
        for secret in SECRETS:
            args += _conceal(Path(secret))
        if network:
            for path in RESOLVER_DIRS:
                if os.path.isdir(path):
                    args += self.bind(Path(path), Path(path))
        return args


def _drop_to_sandbox_user(argv: list[str]) -> list[str]:
    """`argv` run as SANDBOX_UID with no capabilities and no way back (a root driver's bwrap
    builds the sandbox as root, then the run itself must not be root)."""
    ids = str(SANDBOX_UID)
    return ["setpriv", "--reuid", ids, "--regid", ids, "--clear-groups", "--inh-caps", "-all",
            "--ambient-caps", "-all", "--bounding-set", "-all", "--no-new-privs", "--", *argv]


def check_read_only(config: TaskConfig) -> None:
    """Every `[sandbox] read_only` path exists (relative ones in the repository)."""
    for entry in config.sandbox.read_only:
        path = Path(entry).expanduser()
        if not (path if path.is_absolute() else config.root / path).exists():
            raise UsageError(f"ratchet.toml: [sandbox].read_only: {entry!r} does not exist")
