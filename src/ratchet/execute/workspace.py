"""Code states: candidates built as git commits, the rules a change must obey, protected files.

A candidate is made without touching any checkout: its parent's tree is read into a private
index, the patch or the new file contents go into that index, and the result is written as a
commit object under `refs/ratchet/<study>/`, so every candidate stays retrievable.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ratchet.errors import PatchRejected
from ratchet.execute.gitrepo import GitError, GitRepo, TreeChange
from ratchet.execute.tree_walk import MAX_DEPTH, TreeError, digests, short, walk
from ratchet.globs import matches_any

# Candidate commits carry a fixed date, so the same change on the same parent is the same
# commit in every clone: a code state is its base commit plus the chain of stored diffs.
CANDIDATE_DATE = "1970-01-01T00:00:00+0000"
SYMLINK_MODE = "120000"
SUBMODULE_MODE = "160000"


@dataclass(frozen=True)
class Candidate:
    commit: str
    parent: str
    diff: str


def change_problems(changes: Iterable[TreeChange], editable: Iterable[str],
                    protected: Iterable[str]) -> list[str]:
    """Why a set of changed paths breaks the workspace rules (empty when it does not)."""
    editable, protected = tuple(editable), tuple(protected)
    problems = []
    for change in changes:
        path, shown = change.path, short(change.path)
        if path.startswith("/") or ".." in path.split("/"):
            problems.append(f"{shown}: outside the repository")
        elif path.count("/") >= MAX_DEPTH and change.status != "D":
            problems.append(f"{shown}: folders nested deeper than {MAX_DEPTH} levels")
        elif SYMLINK_MODE in (change.new_mode,) and change.status != "D":
            problems.append(f"{shown}: symlinks may not be added or changed")
        elif change.new_mode == SUBMODULE_MODE:
            problems.append(f"{shown}: submodules may not be changed")
        elif matches_any(path, protected):
            problems.append(f"{shown}: protected file")
        elif not matches_any(path, editable):
            problems.append(f"{shown}: not editable (allowed: {', '.join(editable)})")
    return problems


def summary(problems: list[str], most: int = 5) -> str:
    """Problems as one line: the first few, and how many more."""
    more = len(problems) - most
    return "; ".join(problems[:most]) + (f"; and {more} more" if more > 0 else "")


def run_failure(exc: Exception) -> tuple[str, str]:
    """The status and one-line reason of a run that failed with `exc` while the driver built,
    checked, evaluated or cleaned up its candidate. Nothing a candidate does may stop the
    driver: a change or a tree ratchet refuses is void, anything else a crash."""
    if isinstance(exc, PatchRejected):
        return "void", f"rejected before running: {one_line(exc)}"
    if isinstance(exc, TreeError):
        return "void", f"the work tree: {one_line(exc)}"
    return "crash", f"ratchet could not handle this candidate: {type(exc).__name__}: " \
        f"{one_line(exc)}"


def one_line(exc: BaseException, most: int = 300) -> str:
    """An exception's message cut to one line (its type's name when it has none)."""
    message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc  # unquoted
    lines = str(message).strip().splitlines()
    text = lines[0].strip() if lines else type(exc).__name__
    return text if len(text) <= most else text[:most - 1] + "…"


def patch_path_problems(patch: str) -> list[str]:
    """Paths in a patch's headers that point outside the tree, before git sees it."""
    problems = []
    for line in patch.splitlines():
        if line.startswith(("--- ", "+++ ", "diff --git ")):
            for token in line.split()[1:]:
                path = token[2:] if token[:2] in ("a/", "b/") else token
                if path == "/dev/null":
                    continue
                if path.startswith("/") or ".." in path.split("/"):
                    problems.append(f"{short(path)}: outside the repository")
    return sorted(set(problems))


class CandidateBuilder:
    """Builds candidate commits for one study from a parent commit plus a change."""

    def __init__(self, repo: GitRepo, study: str, editable: Iterable[str],
                 protected: Iterable[str]) -> None:
        self.repo = repo
        self.study = study
        self.editable = tuple(editable)
        self.protected = tuple(protected)

    def from_patch(self, parent: str, patch: str, message: str,
                   number: int | None = None) -> Candidate:
        problems = patch_path_problems(patch)
        if problems:
            raise PatchRejected(summary(problems))
        if not patch.strip():
            raise PatchRejected("the patch is empty")
        with self._index(parent) as env:
            patch_file = _write_temp(patch if patch.endswith("\n") else patch + "\n")
            try:
                self.repo.git("apply", "--cached", "--whitespace=nowarn", patch_file, env=env)
            except GitError as exc:
                raise PatchRejected(f"the patch does not apply to {parent[:10]}: {exc}") from None
            finally:
                os.unlink(patch_file)
            tree = self.repo.git("write-tree", env=env).strip()
        return self._commit(parent, tree, message, number)

    def from_files(self, parent: str, files: Mapping[str, str], message: str,
                   number: int | None = None) -> Candidate:
        with self._index(parent) as env:
            for path, content in files.items():
                blob = self.repo.git("hash-object", "-w", "--stdin", input=content).strip()
                self.repo.git("update-index", "--add", "--cacheinfo",
                              f"100644,{blob},{path}", env=env)
            tree = self.repo.git("write-tree", env=env).strip()
        return self._commit(parent, tree, message, number)

    def _commit(self, parent: str, tree: str, message: str, number: int | None) -> Candidate:
        """The candidate commit, kept under a ref once it has an experiment's `number`."""
        problems = change_problems(self.repo.changes(parent, tree),
                                   self.editable, self.protected)
        if problems:
            raise PatchRejected(summary(problems))
        commit = self.repo.commit_tree(tree, parent, message or "candidate", CANDIDATE_DATE)
        if number is not None:
            self.repo.update_ref(candidate_ref(self.study, number), commit)
        return Candidate(commit=commit, parent=parent, diff=self.repo.diff(parent, commit))

    def _index(self, parent: str) -> _PrivateIndex:
        return _PrivateIndex(self.repo, parent)


class _PrivateIndex:
    """A temporary git index holding `parent`'s tree, so no checkout is ever touched."""

    def __init__(self, repo: GitRepo, parent: str) -> None:
        self.repo, self.parent = repo, parent

    def __enter__(self) -> dict[str, str]:
        handle, self.path = tempfile.mkstemp(prefix="ratchet-index-")
        os.close(handle)
        os.unlink(self.path)
        env = {"GIT_INDEX_FILE": self.path}
        self.repo.git("read-tree", self.parent, env=env)
        return env

    def __exit__(self, *exc: object) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)


def _write_temp(text: str) -> str:
    handle, path = tempfile.mkstemp(prefix="ratchet-patch-", suffix=".diff")
    with os.fdopen(handle, "w") as f:
        f.write(text)
    return path


def candidate_ref(study: str, number: int) -> str:
    return f"refs/ratchet/{study}/{number}"


def study_branch(study: str) -> str:
    return f"ratchet/{study}"


def protected_digest(root: Path, protected: Iterable[str]) -> dict[str, str]:
    """sha256 of every file under `root` that a protected glob covers (a link stands by its
    target's name)."""
    protected = tuple(protected)
    return tree_digest(root, lambda rel: matches_any(rel, protected))


def tree_digest(root: Path, include: Callable[[str], bool]) -> dict[str, str]:
    """sha256 of every file under `root` (outside .git) whose relative path `include` takes.

    The walk is bounded (depth, entries) and so is what is read (of each file, of all): a
    tree or a file past those bounds is a TreeError, which voids the run that left it
    (`run_failure`). Links stand by their target's name, other non-regular files by their
    kind, a file the driver may not read by its mode and size; files `include` does not take
    are never opened."""
    return digests(entry for entry in walk(root) if include(entry.rel))


def digest_changes(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """Protected paths that were changed, added or removed between two digests."""
    return sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
