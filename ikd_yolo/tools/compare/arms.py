"""The arms of a comparison: what each one trains, parsed from ``arms=``.

Built-in arms (every one from the same initial weights, for the same epochs):

- ``none``: plain Ultralytics training, no teacher;
- ``native``: Ultralytics' own distillation (``distill_model=`` the teacher, at its default ``dis`` unless set);
- ``kd``: this project's recipe with both IKD mechanisms off (``freq_aug=False adv_aug=False``);
- ``ikd``: the recipe at its defaults, both IKD mechanisms on;
- ``kd+freq`` and ``kd+adv``: the recipe with one IKD mechanism each;
- ``none+freq``: the frequency augmentation alone, with no teacher term at all (no refined labels, no soft or
  adversarial term): what IKD's augmentation does as augmentation, apart from what the teacher adds.

An entry ``NAME:key=value:key=value`` changes settings. When ``NAME`` is a built-in arm, the settings change that
arm and the entry is named by its whole text (``native:dis=1``); otherwise it is a new arm named ``NAME`` whose
base is ``ikd``, or the built-in arm given by ``base=`` (``ikd_fast:adv_steps=1``, ``n1:base=native:dis=1``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ultralytics.cfg import smart_value
from ultralytics.utils import DEFAULT_CFG_DICT

from ...config import KEYS, IKDConfig
from ...errors import UserError

IKD_OFF = {"freq_aug": False, "adv_aug": False}
NO_TEACHER_TERM = {"kd_labels": 0.0, "kd_loss": "none", "kd_cls_weight": 0.0, "kd_dfl_weight": 0.0, "adv_aug": False}
# name -> (trainer, settings): "plain" is Ultralytics' own trainer (with distill_model= for native), "ikd" IKDTrainer
BUILTIN: dict[str, tuple[str, dict[str, Any]]] = {
    "none": ("plain", {}),
    "native": ("plain", {}),
    "kd": ("ikd", IKD_OFF),
    "ikd": ("ikd", {}),
    "kd+freq": ("ikd", {"adv_aug": False}),
    "kd+adv": ("ikd", {"freq_aug": False}),
    "none+freq": ("ikd", {**NO_TEACHER_TERM, "freq_aug": True}),
}
DEFAULT_ARMS = "none,native,kd,ikd"
ARM_HELP = "arms=none,native,kd,ikd (also kd+freq, kd+adv, none+freq, NAME:key=value:...)"


@dataclass(frozen=True)
class Arm:
    """One arm: its name, the built-in arm it starts from, and the settings it changes."""

    name: str
    base: str
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def trainer(self) -> str:
        """``plain`` (Ultralytics' trainer) or ``ikd`` (IKDTrainer)."""
        return BUILTIN[self.base][0]

    @property
    def uses_teacher(self) -> bool:
        return self.base != "none"

    @property
    def folder(self) -> str:
        """A file-name-safe form of the name, for run folders."""
        return re.sub(r"[^A-Za-z0-9_.+-]+", "_", self.name).strip("_")

    def overrides(self, teacher: str | None) -> dict[str, Any]:
        """The train arguments this arm adds to the comparison's common ones."""
        out = {**BUILTIN[self.base][1], **self.settings}
        if self.base == "native":
            out["distill_model"] = teacher
        elif self.trainer == "ikd":
            out["teacher"] = teacher
        return out


def _setting(entry: str, token: str, trainer: str) -> tuple[str, Any]:
    key, sep, raw = token.partition("=")
    if not sep or not key or not raw:
        raise UserError(f"arms= entry '{entry}': '{token}' is not key=value (e.g. ikd_fast:adv_steps=1); {ARM_HELP}")
    if key in KEYS:
        if trainer != "ikd":
            raise UserError(f"arms= entry '{entry}': {key} is an IKD setting, which only kd and ikd arms take")
        return key, smart_value(raw)
    if key in DEFAULT_CFG_DICT and key not in {"data", "model", "seed", "project", "name", "device"}:
        return key, smart_value(raw)
    raise UserError(f"arms= entry '{entry}': unknown or per-comparison key '{key}' (an IKD key or a train argument)")


def parse_arm(entry: str) -> Arm:
    """One ``arms=`` entry as an :class:`Arm`; a bad entry raises a one-line :class:`UserError`."""
    name, *tokens = entry.strip().split(":")
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+", name or ""):
        raise UserError(f"arms= entry '{entry}': name it with letters, digits, _ . + or - ({ARM_HELP})")
    pairs = [t.partition("=") for t in tokens]
    base = next((v for k, _, v in pairs if k == "base"), name if name in BUILTIN else "ikd")
    if base not in BUILTIN:
        raise UserError(f"arms= entry '{entry}': base={base} is not a built-in arm ({', '.join(BUILTIN)})")
    if name not in BUILTIN and not tokens:
        raise UserError(f"arms= entry '{entry}' is not a built-in arm ({', '.join(BUILTIN)}); {ARM_HELP}")
    settings = dict(_setting(entry, t, BUILTIN[base][0]) for t in tokens if not t.startswith("base="))
    if BUILTIN[base][0] == "ikd":
        IKDConfig.from_mapping({**BUILTIN[base][1], **settings})  # a bad value: one line now, not after training
    return Arm(entry.strip() if name in BUILTIN and tokens else name, base, settings)


def parse_arms(value: Any) -> list[Arm]:
    """The ``arms=`` value (comma-separated entries, or a list) as arms; duplicate names are refused."""
    value = "none" if value is None else value  # the key=value parser reads a lone arms=none as None
    entries = value if isinstance(value, (list, tuple)) else str(value).split(",")
    arms = [parse_arm(str(e)) for e in entries if str(e).strip()]
    if not arms:
        raise UserError(f"arms= is empty: {ARM_HELP}")
    names = [a.folder for a in arms]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UserError(f"arms= names {', '.join(twice)} more than once: give each arm its own name")
    return arms
