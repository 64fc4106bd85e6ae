"""The bounded feature losses (pkd, normalised cwd), response KD (BCKD, LD), the KD schedule and kd_balance."""

import math

import pytest
import torch

from ikd_yolo.config import IKDConfig
from ikd_yolo.kd_losses import build_kd_module, pkd_loss
from ikd_yolo.model import KD_TERMS
from ikd_yolo.response_kd import bckd_loss, ld_loss, soft_positive_weight
from ikd_yolo.schedule import first_kd_batch, grad_norm, in_projector_warmup, kd_scale, kd_stop_epoch

from . import helpers
from .helpers import SOFT, det_batch


def feats(seed=0, n=2, channels=(8, 16), sizes=((8, 6), (4, 3))):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, c, h, w, generator=g) for c, (h, w) in zip(channels, sizes, strict=True)]


def base(name, **over):
    return build_kd_module(IKDConfig.from_mapping({"kd_loss": name, **over}), [8, 16])


def head(seed=0, n=2, nc=4, reg_max=16, anchors=20):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, nc, anchors, generator=g) * 3, torch.randn(n, 4 * reg_max, anchors, generator=g) * 3


# --- zero on identical inputs, and scale invariance of the normalised losses -----------------------------------------


@pytest.mark.parametrize("name", ["pkd", "cwd"])
def test_normalised_feature_losses_are_zero_on_identical_and_blind_to_scale(name):
    t, s = feats(0), feats(1)
    loss = base(name)
    assert loss([f.clone() for f in t], t).item() == pytest.approx(0.0, abs=1e-5)
    value = loss(s, t).item()
    assert value > 0.05
    # a per-channel positive affine change of either side leaves the loss unchanged
    scaled_t = [f * torch.linspace(0.5, 40, f.shape[1]).view(1, -1, 1, 1) + 3 for f in t]
    assert loss([f * 1000 for f in s], scaled_t).item() == pytest.approx(value, rel=1e-3)


def test_unnormalised_cwd_is_not_scale_invariant():
    """The switch matters: without kd_cwd_norm, scaling the teacher changes cwd."""
    t, s = feats(0), feats(1)
    raw = base("cwd", kd_cwd_norm=False)
    assert raw(s, [f * 10 for f in t]).item() != pytest.approx(raw(s, t).item(), rel=0.05)


def test_pkd_is_one_minus_pearson_r():
    s, t = torch.randn(4, 3, 5, 5), torch.randn(4, 3, 5, 5)
    r = torch.stack(
        [torch.corrcoef(torch.stack([s[:, c].flatten(), t[:, c].flatten()]))[0, 1] for c in range(3)]
    ).mean()
    assert pkd_loss(s, t).item() == pytest.approx(1 - r.item(), abs=1e-4)
    assert pkd_loss(s, -s).item() == pytest.approx(2.0, abs=1e-4)  # the bound


def test_response_losses_are_zero_on_identical_outputs_and_positive_otherwise():
    scores, boxes = head(0)
    scores2, boxes2 = head(1)
    assert bckd_loss(scores.clone(), scores).item() == pytest.approx(0.0, abs=1e-7)
    assert ld_loss(boxes.clone(), boxes, scores).item() == pytest.approx(0.0, abs=1e-5)
    assert bckd_loss(scores2, scores).item() > 0 and ld_loss(boxes2, boxes, scores).item() > 0


def test_response_losses_pull_the_student_towards_the_teacher():
    scores, boxes = head(0)
    s_scores, s_boxes = (x.clone().requires_grad_() for x in head(1))

    def dist(b):  # LD's distributions over the 16 bins of each side (tau 10)
        return (b.view(2, 4, 16, 20) / 10).softmax(2)

    def gaps():
        """Mean distance of the student's class probabilities and (teacher-weighted) box distributions from the
        teacher's: what the losses are to shrink (a loss could also fall by moving elsewhere)."""
        with torch.no_grad():
            w = soft_positive_weight(scores)
            box_gap = ((dist(s_boxes) - dist(boxes)).abs().sum(2).mean(1) * w).sum() / w.sum()
            return (s_scores.sigmoid() - scores.sigmoid()).abs().mean().item(), box_gap.item()

    score_gap, box_gap = gaps()
    opt = torch.optim.Adam([s_scores, s_boxes], lr=0.2)
    first = None
    for _ in range(100):
        loss = bckd_loss(s_scores, scores) + ld_loss(s_boxes, boxes, scores)
        first = first or loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * first
    new_score_gap, new_box_gap = gaps()
    assert new_score_gap < 0.1 * score_gap and new_box_gap < 0.1 * box_gap  # 0.40 -> 0.015, 0.33 -> 0.001 as written


# --- inside the wrapper: gradients reach the student, autocast, calibration ------------------------------------------


def make_model(**ikd):
    return helpers.make_model(**{"adv_aug": False, "freq_aug": False, **SOFT, **ikd})


def batch(n=4):
    return det_batch(n)


@pytest.mark.parametrize("term", ["dis", "cls", "dfl"])
@pytest.mark.parametrize("kd_loss", ["pkd", "cwd"])
def test_each_term_reaches_the_student_and_not_the_teacher(term, kd_loss):
    model = make_model(kd_loss=kd_loss, kd_balance=0.0)
    terms = model.clean_kd_terms(batch()).terms
    assert set(terms) == {"dis", "cls", "dfl"} and terms[term].item() > 0
    terms[term].backward()
    assert all(p.grad is None for p in model.teacher_model.parameters())
    assert sum(float(p.grad.abs().sum()) for p in model.student_model.parameters() if p.grad is not None) > 0
    if term == "dis":
        assert all(p.grad is not None for p in model.projector.parameters())


@pytest.mark.parametrize("kd_loss", ["pkd", "cwd", "native"])
def test_terms_finite_under_autocast(kd_loss):
    model = make_model(kd_loss=kd_loss, kd_balance=0.0, adv_aug=True, adv_steps=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, items = model(batch(2))
    assert torch.isfinite(loss).all() and all(items[c].item() > 0 for c in KD_TERMS.values())
    loss.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.student_model.parameters() if p.grad is not None)


def test_native_term_equals_ultralytics_distillation_loss():
    """kd_loss=native, without response terms or schedule, is Ultralytics' own DistillationModel.loss."""
    from ultralytics.nn.distill_model import DistillationModel

    model = make_model(kd_loss="native", kd_balance=0.0, kd_cls_weight=0.0, kd_dfl_weight=0.0)
    ours, items = model(batch())
    theirs, their_items = DistillationModel.loss(model, batch())
    assert ours[:4].tolist() == pytest.approx(theirs.tolist(), rel=1e-5)
    assert ours[4:].tolist() == [0.0, 0.0, 0.0]


def test_kd_off_skips_the_teacher_and_zeroes_every_term():
    model = make_model(kd_balance=0.0, kd_labels=0.0)  # kd_labels runs the teacher whatever the scale
    calls = []
    model.teacher_model.register_forward_hook(lambda *a: calls.append(1))
    model.kd_scale = 0.0
    loss, items = model(batch())
    assert not calls and loss.shape == (7,) and loss[3:].abs().sum() == 0 and loss[:3].sum() > 0
    model.kd_scale = 0.5
    half, _ = model(batch())
    model.kd_scale = 1.0
    full, _ = model(batch())
    assert calls and half[3:].tolist() == pytest.approx((full[3:] / 2).tolist(), rel=1e-4)


def test_default_recipe_runs_no_teacher_per_batch_and_no_warmup():
    """The defaults (kd_loss=none, no response term, labels refined once per dataset): with the adversarial term off,
    a training batch is the student's detection alone, whatever the schedule says."""
    model = helpers.make_model(adv_aug=False)
    calls = []
    model.teacher_model.register_forward_hook(lambda *a: calls.append(1))
    for warmup, scale in ((True, 0.0), (False, 1.0)):
        model.set_iteration(scale, warmup)
        loss, items = model(batch())
        assert loss[3:].abs().sum() == 0 and loss[:3].sum() > 0
    assert not calls and not model.feature_term_on and not model.soft_terms_on


def test_default_ikd_runs_the_teacher_on_the_attacked_images_only():
    """The default IKD recipe has no clean-image KD term: the teacher runs in the attack (adv_steps passes) and once
    on the adversarial images, always on the attacked part of the batch, never on the whole clean batch."""
    model = helpers.make_model(adv_batch_frac=0.5, adv_steps=2, kd_balance=0.0)
    sizes = []
    model.teacher_model.register_forward_pre_hook(lambda m, a: sizes.append(a[0].shape[0]))
    model.set_iteration(1.0, False)
    loss, items = model(batch())
    assert sizes == [2, 2, 2] and items["adv_loss"].item() > 0 and torch.isfinite(loss).all()


def test_projector_warmup_trains_the_projector_and_not_the_student():
    model = make_model(kd_balance=0.0)
    model.projector_warmup = True
    loss, items = model(batch())
    assert items["dis_loss"].item() > 0 and all(items[c].item() == 0 for c in ("cls_kd", "dfl_kd", "adv_loss"))
    loss[3].backward()  # the feature term alone (the cat passes zeros to the detection terms' graph)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.projector.parameters())
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.student_model.parameters())
    assert model.kd_calibrated.item() == 1  # kd_balance=0: nothing to calibrate


def test_kd_balance_sets_each_gradient_to_the_chosen_fraction_of_the_detection_gradient():
    model = make_model(kd_balance=0.25, kd_balance_batches=2)
    b = batch()
    loss, items = model(b)  # calibration batch 1: KD terms off
    assert model.kd_calibrated.item() == 0 and loss[3:].abs().sum() == 0
    model(b)  # batch 2: gains set
    assert model.kd_calibrated.item() == 1
    gains = model.gains()
    assert all(math.isfinite(v) and v > 0 for v in gains.values()) and gains["adv"] == 1.0  # adv off: never measured
    params = [p for p in model.student_model.parameters() if p.requires_grad]
    regular, _, terms = model.clean_kd_terms(b)[:3]
    det = grad_norm(regular.sum(), params)
    for name in ("dis", "cls", "dfl"):
        bs = b["img"].shape[0]
        assert grad_norm(terms[name] * bs * gains[name], params) == pytest.approx(0.25 * det, rel=1e-3), name
    state = model.state_dict()  # the gains travel with the wrapper's state (EMA, last.pt, resume)
    assert torch.equal(state["kd_gain"], model.kd_gain) and state["kd_calibrated"].item() == 1


# --- schedule --------------------------------------------------------------------------------------------------------


def test_schedule_warms_the_projector_up_decays_on_a_cosine_and_stops():
    stop = kd_stop_epoch(epochs=25, close_mosaic=5, close_mosaic_off=True)
    assert stop == 20 and kd_stop_epoch(25, 5, False) == 25 and kd_stop_epoch(3, 10, True) == 3
    f = lambda e: kd_scale(e, stop=stop, warmup=1.0, final=0.1)  # noqa: E731
    assert f(0.25) == 0.0 and f(1.0) == 0.0  # the first epoch: projector warm-up, nothing reaches the student
    assert in_projector_warmup(0.25, 1.0) and in_projector_warmup(1.0, 1.0) and not in_projector_warmup(1.0625, 1.0)
    assert f(1.0 + 1e-6) == pytest.approx(1.0, abs=1e-6)  # then the full scale, decaying on a cosine
    assert f(10.5) == pytest.approx(0.1 + 0.9 * 0.5, abs=1e-9)  # half way through the cosine
    assert f(20.0) == pytest.approx(0.1) and f(20.0 + 1 / 16) == 0.0 and f(24) == 0.0
    values = [f(e / 16) for e in range(17, 20 * 16 + 1)]
    assert all(0.1 - 1e-9 <= v <= 1 for v in values) and values == sorted(values, reverse=True)
    assert kd_scale(0.01, stop=10, warmup=0.0, final=0.1) == pytest.approx(1.0, abs=1e-4)  # no warm-up
    assert not in_projector_warmup(0.01, 0.0)
    # the first batch the KD terms act in: after the warm-up's batches and kd_balance's calibration, which follows
    # the warm-up with a feature term (it calibrates the projected features) and runs beside it without one
    assert first_kd_batch(10, 1.0, 4, feature_term=False) == 11 and first_kd_batch(10, 1.0, 4, True) == 15
    assert first_kd_batch(1, 1.0, 4, feature_term=False) == 5  # one batch per epoch: the calibration outlasts it
    assert first_kd_batch(3, 0.5, 0, feature_term=True) == 2 and first_kd_batch(10, 0.0, 0, False) == 1


@pytest.mark.slow
def test_trainer_warns_when_a_kd_term_dominates_and_logs_fixed_gains(shapes_data, tmp_path):
    """kd_balance=0 with an oversized weight: after epoch 1 the trainer says which term dominates and by how much."""
    import logging

    import yaml
    from ultralytics.utils import LOGGER

    records = []
    handler = logging.Handler()
    handler.emit = lambda r: records.append(r.getMessage())
    LOGGER.addHandler(handler)
    try:
        helpers.trainer(
            tmp_path,
            data=shapes_data,
            epochs=2,
            name="loud",
            kd_balance=0.0,
            kd_loss="pkd",
            kd_pkd_weight=1000.0,
            kd_warmup_epochs=0.0,
            adv_aug=False,
            freq_aug=False,
            val=False,
        ).train()
    finally:
        LOGGER.removeHandler(handler)
    warnings = [m for m in records if "distillation dominates training" in m]
    assert len(warnings) == 1 and "dis_loss" in warnings[0], records
    assert "epoch 2" in warnings[0] and "kd_balance" in warnings[0]
    saved = yaml.safe_load((tmp_path / "loud" / "ikd.yaml").read_text())
    assert saved["kd_gains"] == {"dis_loss": 1.0, "cls_kd": 1.0, "dfl_kd": 1.0, "adv_loss": 1.0}  # no calibration
