"""The ``key=value`` parser every subcommand shares (train, compare, probe), in a module of its own so that the tools
need not import the command line."""

from __future__ import annotations

import difflib

from ultralytics.cfg import parse_key_value_pair
from ultralytics.utils import DEFAULT_CFG_DICT

from .config import ALIASES, KEYS, RETIRED_KEYS, default_settings
from .errors import UserError

EXTRA_KEYS = ("teacher", "export")  # run.py's own keys besides Ultralytics' and the IKD settings
TRAIN_KEYS = set(DEFAULT_CFG_DICT) | set(KEYS) | set(ALIASES) | set(RETIRED_KEYS) | set(EXTRA_KEYS)
EXAMPLES = {"data": "data=my_data.yaml", "model": "model=yolo11n.yaml", "teacher": "teacher=teacher.pt"}


def parse_args(argv: list[str], known=None, command: str = "run.py") -> dict:
    """Turn ``key=value`` tokens into an overrides dict; an unknown key, an empty value or a bare word is refused.

    ``known``: the accepted keys (default: Ultralytics' train arguments, the IKD settings and run.py's own keys).
    """
    overrides = {}
    known = set(known) if known is not None else TRAIN_KEYS
    helps = "python run.py --help" if command == "run.py" else f"python run.py {command} --help"
    for token in argv:
        if "=" not in token or token.startswith("="):
            raise UserError(f"argument '{token}' is not key=value (e.g. epochs=100). See {helps}")
        key, _, raw = token.partition("=")
        key = key.strip()
        check_key(key, known, f"unknown argument '{key}'", helps)
        if not raw.strip():
            default = {**DEFAULT_CFG_DICT, **default_settings()}.get(key)
            example = EXAMPLES.get(key) or f"{key}={'VALUE' if default in (None, '') else default}"
            raise UserError(f"{key}= is empty: give it a value, e.g. {example}")
        key, value = parse_key_value_pair(token)
        overrides[key] = value
    return overrides


def check_key(key: str, known, problem: str, helps: str = "python run.py --help") -> None:
    """Refuse a key that is not in ``known``, naming the closest one (never an old name: ``adv_stepz`` means
    ``adv_steps``, not the alias ``adv_step``)."""
    if key not in known:
        current = sorted(set(known) - set(ALIASES) - set(RETIRED_KEYS))
        close = difflib.get_close_matches(key, current, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}=? " if close else ""
        raise UserError(f"{problem}: {hint}({helps} lists the keys)")
