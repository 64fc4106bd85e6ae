"""IKDDistillationModel on a fixed batch: the adversarial term's gradients, BatchNorm statistics, loss decrease."""

import copy

import pytest
import torch

from ikd_yolo.model import KD_TERMS

from . import helpers
from .helpers import det_batch, frozen_bn_statistics


def make_model(**ikd):
    # fixed weights unless a test asks for the calibration; every clean-image term on; the reference's feature term
    fixed = {
        "kd_loss": "native",
        "kd_balance": 0.0,
        "kd_cls_weight": 1.0,
        "kd_dfl_weight": 1.0,
        "adv_match": "features",
    }
    return helpers.make_model(**{"adv_steps": 1, "adv_di_prob": 0.0, "adv_batch_frac": 1.0, **fixed, **ikd})


def adv_match_step(adv_match, adv_bn):
    """One training step of a model whose only KD term is the adversarial one (``adv_match``): it must be finite,
    positive and train the student, not the projector. Returns an untouched copy of the model, the batch, items."""
    model = make_model(adv_match=adv_match, adv_bn=adv_bn, kd_loss="none", kd_cls_weight=0.0, kd_dfl_weight=0.0)
    twin = copy.deepcopy(model)
    batch = make_batch()
    loss, items = model(batch)
    assert torch.isfinite(loss).all() and items["adv_loss"].item() > 0
    loss.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.student_model.parameters())
    assert all(p.grad is None for p in model.projector.parameters())
    assert not model._teacher_feats and not model._student_feats
    return twin, batch, items


def make_batch(n=4):
    return det_batch(n, ((0, 0.3, 0.3, 0.2, 0.2), (1, 0.6, 0.6, 0.5, 0.4), (2, 0.2, 0.7, 0.06, 0.06)))


def test_adversarial_term_trains_student_and_projector_only():
    model = make_model(adv_weight=1.0)
    teacher_before = copy.deepcopy(model.teacher_model.state_dict())
    term = model.adversarial_feature_loss(make_batch())
    assert term.item() > 0 and torch.isfinite(term).all()
    term.sum().backward()
    assert all(p.grad is None for p in model.teacher_model.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.student_model.parameters())
    assert all(p.grad is not None for p in model.projector.parameters())
    for k, v in model.teacher_model.state_dict().items():
        assert torch.equal(v, teacher_before[k]), k


def test_loss_items_and_inactive_phase():
    model = make_model()
    batch = make_batch()
    loss, items = model(batch)
    assert loss.shape == (7,) and list(items)[3:] == ["dis_loss", "cls_kd", "dfl_kd", "adv_loss"]
    assert all(items[k].item() > 0 for k in ("dis_loss", "cls_kd", "dfl_kd"))
    assert items["adv_loss"].item() > 0
    model.adv_active = False
    loss, items = model(batch)
    assert items["adv_loss"].item() == 0 and loss[-1].item() == 0
    model.eval()
    loss, items = model(batch)
    assert "adv_loss" in items and items["adv_loss"].item() == 0


@pytest.mark.parametrize("adv_bn", ["running", "split"])
def test_attack_with_a_non_finite_gradient_uses_the_clean_images(adv_bn):
    """No NaN reaches the student (with adv_bn=split the attacked images share the clean images' forward): the
    failed images are used clean, counted without a wait per batch, and reported once per epoch."""
    model = make_model(adv_bn=adv_bn)
    model._teacher_loss = lambda x, part, scale: x.sum() * float("nan")  # the attack's objective blows up
    batch = make_batch()
    adv = model.adversarial_images(batch)
    assert torch.equal(adv, batch["img"])
    loss, items = model(batch)
    assert torch.isfinite(loss).all() and items["adv_loss"].item() > 0 and model.adv_skipped == 0
    assert not model._teacher_feats and not model._student_feats  # no graph-holding tensor left in the hooks
    stats = model.pop_epoch_stats()
    assert stats["attack_failures"] == 2 * 4 and model.pop_epoch_stats()["attack_failures"] == 0


def test_adv_bn_running_normalises_the_separate_adversarial_forward_by_the_running_statistics():
    """running: the running statistics (BatchNorm in eval mode for that forward only), which do not move; every
    BatchNorm is back in train mode after."""
    model = make_model(adv_bn="running")
    bns = [m for m in model.student_model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    modes = []
    bns[0].register_forward_pre_hook(lambda m, a: modes.append(m.training))
    stats = {k: v.clone() for k, v in model.student_model.state_dict().items() if "running" in k}
    term = model.adversarial_feature_loss(make_batch())
    assert torch.isfinite(term).all() and term.item() > 0 and term.requires_grad
    assert modes == [False] and all(m.training for m in bns)
    for k, v in model.student_model.state_dict().items():
        if "running" in k:
            assert torch.equal(v, stats[k]), k


def test_adv_match_response_is_bckd_and_ld_on_the_adversarial_images():
    """adv_match=response: the term is BCKD + LD between the student's and the teacher's Detect outputs on the
    attacked images (normalised by their own batch statistics in the clean images' forward); it trains the student,
    not the projector."""
    from ikd_yolo.response_kd import bckd_loss, head_outputs, ld_loss

    twin, batch, items = adv_match_step("response", "split")
    adv = twin.adversarial_images(batch)
    with torch.no_grad():
        t = head_outputs(twin.teacher_model(adv))
        s = head_outputs(twin.student_model(adv))
    expected = bckd_loss(s["scores"], t["scores"]) + ld_loss(s["boxes"], t["boxes"], t["scores"])
    assert items["adv_loss"].item() == pytest.approx(expected.item(), rel=1e-4)


def test_adv_match_on_heads_of_another_reg_max_matches_the_class_logits():
    """A YOLO26 teacher (reg_max 1) with a YOLOv8 student (reg_max 16): the DFL bins cannot be compared, so the
    response terms leave them out instead of failing on their shapes."""
    model = make_model(teacher="yolo26n.yaml", adv_match="response", kd_loss="none", kd_cls_weight=0.0)
    assert not model.same_reg_max
    loss, items = model(make_batch(n=2))
    assert torch.isfinite(loss).all() and items["adv_loss"].item() > 0


def test_adversarial_forward_leaves_bn_running_stats():
    model = make_model()
    stats = {k: v.clone() for k, v in model.student_model.state_dict().items() if "running" in k}
    with frozen_bn_statistics(model.student_model):
        model.student_model(torch.rand(2, 3, 64, 64))
    for k, v in model.student_model.state_dict().items():
        if "running" in k:
            assert torch.equal(v, stats[k]), k
    model.student_model(torch.rand(2, 3, 64, 64))  # outside the context the statistics do move
    assert any(not torch.equal(v, stats[k]) for k, v in model.student_model.state_dict().items() if "running" in k)


def test_distillation_terms_decrease_on_a_fixed_batch():
    """Training the student and projector pulls both KD terms down (the detection terms on random images need not)."""
    model = make_model()
    batch = make_batch()
    params = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("teacher_model.")]
    opt = torch.optim.Adam(params, lr=1e-3)
    history = []
    for _ in range(8):
        loss, items = model(batch)
        assert torch.isfinite(loss).all()
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
        history.append((items["dis_loss"].item(), items["adv_loss"].item()))
    (dis0, adv0), (dis1, adv1) = history[0], history[-1]
    assert adv0 > 0 and dis0 > 0
    assert dis1 < 0.5 * dis0 and adv1 < 0.5 * adv0, history


def test_bf16_autocast_step_is_finite():
    model = make_model()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, items = model(make_batch(n=2))
    assert torch.isfinite(loss).all() and model.adv_skipped == 0


def test_attack_at_reduced_resolution_perturbs_the_full_size_images_within_eps():
    model = make_model(adv_scale=0.5, adv_steps=2, adv_step_size=0)
    batch = det_batch(2, size=128)
    sizes, seen = [], []
    model.teacher_model.register_forward_pre_hook(lambda m, a: sizes.append(tuple(a[0].shape[-2:])))
    model.student_model.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().clone()))
    term = model.adversarial_feature_loss(batch)
    assert torch.isfinite(term).all() and term.item() > 0
    assert sizes == [(64, 64), (64, 64), (128, 128)]  # two attack steps at half size, then the full-size pass
    delta = (seen[-1] - batch["img"]).abs()
    assert seen[-1].shape == batch["img"].shape and 0 < delta.max() <= 8 / 255 + 1e-6
    assert delta.mean() > 2 / 255  # the whole budget of 8/255 in 2 steps of 4/255 (adv_step_size=0), resized


def test_adv_bn_split_is_two_forwards_in_one():
    """split: one student forward, with the numbers of two: the clean images' (which alone move the running
    statistics) and the adversarial images' own (normalised by their own batch statistics, running statistics
    untouched): the same loss items, gradients and running statistics."""
    split = make_model(adv_bn="split", adv_batch_frac=0.5)
    twin = copy.deepcopy(split)  # the attack draws nothing at random here (adv_di_prob=0)
    batch = make_batch(n=4)
    sizes = []
    split.student_model.register_forward_pre_hook(lambda m, a: sizes.append(a[0].shape[0]))
    loss, items = split(batch)
    assert sizes == [4 + 2] and items["adv_loss"].item() > 0 and items["dis_loss"].item() > 0
    adv = twin.adversarial_images(batch)  # the same step in two forwards
    clean = twin.clean_kd_terms(batch)
    with frozen_bn_statistics(twin.student_model):
        twin.student_model(adv)
    terms = {**clean.terms, "adv": twin.adversarial_term(adv, dict(twin._student_feats)) * twin.ikd.adv_weight}
    ref = {**clean.items, **{column: terms[term] for term, column in KD_TERMS.items()}}
    for k in items:
        assert items[k].item() == pytest.approx(ref[k].item(), rel=1e-4, abs=1e-7), k
    loss.sum().backward()
    (clean.regular.sum() + 4 * sum(terms.values())).sum().backward()  # the loss vector sums to this at gain 1
    for (name, p), q in zip(split.student_model.named_parameters(), twin.student_model.parameters(), strict=True):
        assert (p.grad is None) == (q.grad is None), name
        assert p.grad is None or torch.allclose(p.grad, q.grad, rtol=1e-3, atol=1e-6), name
    for (name, v), w in zip(
        split.student_model.state_dict().items(), twin.student_model.state_dict().values(), strict=True
    ):
        assert torch.allclose(v.float(), w.float(), rtol=1e-5, atol=1e-7), name
    bns = [m for m in split.student_model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all("forward" not in vars(m) for m in bns)  # the modules' own forward is back
