"""The one error path for user mistakes: every bad input becomes one line naming the problem and the fix.

:class:`UserError` is raised by ikd_yolo's own checks (settings, teacher, arguments, files). What Ultralytics raises
while it reads one of the user's inputs (the data yaml, the argument values, a model or teacher file) is caught by
kind inside :func:`reading`, which names that input and the fix; a few kinds that only a user's input or machine
causes (a missing file, a folder without write permission, an unknown argument, a missing GPU) are translated
wherever they come from by :func:`user_message`. Any other exception is a bug and keeps its traceback.
``run.py`` prints the line and exits with code 2 (130 for Ctrl-C: :class:`Interrupted`); ``IKD_DEBUG=1`` shows the
traceback instead.
"""

from __future__ import annotations

import contextlib
import errno
import pickle
import re

import yaml


class UserError(ValueError):
    """A user input cannot be used; the message says which input, why, and how to fix it, on one line."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run; the message says where the run stopped and how to go on."""


# What Ultralytics raises, as it reads a user's input, when that input is wrong: a value or type it refuses
# (ValueError, TypeError, AssertionError), a data yaml it cannot use (SyntaxError, KeyError, yaml.YAMLError), a file
# that is missing, unreadable or not a checkpoint (OSError, EOFError, UnpicklingError), or a dataset without a
# usable image (RuntimeError). Only inside reading() are these taken for the input's fault.
INPUT_ERRORS = (
    ValueError,
    TypeError,
    SyntaxError,
    AssertionError,
    KeyError,
    OSError,
    EOFError,
    RuntimeError,
    pickle.UnpicklingError,
    yaml.YAMLError,
)


def first_line(text) -> str:
    """The first non-empty line of ``text``, without terminal colour codes."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(text))
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")


def problem(e: BaseException) -> str:
    """What went wrong, on one line: the exception's first line without Ultralytics' emoji and 'ERROR' prefix, with
    the line and column of a yaml syntax error (given on the lines after the first)."""
    text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    if isinstance(e, KeyError) and text and " " not in text:  # a bare key name: the key the input lacks
        text = f"missing key '{text}'"
    line = re.sub(r"^ERROR\s*|[❌️⚠✅]", "", first_line(text)).strip()
    where = re.search(r"line \d+, column \d+", text)
    if where and where.group(0) not in line:
        line = f"{line.rstrip(':')} ({where.group(0)})"
    return re.sub(r"\s+", " ", line).rstrip(". ") or type(e).__name__


@contextlib.contextmanager
def reading(what: str, fix: str, error: type[UserError] = UserError, missing: str | None = None):
    """Around the code that reads one user input (``what``, e.g. ``data=my.yaml``): an exception of a kind in
    ``INPUT_ERRORS`` becomes ``error`` (a UserError) ``"{what}: {problem}: {fix}"`` (``missing``: the fix for a
    FileNotFoundError), chained to the original (shown with ``IKD_DEBUG=1``)."""
    try:
        yield
    except UserError:
        raise
    except INPUT_ERRORS as e:
        fix = missing if missing and isinstance(e, FileNotFoundError) else fix
        detail, name = problem(e), what.partition("=")[2]
        if name and detail.startswith(name) and detail[len(name) :].strip(" :"):  # Ultralytics' line names it too
            raise error(f"{what} {detail[len(name) :].lstrip(' :')}: {fix}") from e
        raise error(f"{what}: {detail}: {fix}") from e


def user_message(e: BaseException) -> str | None:
    """One line for an exception caused by user input, or None for anything else (a bug: keep the traceback)."""
    if isinstance(e, UserError):
        return " ".join(first_line(ln) for ln in str(e).splitlines() if ln.strip())
    if isinstance(e, FileNotFoundError):
        msg = first_line(e) or str(e.filename)
        return f"{msg.rstrip('.')}: check the path given in data=, model= or teacher= (or in the data yaml)"
    if isinstance(e, PermissionError) or (isinstance(e, OSError) and e.errno == errno.EROFS):
        where = e.filename or first_line(e)
        return (
            f"{where}: {e.strerror or 'permission denied'}: write the run to a folder you can write to "
            "(project=FOLDER), and give data and weights you can read"
        )
    if isinstance(e, SyntaxError) and "is not a valid YOLO argument" in str(e):
        return f"{first_line(e)} See python run.py --help"
    if isinstance(e, ValueError) and re.match(r"Invalid (CUDA|NPU) 'device=", first_line(e)):
        return first_line(e)  # Ultralytics' select_device: e.g. device=0 on a machine without a GPU
    return None
