"""The ``adv_match`` modes (:mod:`ikd_yolo.adv_match`): one object per setting value, each mode's term on small
tensors, and a wrapper that keeps nothing of the step."""

import pytest
import torch

from ikd_yolo.adv_match import MODES, make
from ikd_yolo.config import IKDConfig, IKDSettingError
from ikd_yolo.kd_losses import feature_loss
from ikd_yolo.response_kd import bckd_loss, ld_loss
from ikd_yolo.settings import SETTINGS

from . import helpers
from .helpers import det_batch

REG_MAX, NC, ANCHORS = 4, 3, 10


def mode(name, same_reg_max=True, **ikd):
    return make(IKDConfig.from_mapping({"adv_match": name, **ikd}), same_reg_max)


def head(seed, bins=REG_MAX):
    g = torch.Generator().manual_seed(seed)
    return {"boxes": torch.randn(2, 4 * bins, ANCHORS, generator=g), "scores": torch.randn(2, NC, ANCHORS, generator=g)}


def feats(seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 8, 4, 4, generator=g), torch.randn(2, 16, 2, 2, generator=g)]


def hooked(student_head, teacher_head, students=None, teachers=None):
    """What the wrapper's ``pop_features`` gives: projected features of both networks, then both Detect outputs."""
    return (students or feats(0), teachers or feats(0), student_head, teacher_head)


def test_every_setting_value_has_its_mode_and_no_other_value_is_admitted():
    assert set(MODES) == set(SETTINGS["adv_match"].choices) == {"response", "features"}
    for name, cls in MODES.items():
        assert type(mode(name)) is cls
    with pytest.raises(IKDSettingError, match="adv_match"):
        IKDConfig.from_mapping({"adv_match": "teacher"})


@pytest.mark.parametrize("removed", ["labels", "delta"])
def test_a_removed_mode_is_refused_with_where_its_results_are(removed):
    with pytest.raises(IKDSettingError, match=f"adv_match={removed}' was removed .*HISTORY.md.*response, features"):
        IKDConfig.from_mapping({"adv_match": removed})


def test_response_is_bckd_and_ld_zero_for_equal_heads():
    response = mode("response")
    student, teacher = head(1), head(2)
    assert response.loss(hooked(teacher, teacher)).item() == pytest.approx(0.0, abs=1e-6)
    expected = bckd_loss(student["scores"], teacher["scores"]) + ld_loss(
        student["boxes"], teacher["boxes"], teacher["scores"]
    )
    assert response.loss(hooked(student, teacher)).item() == pytest.approx(expected.item(), rel=1e-6) and expected > 0


def test_response_without_comparable_dfl_bins_is_bckd_alone():
    student, teacher = head(1), head(2, bins=1)  # e.g. a YOLO26 teacher (reg_max 1) and a YOLOv8 student
    loss = mode("response", same_reg_max=False).loss(hooked(student, teacher))
    assert loss.item() == pytest.approx(bckd_loss(student["scores"], teacher["scores"]).item(), rel=1e-6)


def test_features_is_the_feature_loss_summed_over_levels():
    features = mode("features", adv_loss="base", kd_loss="pkd")
    students, teachers = feats(1), feats(2)
    assert features.loss(hooked(head(1), head(2), teachers, teachers)).item() == pytest.approx(0.0, abs=1e-6)
    expected = sum(feature_loss("pkd", s, t) for s, t in zip(students, teachers, strict=True))
    loss = features.loss(hooked(head(1), head(1), students, teachers))  # the Detect outputs are not read
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6) and expected > 0


@pytest.mark.parametrize(("name", "adv_bn"), [("response", "split"), ("features", "running"), ("features", "split")])
def test_a_training_step_keeps_nothing_of_the_step_on_the_wrapper(name, adv_bn):
    """The step's data (adversarial images, the student's outputs on them) travel as arguments and return values: a
    step adds no attribute to the wrapper and leaves no tensor of its graph on it."""
    model = helpers.make_model(adv_match=name, adv_bn=adv_bn, adv_steps=1, adv_di_prob=0.0, kd_balance=0.0)
    before = set(vars(model))
    loss, items = model(det_batch(4))
    assert torch.isfinite(loss).all() and items["adv_loss"].item() > 0
    assert set(vars(model)) == before and not any(holds_graph(v) for v in vars(model).values())


def holds_graph(obj) -> bool:
    if isinstance(obj, torch.Tensor):
        return obj.grad_fn is not None
    if isinstance(obj, dict):
        return any(holds_graph(v) for v in obj.values())
    return isinstance(obj, (list, tuple)) and any(holds_graph(v) for v in obj)
