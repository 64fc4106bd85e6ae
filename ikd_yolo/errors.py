"""The one error path for user mistakes: every bad input becomes one line naming the problem and the fix.

:class:`UserError` is raised by ikd_yolo's own checks (settings, teacher, arguments, files). Mistakes that
Ultralytics detects on a user's input (a missing file, an unknown argument) are translated by :func:`user_message`.
``run.py`` prints that line and exits with code 2; ``IKD_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import re


class UserError(ValueError):
    """A user input cannot be used; the message says which input, why, and how to fix it, on one line."""


def first_line(text: str) -> str:
    """The first non-empty line of ``text``, without terminal colour codes."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(text))
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")


def user_message(e: BaseException) -> str | None:
    """One line for an exception caused by user input, or None for anything else (a bug: keep the traceback)."""
    if isinstance(e, UserError):
        return " ".join(first_line(ln) for ln in str(e).splitlines() if ln.strip())
    if isinstance(e, FileNotFoundError):
        msg = first_line(e) or str(e.filename)
        return f"{msg.rstrip('.')}: check the path given in data=, model= or teacher= (or in the data yaml)"
    if isinstance(e, SyntaxError) and "is not a valid YOLO argument" in str(e):
        return f"{first_line(e)} See python run.py --help"
    if isinstance(e, ValueError) and re.match(r"Invalid (CUDA|NPU) 'device=", first_line(e)):
        return first_line(e)  # Ultralytics' select_device: e.g. device=0 on a machine without a GPU
    return None
