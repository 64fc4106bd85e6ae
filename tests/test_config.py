"""IKD settings: one declaration, cfg/ikd.yaml held to it, errors that name the key, --help lists every key."""

import pytest
import yaml

from ikd_yolo.cli import help_text, main
from ikd_yolo.config import (
    KEYS,
    SETTINGS,
    IKDConfig,
    IKDSettingError,
    cfg_file,
    default_settings,
    help_lines,
    render_yaml,
)
from ikd_yolo.kd_losses import FEATURE_LOSSES, KD_LOSSES


def test_cfg_yaml_is_the_declaration():
    """cfg/ikd.yaml is what users read: it must say exactly what config.SETTINGS declares (regenerate it if not)."""
    text = cfg_file("ikd.yaml").read_text()
    assert text == render_yaml(), "cfg/ikd.yaml is stale: python -m ikd_yolo.config > cfg/ikd.yaml"
    assert yaml.safe_load(text) == default_settings()  # same values and types once read back
    too_long = [n for n, line in enumerate(text.splitlines(), 1) if len(line) > 120]
    assert not too_long, f"cfg/ikd.yaml lines over 120 characters: {too_long}"
    for key, s in SETTINGS.items():  # a help says what the key does in at most two lines of the yaml
        assert 1 <= len(help_lines(s.help)) <= 2, key
    cfg = IKDConfig.from_mapping()
    assert cfg.to_dict() == default_settings() and tuple(cfg.to_dict()) == KEYS
    assert all(s.help for s in SETTINGS.values())
    assert SETTINGS["kd_loss"].choices == KD_LOSSES and SETTINGS["adv_loss"].choices == ("base", *FEATURE_LOSSES)
    for key, s in SETTINGS.items():  # every numeric key has a range that holds its default
        if s.kind in (int, float):
            assert s.low <= s.default <= s.high, key


def test_kd_loss_choices_and_keys():
    cfg = IKDConfig.from_mapping({"kd_loss": "fgd", "kd_fgd_temp": 1, "kd_mgd_lambda": 0.5})
    assert cfg.kd_loss == "fgd" and cfg.kd_fgd_temp == 1.0 and isinstance(cfg.kd_fgd_temp, float)
    for name in ("native", "pkd", "cwd", "mgd", "fgd"):
        assert IKDConfig.from_mapping({"kd_loss": name}).kd_loss == name


def test_overrides_and_unrelated_keys():
    cfg = IKDConfig.from_mapping({"adv_steps": 3, "freq_aug": "false", "epochs": 7})
    assert cfg.adv_steps == 3 and cfg.freq_aug is False


@pytest.mark.parametrize(
    "key, value, words",
    [
        ("adv_steps", 1.5, "must be an int"),
        ("adv_eps", -1, "out of range"),
        ("adv_loss", "kl", "base, mse, l1, cwd, pkd"),
        ("freq_aug", "yes", "True or False"),
        ("kd_loss", "fitnet", "pkd, cwd, native, mgd, fgd"),
        ("kd_balance", -0.1, "out of range"),
        ("kd_balance_batches", 0, "[1, 1000]"),
        ("kd_final_scale", 1.5, "[0.0, 1.0]"),
        ("kd_cls_weight", "x", "must be a float"),
        ("kd_close_mosaic_off", "no", "True or False"),
        ("kd_cwd_tau", 0.0, "out of range"),
        ("kd_cwd_weight", "big", "must be a float"),
        ("kd_mgd_alpha", -1e-4, "out of range"),
        ("kd_mgd_lambda", 1.0, "[0.0, 0.99]"),
        ("kd_fgd_temp", 0, "out of range"),
        ("kd_fgd_alpha", -1, "out of range"),
        ("kd_fgd_beta", True, "must be a float"),
        ("kd_fgd_gamma", -0.1, "out of range"),
        ("kd_fgd_lambda", "x", "must be a float"),
        ("freq_noise_p", 2.0, "[0.0, 1.0]"),
        ("kd_label_new_iou", 0.6, "keep kd_label_new_iou <= kd_label_iou"),
    ],
)
def test_bad_values_name_the_key_and_the_fix(key, value, words):
    with pytest.raises(IKDSettingError) as e:
        IKDConfig.from_mapping({key: value})
    assert f"'{key}=" in str(e.value) and words in str(e.value)


def test_help_lists_every_ikd_key_with_its_default(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for key, value in default_settings().items():
        assert f"{key}={value}" in out
    assert out.strip() == help_text().strip()


def test_version_names_the_package_and_its_stack(capsys):
    """--version prints the installed package's version (pyproject's, the same as ikd_yolo.__version__)."""
    from importlib.metadata import version

    from ikd_yolo import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith(f"ikd_yolo {__version__} (ultralytics ")
    assert version("ikd_yolo") == __version__


def test_cli_rejects_tokens_that_are_not_key_value(capsys):
    assert main(["data", "x.yaml"]) == 2
    assert "not key=value" in capsys.readouterr().err


def test_renamed_key_is_still_accepted_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning, match="adv_step_size=3"):
        cfg = IKDConfig.from_mapping({"adv_step": 3})
    assert cfg.adv_step_size == 3.0 and "adv_step" not in cfg.to_dict()
    with pytest.raises(IKDSettingError, match="disagree"):
        IKDConfig.from_mapping({"adv_step": 3, "adv_step_size": 4})
    from ikd_yolo.cli import parse_args

    assert parse_args(["adv_step=3"]) == {"adv_step": 3}  # the CLI accepts it; the trainer renames it


def test_a_removed_key_is_dropped_at_the_behaviour_that_stays_and_refused_at_another():
    from ikd_yolo.cli import parse_args

    # what a checkpoint made before their removal carries
    kept = {"kd_labels_mode": "dataset", "freq_crop_mode": "window", "adv_target": "teacher", "freq_stage": "source"}
    assert IKDConfig.from_mapping(kept) == IKDConfig.from_mapping({}) and parse_args(["kd_labels_mode=dataset"])
    with pytest.raises(IKDSettingError, match="'kd_labels_mode=batch' was removed .*: drop kd_labels_mode="):
        IKDConfig.from_mapping({"kd_labels_mode": "batch"})
    with pytest.raises(IKDSettingError, match="'freq_crop_mode=zoom' was removed"):
        IKDConfig.from_mapping({"freq_crop_mode": "zoom"})
    for key, value in (("adv_target", "gap"), ("freq_stage", "sample")):
        expected = f"'{key}={value}' was removed .*: drop {key}= \\(every run has {key}={kept[key]}\\)"
        with pytest.raises(IKDSettingError, match=expected):
            IKDConfig.from_mapping({key: value})


def test_attack_step_and_adversarial_loss_follow_their_sources():
    from ikd_yolo.model import adv_loss_name, attack_step

    def cfg(**kw):
        return IKDConfig.from_mapping(kw)

    assert attack_step(cfg(adv_step_size=0, adv_eps=8, adv_steps=2)) == 4.0  # reaches the bound
    assert attack_step(cfg(adv_step_size=1.5, adv_eps=8, adv_steps=2)) == 1.5
    assert adv_loss_name(cfg(adv_loss="base", kd_loss="pkd")) == "pkd"
    assert adv_loss_name(cfg(adv_loss="base", kd_loss="cwd")) == "cwd"
    assert adv_loss_name(cfg(adv_loss="base", kd_loss="native")) == "mse"
    assert adv_loss_name(cfg(adv_loss="l1", kd_loss="pkd")) == "l1"


def test_every_frequency_value_the_config_accepts_builds_the_transform():
    """The config's ranges are the transform's: a value accepted before training is not refused after the models
    are built (freq_small_area=0 once passed the config and failed in the transform)."""
    from ikd_yolo.frequency import build_transform
    from ikd_yolo.settings import _FREQ

    with pytest.raises(IKDSettingError, match="freq_small_area"):
        IKDConfig.from_mapping({"freq_small_area": 0})
    for key, s in SETTINGS.items():
        if s.section == _FREQ and s.low is not None:
            for value in (s.low, s.high):
                build_transform(IKDConfig.from_mapping({key: value}))
