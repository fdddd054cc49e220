"""A thin, typed edge over the `git` command line. Everything git-shaped goes through here."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ratchet.errors import RatchetError, UsageError
from ratchet.execute import tree_walk
from ratchet.globs import matches_any


class GitError(RatchetError):
    pass


@dataclass(frozen=True)
class TreeChange:
    """One path that differs between two trees, from `git diff-tree --raw`."""

    status: str  # A, M, D, T
    path: str
    old_mode: str
    new_mode: str


class GitRepo:
    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def find(cls, start: Path) -> GitRepo:
        """The repository containing `start`, or a UsageError saying it is not one."""
        try:
            out = subprocess.run(["git", "-C", str(start), "rev-parse", "--show-toplevel"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        except (subprocess.CalledProcessError, FileNotFoundError):
            raise UsageError(f"{start} is not inside a git repository "
                             "(ratchet records every candidate as a git commit: run `git init` "
                             "and commit your code first)") from None
        return cls(Path(out))

    def git(self, *args: str, input: str | None = None, cwd: Path | None = None,
            env: dict[str, str] | None = None, check: bool = True) -> str:
        full_env = None
        if env:
            full_env = {**os.environ, **env}
        proc = subprocess.run(["git", *args], cwd=cwd or self.root, input=input,
                              capture_output=True, text=True, env=full_env)
        if check and proc.returncode != 0:
            message = (proc.stderr or proc.stdout).strip().splitlines()
            detail = message[-1] if message else f"exit code {proc.returncode}"
            raise GitError(f"git {args[0]} failed: {detail}")
        return proc.stdout

    def head(self) -> str:
        try:
            return self.git("rev-parse", "--verify", "HEAD^{commit}").strip()
        except GitError:
            raise UsageError(f"{self.root} has no commits yet: commit your code first, "
                             "ratchet starts from a commit") from None

    def resolve(self, rev: str) -> str | None:
        out = self.git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
        return out.strip() or None

    def read_file(self, commit: str, path: str) -> str:
        return self.git("show", f"{commit}:{path}")

    def read_text(self, commit: str, path: str) -> str | None:
        """A file of `commit` as UTF-8 text; None when it is not (a binary file)."""
        proc = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=self.root,
                              capture_output=True)
        if proc.returncode != 0:
            detail = proc.stderr.decode(errors="replace").strip().splitlines()
            raise GitError(f"git show failed: {detail[-1] if detail else proc.returncode}")
        try:
            return proc.stdout.decode()
        except UnicodeDecodeError:
            return None

    def has_file(self, commit: str, path: str) -> bool:
        return bool(self.git("ls-tree", "--name-only", commit, "--", path).strip())

    def list_files(self, commit: str) -> list[str]:
        return self.git("ls-tree", "-r", "--name-only", "-z", commit).split("\0")[:-1]

    def tree_of(self, commit: str) -> str:
        return self.git("rev-parse", f"{commit}^{{tree}}").strip()

    def changes(self, old_tree: str, new_tree: str) -> list[TreeChange]:
        out = self.git("diff-tree", "-r", "--no-renames", "-z", old_tree, new_tree)
        fields = out.split("\0")
        changes = []
        for header, path in zip(fields[0::2], fields[1::2], strict=False):
            if not header:
                continue
            old_mode, new_mode, _, _, status = header.lstrip(":").split(" ")
            changes.append(TreeChange(status, path, old_mode, new_mode))
        return changes

    def diff(self, old: str, new: str) -> str:
        return self.git("diff", "--no-color", "--no-renames", old, new)

    def commit_tree(self, tree: str, parent: str, message: str, date: str | None = None) -> str:
        """A commit of `tree` on `parent`. With a fixed `date` the same tree, parent and message
        make the same commit in every clone."""
        env = {"GIT_AUTHOR_NAME": "ratchet", "GIT_AUTHOR_EMAIL": "ratchet@localhost",
               "GIT_COMMITTER_NAME": "ratchet", "GIT_COMMITTER_EMAIL": "ratchet@localhost"}
        if date is not None:
            env |= {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
        return self.git("commit-tree", tree, "-p", parent, "-m", message, env=env).strip()

    def has_commit(self, commit: str) -> bool:
        return subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=self.root,
                              capture_output=True).returncode == 0

    def archive(self, commit: str) -> bytes:
        """`commit`'s files as an uncompressed tar: a code state that travels as data."""
        return subprocess.run(["git", "archive", "--format=tar", commit], cwd=self.root,
                              check=True, capture_output=True).stdout

    def update_ref(self, ref: str, commit: str) -> None:
        self.git("update-ref", ref, commit)

    def working_tree_diff(self, against: str = "HEAD", new_files: Iterable[str] = ()) -> str:
        """The checkout's edits to tracked files against `against`, plus the untracked files
        that match the globs `new_files` (as new-file diffs)."""
        parts = [self.git("diff", "--no-color", "--no-renames", against)]
        patterns = tuple(new_files)
        if patterns:
            untracked = self.git("ls-files", "--others", "--exclude-standard", "-z")
            for path in untracked.split("\0")[:-1]:
                if matches_any(path, patterns):
                    parts.append(self.git("diff", "--no-color", "--no-index", "--", "/dev/null",
                                          path, check=False))
        return "".join(parts)

    def add_worktree(self, path: Path, commit: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.git("worktree", "add", "--detach", "--force", str(path), commit)

    def checkout_clean(self, worktree: Path, commit: str) -> None:
        """Put `worktree` at exactly `commit`: tracked files reset, everything else removed."""
        self.git("checkout", "--force", "--detach", "--quiet", commit, cwd=worktree)
        self.git("clean", "-ffdxq", cwd=worktree)

    def export(self, commit: str, directory: Path) -> None:
        """Make `directory` hold exactly `commit`'s files and nothing else. It has no git
        metadata, so code run there cannot reach the repository (or its hooks) through it."""
        remove_tree(directory)
        directory.mkdir(parents=True)
        with tempfile.TemporaryDirectory(prefix="ratchet-export-") as scratch:
            env = {"GIT_INDEX_FILE": os.path.join(scratch, "index")}
            self.git("--work-tree", str(directory), "read-tree", "--reset", "-u", commit, env=env)


def remove_tree(path: Path) -> None:
    """Delete `path` and everything under it, whatever modes, depth or kinds of file code left
    in it; links are removed, never followed (ratchet.execute.tree_walk)."""
    tree_walk.remove_tree(path)
