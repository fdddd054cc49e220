"""The errors ratchet reports to a user as one line, and the exit codes they map to."""


class RatchetError(Exception):
    """A problem the user can fix; the CLI prints it as one line."""

    exit_code = 1


class UsageError(RatchetError):
    """A bad command line, task file, storage URL or input: exit code 2."""

    exit_code = 2


class ConfigError(UsageError):
    """A mistake in the task file."""


class PatchRejected(RatchetError):
    """A proposed change breaks the workspace rules; the experiment is voided, not run."""
