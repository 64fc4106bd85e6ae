"""IKD settings: one validated object whose defaults live in ``cfg/ikd.yaml``.

The settings travel as extra keys of the Ultralytics train arguments (``trainer.args``), because that is the only
state Ultralytics' multi-GPU launcher carries into its worker processes (it rebuilds the trainer from
``vars(trainer.args)``) and the only state a resumed run gets back from ``last.pt``. :class:`IKDConfig` is the typed
view of those keys; it is rebuilt from the args wherever it is needed.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml


class IKDSettingError(ValueError):
    """An IKD setting has a wrong type or value; the message names the key and the accepted values."""


def cfg_file(name: str) -> Path:
    """A file of the project's ``cfg/`` folder, installed as the package ``ikd_yolo.cfg``.

    Falls back to the source tree's ``cfg/`` when ``ikd_yolo`` is imported from a checkout that shadows a regular
    (non-editable) install, e.g. ``python run.py`` run from the repository root.
    """
    try:
        return Path(str(resources.files("ikd_yolo.cfg") / name))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[1] / "cfg" / name


def _yaml_text() -> str:
    return cfg_file("ikd.yaml").read_text()


def default_settings() -> dict[str, Any]:
    """Defaults of every IKD key, read from ``cfg/ikd.yaml``."""
    return yaml.safe_load(_yaml_text())


def settings_help() -> dict[str, str]:
    """The comment of each key in ``cfg/ikd.yaml``: the one place the keys are described."""
    out = {}
    for line in _yaml_text().splitlines():
        m = re.match(r"^(\w+):\s*([^#]*?)\s*#\s*(.*)$", line)
        if m:
            out[m.group(1)] = m.group(3)
    return out


# Accepted values per key: a type plus an inclusive numeric range or a set of choices.
_RULES: dict[str, tuple[type, Any]] = {
    "kd_loss": (str, ("native", "cwd", "mgd", "fgd")),
    "kd_cwd_tau": (float, (1e-3, 100.0)),
    "kd_cwd_weight": (float, (0.0, 1e6)),
    "kd_mgd_alpha": (float, (0.0, 1e6)),
    "kd_mgd_lambda": (float, (0.0, 0.99)),
    "kd_fgd_temp": (float, (1e-3, 100.0)),
    "kd_fgd_alpha": (float, (0.0, 1e6)),
    "kd_fgd_beta": (float, (0.0, 1e6)),
    "kd_fgd_gamma": (float, (0.0, 1e6)),
    "kd_fgd_lambda": (float, (0.0, 1e6)),
    "freq_aug": (bool, None),
    "freq_small_area": (float, (0.0, 1.0)),
    "freq_noise_p": (float, (0.0, 1.0)),
    "freq_noise_sigma": (float, (0.0, 1.0)),
    "freq_crop_p": (float, (0.0, 1.0)),
    "freq_crop_min_side": (float, (0.1, 1.0)),
    "adv_aug": (bool, None),
    "adv_weight": (float, (0.0, 1e6)),
    "adv_loss": (str, ("mse", "l1", "cwd")),
    "adv_cwd_tau": (float, (1e-3, 100.0)),
    "adv_eps": (float, (0.0, 255.0)),
    "adv_step": (float, (0.0, 255.0)),
    "adv_steps": (int, (0, 100)),
    "adv_decay": (float, (0.0, 10.0)),
    "adv_di_prob": (float, (0.0, 1.0)),
    "adv_di_rate": (float, (0.1, 1.0)),
    "adv_batch_frac": (float, (0.01, 1.0)),
    "adv_epochs": (float, (0.0, 1.0)),
}


def _check(key: str, value: Any) -> Any:
    """Return ``value`` converted to the key's type, or raise IKDSettingError naming the key."""
    kind, rule = _RULES[key]
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
            example = default_settings()[key]
            raise IKDSettingError(f"IKD setting '{key}={value!r}' must be {'an' if kind is int else 'a'} {kind.__name__}, e.g. {key}={example}")
        value = kind(value)
        lo, hi = rule
        if not lo <= value <= hi:
            raise IKDSettingError(f"IKD setting '{key}={value}' is out of range: use a value in [{lo}, {hi}]")
        return value
    value = str(value)
    if value not in rule:
        raise IKDSettingError(f"IKD setting '{key}={value}' is not supported: use one of {', '.join(rule)}")
    return value


@dataclass(frozen=True)
class IKDConfig:
    """Validated IKD settings. Build with :meth:`from_mapping`; see ``cfg/ikd.yaml`` for each key's meaning."""

    kd_loss: str
    kd_cwd_tau: float
    kd_cwd_weight: float
    kd_mgd_alpha: float
    kd_mgd_lambda: float
    kd_fgd_temp: float
    kd_fgd_alpha: float
    kd_fgd_beta: float
    kd_fgd_gamma: float
    kd_fgd_lambda: float
    freq_aug: bool
    freq_small_area: float
    freq_noise_p: float
    freq_noise_sigma: float
    freq_crop_p: float
    freq_crop_min_side: float
    adv_aug: bool
    adv_weight: float
    adv_loss: str
    adv_cwd_tau: float
    adv_eps: float
    adv_step: float
    adv_steps: int
    adv_decay: float
    adv_di_prob: float
    adv_di_rate: float
    adv_batch_frac: float
    adv_epochs: float

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None = None) -> IKDConfig:
        """Defaults from ``cfg/ikd.yaml`` updated with the IKD keys found in ``mapping`` (other keys are ignored)."""
        values = default_settings()
        if mapping:
            values.update({k: v for k, v in mapping.items() if k in values})
        return cls(**{k: _check(k, v) for k, v in values.items()})

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the settings, in declaration order."""
        return asdict(self)


KEYS: tuple[str, ...] = tuple(f.name for f in fields(IKDConfig))
