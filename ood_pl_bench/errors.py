"""User-facing errors: one clear message and an exit code, never a traceback."""

from __future__ import annotations


class OodplError(Exception):
    """An error the user can fix (bad flag, missing data, malformed file).

    The CLI prints ``message`` on one line and exits with ``exit_code``.
    """

    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(OodplError):
    """A bad flag, option value or name (exit code 2, as for CLI usage errors)."""

    exit_code = 2


class DataError(OodplError):
    """Raw or built data is missing or malformed (exit code 3)."""

    exit_code = 3


class ModelError(OodplError):
    """A model cannot be resolved or loaded (exit code 4)."""

    exit_code = 4


class SubmissionError(OodplError):
    """A results file or submission does not validate (exit code 5)."""

    exit_code = 5


class JudgeError(OodplError):
    """A judge is unreachable or misconfigured after retries (exit code 6)."""

    exit_code = 6
