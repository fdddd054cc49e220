"""Walking and removing trees that untrusted code shaped: iteratively, within bounds, links
never followed.

A candidate's patch and its command phase decide what a work tree holds: folders nested a
thousand deep (Python's own `os.walk`, `Path.rglob` and `shutil.rmtree` recurse and die of
it), millions of entries, files the driver may not read, FIFOs, sparse files of many GiB.
Whatever the driver does with such a tree goes through here: `walk` lists it within a depth
and an entry count, and says in one line (a `TreeError`) where a tree goes past them;
`read_digest` hashes one file, reading at most a bounded number of bytes and never blocking on
a FIFO; `remove_tree` deletes a tree whatever its modes and depth.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ratchet.errors import RatchetError

MAX_DEPTH = 128  # folders nested below a walked root
MAX_ENTRIES = 1_000_000  # entries of one walk, folders included
MAX_FILE_BYTES = 256 << 20  # the most the driver reads of one file it must hash
MAX_TOTAL_BYTES = 4 << 30  # the most it reads of all the files of one tree it hashes
MAX_OPEN_DIRS = 32  # removal: deeper folders are moved up to the top before going on
MAX_PASSES = 100  # removal: times one folder is listed again while entries keep appearing
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class TreeError(RatchetError):
    """A tree (or a file in it) the driver will not walk or read; the message says why in one
    line. For a work tree it is the candidate's doing: the run is void."""


@dataclass(frozen=True)
class Entry:
    """A walked entry that is not a folder: its path relative to the root (with `/`), its
    full path, and its own status (a link's, not its target's)."""

    rel: str
    path: str
    stat: os.stat_result


def walk(root: Path | str, skip: tuple[str, ...] = (".git",), max_depth: int = MAX_DEPTH,
         max_entries: int = MAX_ENTRIES) -> Iterator[Entry]:
    """Every entry under `root` that is not a folder (files, links, FIFOs, sockets, devices),
    in sorted order, without recursion; folders named in `skip` are left out. A folder nested
    deeper than `max_depth`, more than `max_entries` entries, or a folder that cannot be listed
    is a TreeError."""
    root = os.fspath(root)
    stack: list[tuple[str, int]] = [("", 0)]
    seen = 0
    while stack:
        rel, depth = stack.pop()
        children: list[tuple[str, os.DirEntry[str]]] = []
        try:
            with os.scandir(os.path.join(root, rel) if rel else root) as listing:
                for item in listing:
                    seen += 1
                    if seen > max_entries:
                        raise TreeError(f"the tree holds more than {max_entries:,} files "
                                        "and folders (the most ratchet walks)")
                    children.append((item.name, item))
        except OSError as exc:
            raise TreeError(f"cannot list the folder {short(rel or '.')}: "
                            f"{exc.strerror or exc}") from None
        folders = []
        for name, item in sorted(children, key=lambda pair: pair[0]):
            child = f"{rel}/{name}" if rel else name
            try:
                info = item.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # gone since it was listed
            except OSError as exc:
                raise TreeError(f"cannot read {short(child)}: {exc.strerror or exc}") from None
            if stat.S_ISDIR(info.st_mode):
                if name in skip:
                    continue
                if depth + 1 > max_depth:
                    raise TreeError(f"folders nested deeper than {max_depth} levels: "
                                    f"{short(child)}")
                folders.append(child)
            else:
                yield Entry(child, item.path, info)
        stack.extend((folder, depth + 1) for folder in reversed(folders))


def read_digest(entry: Entry, max_bytes: int = MAX_FILE_BYTES) -> str:
    """sha256 of a walked file's content. Not read: a link (its target's name stands for it),
    any other file that is not regular (its kind: a FIFO would block a read forever), and a
    file the driver may not open (its mode and size). A file larger than `max_bytes` is a
    TreeError, and no more than that is ever read, however the file grows meanwhile."""
    info = entry.stat
    if stat.S_ISLNK(info.st_mode):
        try:
            return "symlink:" + os.readlink(entry.path)
        except OSError as exc:
            return f"unreadable link:{exc.errno}"
    if not stat.S_ISREG(info.st_mode):
        return f"special:{stat.S_IFMT(info.st_mode):o}"
    if info.st_size > max_bytes:
        raise TreeError(f"{short(entry.rel)} is {_size(info.st_size)}: ratchet hashes files "
                        f"of at most {_size(max_bytes)}")
    try:
        fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # became a link since it was listed
            return "symlink:?"
        return f"unreadable:{stat.S_IMODE(info.st_mode):o}:{info.st_size}:{exc.errno}"
    with os.fdopen(fd, "rb") as f:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode):  # swapped for a FIFO or device since it was listed
            return f"special:{stat.S_IFMT(now.st_mode):o}"
        sha, left = hashlib.sha256(), max_bytes + 1
        while left > 0:
            chunk = f.read(min(1 << 20, left))
            if not chunk:
                break
            sha.update(chunk)
            left -= len(chunk)
        if left <= 0:
            raise TreeError(f"{short(entry.rel)} grew past {_size(max_bytes)} while ratchet "
                            f"hashed it (it hashes files of at most {_size(max_bytes)})")
    return sha.hexdigest()


def digests(entries: Iterator[Entry], max_total: int = MAX_TOTAL_BYTES) -> dict[str, str]:
    """`read_digest` of every entry, by relative path; together the files may hold at most
    `max_total` bytes (past that, a TreeError), so what is read is bounded however many
    large files a run leaves."""
    found, total = {}, 0
    for entry in entries:
        if stat.S_ISREG(entry.stat.st_mode):
            total += entry.stat.st_size
            if total > max_total:
                raise TreeError(f"the files ratchet must hash hold more than {_size(max_total)} "
                                f"together (at {short(entry.rel)})")
        found[entry.rel] = read_digest(entry)
    return found


def short(path: str, most: int = 80) -> str:
    """A path cut in the middle to fit one line of a reason."""
    if len(path) <= most:
        return path
    half = (most - 1) // 2
    return f"{path[:half]}…{path[-half:]} ({path.count('/') + 1} levels)"


def _size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.4g} {unit}"
    return f"{n} bytes"


# removal


@dataclass
class _Folder:
    """A folder being emptied: its descriptor, its name in its parent, its listing."""

    fd: int
    name: str
    listing: Iterator[os.DirEntry[str]] | None = None
    found: bool = False  # the current listing gave an entry to remove
    passes: int = 0
    failed: dict[str, OSError] = field(default_factory=dict)

    def next_name(self) -> str | None:
        """The next entry to remove; None once a listing finds none but those that failed."""
        while True:
            if self.listing is None:
                if self.passes >= MAX_PASSES:
                    return None
                self.listing, self.found = os.scandir(self.fd), False
                self.passes += 1
            for item in self.listing:
                if item.name not in self.failed:
                    self.found = True
                    return item.name
            self._close_listing()
            if not self.found:
                return None

    def close(self) -> None:
        self._close_listing()
        os.close(self.fd)

    def _close_listing(self) -> None:
        if self.listing is not None:
            self.listing.close()  # type: ignore[attr-defined]
            self.listing = None


def remove_tree(path: Path | str) -> None:
    """Delete `path` and everything under it, whatever modes code left on it (folders are made
    accessible as they are reached), however deep, without recursion; links are removed, never
    followed. OSError, naming the first entry that resisted, only when something could not be
    removed at all (an immutable file, a mount point)."""
    path = os.path.abspath(os.fspath(path))
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    parent_fd = os.open(os.path.dirname(path), _DIR_FLAGS)
    try:
        name = os.path.basename(path)
        if stat.S_ISDIR(info.st_mode):
            problem = _remove_folder(parent_fd, name)
        else:
            problem = _unlink(parent_fd, name)
    finally:
        os.close(parent_fd)
    if problem is not None:
        raise OSError(problem.errno, f"cannot remove {path}: {problem.strerror or problem}"
                      + (f" ({problem.filename})" if problem.filename else ""))


def _remove_folder(parent_fd: int, name: str) -> OSError | None:
    """Empty and remove the folder `name` of `parent_fd`, depth first, at most MAX_OPEN_DIRS
    folders open at once; the first error that left something behind."""
    try:
        top = _Folder(_open_folder(parent_fd, name), name)
    except OSError as exc:
        return exc
    folders, moved = [top], 0
    while folders:
        folder = folders[-1]
        try:
            child = folder.next_name()
        except OSError as exc:  # the folder can no longer be listed
            child, folder.failed["."] = None, exc
        if child is None:
            folder.close()
            folders.pop()
            above = folders[-1] if folders else None
            problem = _rmdir(above.fd if above else parent_fd, folder.name,
                             next(iter(folder.failed.values()), None))
            if problem is not None:
                if above is None:
                    return problem
                above.failed[folder.name] = problem
            continue
        try:
            info = os.stat(child, dir_fd=folder.fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        except OSError as exc:
            folder.failed[child] = exc
            continue
        if not stat.S_ISDIR(info.st_mode):
            problem = _unlink(folder.fd, child)
            if problem is not None:
                folder.failed[child] = problem
            continue
        try:
            fd = _open_folder(folder.fd, child)
        except OSError as exc:
            folder.failed[child] = exc
            continue
        if len(folders) < MAX_OPEN_DIRS:
            folders.append(_Folder(fd, child))
            continue
        # Too deep to keep every folder open: move this one up to the top, where a later
        # listing of the top finds it (it has been made accessible, so it can be moved).
        os.close(fd)
        problem, moved = _move_up(folder.fd, child, top.fd, moved)
        if problem is not None:
            folder.failed[child] = problem
    return None


def _open_folder(dir_fd: int, name: str) -> int:
    """A descriptor of the folder `name`, made readable, writable and searchable first if it
    was not (so its entries can be listed and removed)."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except PermissionError:
        _chmod_folder(dir_fd, name)
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & stat.S_IRWXU != stat.S_IRWXU:
            os.fchmod(fd, mode | stat.S_IRWXU)
    except OSError:
        pass  # not ours to change: removing its entries says whether it matters
    return fd


def _chmod_folder(dir_fd: int, name: str) -> None:
    """chmod u+rwx on the folder `name` without following a link put in its place."""
    handle = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        if not stat.S_ISDIR(os.fstat(handle).st_mode):
            return
        try:
            os.chmod(f"/proc/self/fd/{handle}", stat.S_IRWXU)
        except FileNotFoundError:  # no /proc: by name (it was a folder a moment ago)
            os.chmod(name, stat.S_IRWXU, dir_fd=dir_fd)
    finally:
        os.close(handle)


def _unlink(dir_fd: int, name: str) -> OSError | None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except PermissionError:
        try:  # the folder that holds it is not writable: make it so, once
            os.fchmod(dir_fd, stat.S_IMODE(os.fstat(dir_fd).st_mode) | stat.S_IRWXU)
            os.unlink(name, dir_fd=dir_fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            return exc
    except OSError as exc:
        return exc
    return None


def _rmdir(dir_fd: int, name: str, cause: OSError | None) -> OSError | None:
    try:
        os.rmdir(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except PermissionError:
        try:
            os.fchmod(dir_fd, stat.S_IMODE(os.fstat(dir_fd).st_mode) | stat.S_IRWXU)
            os.rmdir(name, dir_fd=dir_fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            return cause or exc
    except OSError as exc:
        return cause or exc
    return None


def _move_up(dir_fd: int, name: str, top_fd: int, moved: int) -> tuple[OSError | None, int]:
    """Rename the folder `name` of `dir_fd` into the top folder under a fresh name."""
    problem: OSError | None = None
    for _ in range(100):
        moved += 1
        try:
            os.rename(name, f".ratchet-removing-{moved}", src_dir_fd=dir_fd, dst_dir_fd=top_fd)
            return None, moved
        except OSError as exc:
            problem = exc
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                break
    return problem, moved
