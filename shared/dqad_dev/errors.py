"""Mistakes a user can fix, as one line that names the thing and says what to do.

Every ``dqad`` command runs under :func:`run_command`: an expected failure (a missing file, a
column the source does not have, a timestamp that is not one, a database that does not answer, a
misspelt name) ends with ``dqad <command>: <message>`` on stderr and exit code 2, never a
traceback; ``--debug`` shows the traceback for the rare case where the line is not enough.
Unexpected errors keep their traceback: they are bugs, and hiding them would make them harder to
report.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable, Iterable
from typing import TextIO

#: Exit code of a command that stopped on a user's mistake (argparse uses 2 for bad usage too).
USAGE_ERROR = 2


class UserError(Exception):
    """A failure the user can act on; the message is shown as is, on one line."""


def did_you_mean(word: str, choices: Iterable[str], *, what: str = "") -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, else the list of choices (short)."""
    options = sorted({str(c) for c in choices})
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    if not options:
        return ""
    shown = ", ".join(options[:8]) + (", …" if len(options) > 8 else "")
    return f" ({what or 'expected one of'}: {shown})"


def _psycopg_line(exc: BaseException) -> str | None:
    """A psycopg error as its first line (the server's message), or None when it is not one."""
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return None
    if not isinstance(exc, psycopg.Error):
        return None
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, psycopg.OperationalError):
        return f"cannot reach the database: {first} (check the DSN, and that the server is running)"
    if isinstance(exc, psycopg.errors.UndefinedTable):
        return f"{first}: is dqad installed in this database? (see README, 'Start the chain from a real INSERT')"
    return f"database error: {first}"


def describe(exc: BaseException) -> str | None:
    """The one-line message for an expected failure, or None for a bug (which keeps its traceback)."""
    from dqad.datasets import DatasetConfigError
    from dqad.settings import SettingsError

    if isinstance(exc, UserError | DatasetConfigError | SettingsError):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        name = exc.filename or str(exc)
        return f"no such file: {name} (check the path)"
    if isinstance(exc, IsADirectoryError | NotADirectoryError | PermissionError):
        return f"cannot read {exc.filename}: {exc.strerror}"
    return _psycopg_line(exc)


def run_command(func: Callable[[], int], command: str, *, debug: bool = False, err: TextIO | None = None) -> int:
    """Run one command; an expected failure becomes one line on stderr and exit code 2."""
    stream = err or sys.stderr
    try:
        return int(func() or 0)
    except KeyboardInterrupt:
        print(f"dqad {command}: interrupted", file=stream)
        return 130
    except BrokenPipeError:  # `dqad run | head`: the reader left; Python's own exit flush must not fail too
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:
        message = describe(exc)
        if message is None or debug:
            raise
        line = " ".join(message.split())  # one line, whatever the underlying library printed
        print(f"dqad {command}: {line}", file=stream)
        return USAGE_ERROR
