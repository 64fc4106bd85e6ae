"""IKD settings: the typed, validated view of the keys declared in :mod:`ikd_yolo.settings`, and ``cfg/ikd.yaml``.

The settings travel as extra keys of the Ultralytics train arguments (``trainer.args``), because that is the only
state Ultralytics' multi-GPU launcher carries into its worker processes (it rebuilds the trainer from
``vars(trainer.args)``) and the only state a resumed run gets back from ``last.pt``. :class:`IKDConfig` is the typed
view of those keys; it is rebuilt from the args wherever it is needed.

``cfg/ikd.yaml`` is the file of defaults users read; it is written from :data:`SETTINGS` by
``python -m ikd_yolo.config > cfg/ikd.yaml`` and a test holds it to the declaration.
"""

from __future__ import annotations

import textwrap
import warnings
from collections.abc import Mapping
from dataclasses import asdict, fields, make_dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import UserError
from .settings import SETTINGS


class IKDSettingError(UserError):
    """An IKD setting has a wrong type or value; the message names the key and the accepted values."""


KEYS: tuple[str, ...] = tuple(SETTINGS)

# Old names still accepted, with a deprecation warning: {old: new}
ALIASES: dict[str, str] = {"adv_step": "adv_step_size"}  # one letter away from adv_steps
# Modes removed because no benchmark gave a reason to use them (benchmarks/HISTORY.md). A removed key is accepted
# only at the behaviour every run now has, {key: that value} (a resumed run's checkpoint carries it), then dropped.
RETIRED_KEYS: dict[str, str] = {
    "kd_labels_mode": "dataset",
    "freq_crop_mode": "window",
    "adv_target": "teacher",
    "freq_stage": "source",
}
RETIRED_CHOICES: dict[str, tuple[str, ...]] = {"adv_match": ("labels", "delta"), "adv_bn": ("joint", "batch")}
REMOVED = "was removed (no benchmark gave a reason to use it: benchmarks/HISTORY.md)"


def resolve_aliases(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """``mapping`` with deprecated keys renamed (a warning for each) and removed keys dropped; refuses an old and a
    new key that disagree, and a removed key set to another behaviour than the one that stays."""
    out = dict(mapping)
    for key, kept in RETIRED_KEYS.items():
        if key in out and str(out.pop(key)) != kept:
            problem = f"IKD setting '{key}={mapping[key]}' {REMOVED}"
            raise IKDSettingError(f"{problem}: drop {key}= (every run has {key}={kept})")
    for old, new in ALIASES.items():
        if old in out:
            value = out.pop(old)
            if new in mapping and mapping[new] != value:
                raise IKDSettingError(f"'{old}={value}' and '{new}={mapping[new]}' disagree: pass only {new}=")
            out[new] = value
            warnings.warn(f"IKD setting '{old}' is deprecated: use '{new}={value}'", DeprecationWarning, stacklevel=3)
            from ultralytics.utils import LOGGER

            LOGGER.warning(f"IKD setting '{old}' is deprecated and will be removed: use {new}={value}")
    return out


def cfg_file(name: str) -> Path:
    """A file of the project's ``cfg/`` folder, installed as the package ``ikd_yolo.cfg``.

    Falls back to the source tree's ``cfg/`` when ``ikd_yolo`` is imported from a checkout that shadows a regular
    (non-editable) install, e.g. ``python run.py`` run from the repository root.
    """
    try:
        return Path(str(resources.files("ikd_yolo.cfg") / name))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[1] / "cfg" / name


def default_settings() -> dict[str, Any]:
    """Defaults of every IKD key, in declaration order."""
    return {k: s.default for k, s in SETTINGS.items()}


def settings_help() -> dict[str, str]:
    """The help text of each key."""
    return {k: s.help for k, s in SETTINGS.items()}


def yaml_value(value: Any) -> str:
    """A default as YAML writes it and reads it back with the same type (PyYAML reads ``1e-05`` as a string)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and "e" in repr(value):
        return f"{value:.12f}".rstrip("0")
    return str(value)


YAML_WIDTH = 120  # longest line of cfg/ikd.yaml; each key's help fits in two comment lines of it


def help_lines(help: str) -> list[str]:
    """A key's help as the comment lines above it in ``cfg/ikd.yaml``, wrapped to :data:`YAML_WIDTH`."""
    return [f"# {line}" for line in textwrap.wrap(help, YAML_WIDTH - 2, break_long_words=False, break_on_hyphens=False)]


def render_yaml() -> str:
    """The text of ``cfg/ikd.yaml``: every key with its default, its help above it and its choices, by section."""
    lines = [
        "# IKD settings: defaults for every key that ikd_yolo adds to Ultralytics' train arguments.",
        "# Override on the command line (python run.py adv_steps=2) or from Python (IKDTrainer(overrides={...})).",
        "# Written from ikd_yolo/settings.py (python -m ikd_yolo.config > cfg/ikd.yaml): edit the declaration there.",
        "# Each key's help is the comment above it; docs/recipe.md (kd_*) and docs/ikd.md (freq_*, adv_*) say more.",
    ]
    section = None
    for key, s in SETTINGS.items():
        if s.section != section:
            section = s.section
            lines += ["", f"# --- {section} ---"]
        value = yaml_value(s.default)
        accepted = f"  # one of: {', '.join(s.choices)}" if s.choices else ""
        lines += ["", *help_lines(s.help), f"{key}: {value}{accepted}"]
    return "\n".join(lines) + "\n"


def _check(key: str, value: Any) -> Any:
    """Return ``value`` converted to the key's type, or raise IKDSettingError naming the key."""
    s = SETTINGS[key]
    kind = s.kind
    if kind is bool:
        if isinstance(value, str) and value.lower() in {"true", "false"}:
            value = value.lower() == "true"
        if not isinstance(value, bool):
            raise IKDSettingError(f"IKD setting '{key}={value!r}' must be True or False, e.g. {key}=False")
        return value
    if kind in (int, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if kind is int and ok and float(value) != int(value):
            ok = False
        if not ok:
            article = "an" if kind is int else "a"
            raise IKDSettingError(
                f"IKD setting '{key}={value!r}' must be {article} {kind.__name__}, e.g. {key}={s.default}"
            )
        value = kind(value)
        if not s.low <= value <= s.high:
            raise IKDSettingError(
                f"IKD setting '{key}={value}' is out of range: use a value in [{kind(s.low)}, {kind(s.high)}]"
            )
        return value
    value = str(value)
    if value not in s.choices:
        problem = REMOVED if value in RETIRED_CHOICES.get(key, ()) else "is not supported"
        raise IKDSettingError(f"IKD setting '{key}={value}' {problem}: use one of {', '.join(s.choices)}")
    return value


class _ConfigMethods:
    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None = None):
        """Defaults updated with the IKD keys found in ``mapping`` (other keys are ignored), validated."""
        values = default_settings()
        if mapping:
            if any(old in mapping for old in (*ALIASES, *RETIRED_KEYS)):  # else nothing to rename, drop or warn of
                mapping = resolve_aliases(mapping)
            values.update({k: v for k, v in mapping.items() if k in values})
        out = cls(**{k: _check(k, v) for k, v in values.items()})
        if out.kd_label_new_iou > out.kd_label_iou:  # a detection would refine a label and be added beside it
            raise IKDSettingError(
                f"IKD setting 'kd_label_new_iou={out.kd_label_new_iou}' is above 'kd_label_iou={out.kd_label_iou}': "
                "a detection would both refine a label and be added beside it; keep kd_label_new_iou <= kd_label_iou"
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the settings, in declaration order."""
        return asdict(self)


IKDConfig = make_dataclass(
    "IKDConfig",
    [(k, s.kind) for k, s in SETTINGS.items()],
    bases=(_ConfigMethods,),
    frozen=True,
    namespace={"__doc__": "Validated IKD settings (one field per key of SETTINGS). Build with from_mapping."},
)
IKDConfig.__module__ = __name__

assert tuple(f.name for f in fields(IKDConfig)) == KEYS

if __name__ == "__main__":
    print(render_yaml(), end="")
