"""Clean-image KD losses kd_loss=cwd|mgd|fgd: values, gradients, shapes, FGD's box masks, training and resume."""

import math

import pytest
import torch

from ikd_yolo.config import IKDConfig
from ikd_yolo.kd_losses import build_kd_module, fgd_attention, fgd_masks, mgd_keep_mask
from ikd_yolo.trainer import IKDTrainer

from . import helpers
from .helpers import PICO, Interrupt, det_batch, read_results

KD = ("pkd", "cwd", "mgd", "fgd")


def feats(n=2, channels=(8, 16, 32), sizes=((16, 12), (8, 6), (4, 3)), seed=0, grad=False):
    """Per-level features with different channels and (non-square) sizes per level."""
    g = torch.Generator().manual_seed(seed)
    out = [torch.randn(n, c, h, w, generator=g) for c, (h, w) in zip(channels, sizes, strict=True)]
    return [f.requires_grad_() for f in out] if grad else out


def boxes_batch(n=2, boxes=((0, 0.3, 0.3, 0.2, 0.2), (0, 0.6, 0.6, 0.5, 0.4), (1, 0.5, 0.5, 0.3, 0.3))):
    b = torch.tensor(boxes, dtype=torch.float32).view(-1, 5)
    return {"img": torch.zeros(n, 3, 64, 48), "batch_idx": b[:, 0], "cls": torch.zeros(len(b), 1), "bboxes": b[:, 1:]}


def module(name, channels=(8, 16, 32), **over):
    torch.manual_seed(0)
    return build_kd_module(IKDConfig.from_mapping({"kd_loss": name, **over}), list(channels))


# --- values on raw features -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["cwd", "fgd"])
def test_zero_when_student_equals_teacher(name):
    """cwd, and fgd as built (its context blocks start as the identity), are exactly zero for equal features."""
    t = feats()
    loss = module(name)([f.clone() for f in t], t, boxes_batch())
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    assert module(name)(feats(seed=1), t, boxes_batch()).item() > 0


def test_mgd_minimum_is_the_generators_reconstruction_error():
    """MGD's value at student == teacher is the generator's error at regenerating the teacher from its masked copy:
    not zero for a random generator, exactly zero with no mask (lambda 0) and an identity generator on
    non-negative features (3x3 convs with a unit centre tap, ReLU in between)."""
    t = [f.relu() for f in feats()]
    mgd = module("mgd", kd_mgd_lambda=0.0)
    assert mgd(t, t).item() > 0
    with torch.no_grad():
        for gen in mgd.generation:
            for conv in (gen[0], gen[2]):
                conv.weight.zero_()
                conv.bias.zero_()
                conv.weight[:, :, 1, 1] = torch.eye(conv.out_channels)
    assert mgd(t, t).item() == pytest.approx(0.0, abs=1e-6)
    assert mgd(feats(seed=1), t).item() > 0
    mgd.ratio = 0.65  # masking: the identity generator cannot restore the dropped positions
    assert mgd(t, t).item() > 0


def test_mgd_mask_ratio_and_torch_rng():
    torch.manual_seed(3)
    a = mgd_keep_mask(64, 32, 32, 0.65, "cpu")
    torch.manual_seed(3)
    b = mgd_keep_mask(64, 32, 32, 0.65, "cpu")
    assert torch.equal(a, b) and a.shape == (64, 1, 32, 32)
    assert set(a.unique().tolist()) == {0.0, 1.0}
    assert abs((1 - a.mean().item()) - 0.65) < 0.01
    assert not torch.equal(a, mgd_keep_mask(64, 32, 32, 0.65, "cpu"))  # a new draw at every call


@pytest.mark.parametrize("name", KD)
def test_gradients_reach_student_features_and_loss_modules_only(name):
    s, t = feats(grad=True), feats(seed=1, grad=True)
    kd = module(name)
    kd(s, t, boxes_batch()).backward()
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in s)
    assert all(f.grad is None for f in t)  # teacher features are detached
    params = dict(kd.named_parameters())
    assert all(p.grad is not None for p in params.values())
    if name == "mgd":
        assert all(p.grad.abs().sum() > 0 for p in params.values())
    if name == "fgd":  # both sides' context blocks learn (their zero-initialised last conv moves first)
        for side in ("context_s", "context_t"):
            assert all(params[f"{side}.{i}.transform.3.weight"].grad.abs().sum() > 0 for i in range(3))


@pytest.mark.parametrize("name", KD)
def test_level_sizes_and_autocast(name):
    s, t = (
        feats(channels=(4, 8, 8), sizes=((20, 7), (10, 4), (5, 2))),
        feats(channels=(4, 8, 8), sizes=((20, 7), (10, 4), (5, 2)), seed=2),
    )
    kd = module(name, channels=(4, 8, 8))
    assert math.isfinite(kd(s, t, boxes_batch()).item())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = kd(s, t, boxes_batch())
    assert out.dtype == torch.float32 and math.isfinite(out.item())


# --- FGD's masks -------------------------------------------------------------------------------------------------


def test_fgd_masks_scale_background_and_smallest_box():
    batch = boxes_batch(2, ((0, 0.3, 0.3, 0.15, 0.15), (0, 0.6, 0.6, 0.45, 0.35), (1, 0.5, 0.5, 0.3, 0.3)))
    fg, bg = fgd_masks(batch, 2, 10, 10, "cpu")
    assert fg[0, 2, 2].item() == pytest.approx(1 / 4)  # x, y in [0.225, 0.375]: cells 2..3 -> 2 x 2
    assert fg[0, 5, 5].item() == pytest.approx(1 / 24)  # x [0.375, 0.825] -> 3..8, y [0.425, 0.775] -> 4..7
    assert (fg[0] > 0).sum().item() == 4 + 24
    assert fg[1].sum().item() == pytest.approx(1.0)  # one box in image 1: its cells sum to one
    for i in range(2):
        assert bg[i].sum().item() == pytest.approx(1.0) and torch.all((fg[i] > 0) == (bg[i] == 0))
    nested = boxes_batch(1, ((0, 0.5, 0.5, 0.75, 0.75), (0, 0.5, 0.5, 0.15, 0.15)))
    fg, _ = fgd_masks(nested, 1, 10, 10, "cpu")  # 8 x 8 cells and 2 x 2 cells: the smaller box wins its cells
    assert fg[0, 5, 5].item() == pytest.approx(1 / 4) and fg[0, 2, 2].item() == pytest.approx(1 / 64)


def test_fgd_masks_without_boxes_and_on_the_border():
    empty = {
        "img": torch.zeros(3, 3, 32, 32),
        "batch_idx": torch.zeros(0),
        "cls": torch.zeros(0, 1),
        "bboxes": torch.zeros(0, 4),
    }
    fg, bg = fgd_masks(empty, 3, 4, 4, "cpu")
    assert fg.sum() == 0 and torch.allclose(bg, torch.full_like(bg, 1 / 16))
    border = boxes_batch(2, ((0, 0.95, 0.5, 0.1, 0.2), (1, 1.0, 1.0, 0.3, 0.3), (1, 0.0, 0.0, 0.0, 0.0)))
    fg, bg = fgd_masks(border, 2, 8, 8, "cpu")
    assert fg[0, 3:5, 7].eq(0.5).all() and fg[0].sum().item() == pytest.approx(1.0)  # last column, rows 3..4
    assert fg[1, 6:, 6:].eq(0.25).all()  # crosses the corner: clipped to the 2 x 2 cells inside the map
    assert fg[1, 0, 0].item() == 1.0  # degenerate box at the corner: its one cell
    assert fg[1].sum().item() == pytest.approx(2.0) and bg[1].sum().item() == pytest.approx(1.0)
    kd = module("fgd", channels=(4,))
    s, t = feats(n=3, channels=(4,), sizes=((4, 4),)), feats(n=3, channels=(4,), sizes=((4, 4),), seed=1)
    assert math.isfinite(kd(s, t, empty).item()) and math.isfinite(kd(s[:2], t[:2], border).item())


def test_fgd_attention_is_scaled_to_mean_one():
    s, c = fgd_attention(feats()[0], 0.5)
    assert torch.allclose(s.mean(dim=(1, 2)), torch.ones(2)) and torch.allclose(c.mean(dim=1), torch.ones(2))


# --- through the model wrapper: different channel counts, adversarial term, state ---------------------------------


def make_model(name, teacher="yolov8s.yaml", student=PICO, **ikd):
    """The wrapper around a fresh student and teacher of different widths (pico: 16/32/64 channels at P3-P5,
    yolov8n 64/128/256, yolov8s 128/256/512)."""
    fixed = {"kd_loss": name, "kd_balance": 0.0, "adv_steps": 1, "adv_di_prob": 0.0, "adv_batch_frac": 1.0}
    return helpers.make_model(teacher, student, **{**fixed, **ikd})


def image_batch(n=2):
    return det_batch(n, ((0, 0.3, 0.3, 0.2, 0.2), (1, 0.6, 0.6, 0.5, 0.4), (1, 0.9, 0.9, 0.2, 0.2)))


@pytest.mark.parametrize("name", KD)
def test_wrapper_with_wider_teacher_trains_student_projector_and_kd_module(name):
    model = make_model(name, student="yolov8n.yaml", adv_aug=False)
    assert [p[-1].out_channels for p in model.projector] == [128, 256, 512]  # yolov8s vs yolov8n's 64, 128, 256
    regular, items, terms = model.clean_kd_terms(image_batch())[:3]
    assert regular.shape == (3,) and terms["dis"].item() > 0
    terms["dis"].backward()  # the KD term alone
    assert all(p.grad is None for p in model.teacher_model.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.student_model.parameters())
    assert all(p.grad is not None for p in model.projector.parameters())
    assert all(p.grad is not None for p in model.kd_module.parameters())
    assert "kd_module" in dict(model.named_children())


@pytest.mark.parametrize("name", KD)
def test_adversarial_term_composes_and_eval_is_zero(name):
    model = make_model(name, teacher="yolov8n.yaml")
    loss, items = model(image_batch())
    assert loss.shape == (7,) and items["dis_loss"].item() > 0 and items["adv_loss"].item() > 0
    assert torch.isfinite(loss).all()
    model.eval()
    loss, items = model(image_batch())
    assert items["dis_loss"].item() == 0 and items["adv_loss"].item() == 0 and loss.shape == (7,)


def test_kd_module_state_round_trips_through_the_wrapper():
    a = make_model("fgd", teacher="yolov8n.yaml", adv_aug=False)
    with torch.no_grad():
        for p in a.kd_module.parameters():
            p.normal_()
    state = a.state_dict()
    assert any(k.startswith("kd_module.context_t.2.") for k in state)
    b = make_model("fgd", teacher="yolov8n.yaml", adv_aug=False)
    b.load_state_dict({k: v for k, v in state.items()}, strict=True)
    for k, v in a.kd_module.state_dict().items():
        assert torch.equal(v, b.kd_module.state_dict()[k]), k
    assert b.kd_module is not a.kd_module


# --- end to end ----------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cwd", "mgd"])
def test_trains_one_epoch(name, shapes_data, tmp_path):
    trainer = helpers.trainer(
        tmp_path, data=shapes_data, name=name, kd_loss=name, adv_aug=False, freq_aug=False, val=False
    )
    trainer.train()
    rows = read_results(tmp_path / name)
    assert len(rows) == 1 and math.isfinite(rows[0]["train/dis_loss"]) and rows[0]["train/dis_loss"] > 0


@pytest.mark.slow
def test_fgd_trains_and_resume_restores_the_kd_module(shapes_data, tmp_path):
    """A real resume=True: the rebuilt wrapper's kd_module holds last.pt's EMA weights before training goes on."""
    first = helpers.trainer(
        tmp_path,
        data=shapes_data,
        epochs=2,
        name="fgd",
        kd_loss="fgd",
        kd_fgd_lambda=0.01,
        adv_aug=False,
        freq_aug=False,
        val=False,
        nbs=8,
    )  # nbs=8: an optimizer step every batch (FAST's batch 8), so the kd module moves in the 2 batches of an epoch

    def stop(trainer):
        raise Interrupt

    first.add_callback("on_fit_epoch_end", stop)
    with pytest.raises(Interrupt):
        first.train()
    last = tmp_path / "fgd" / "weights" / "last.pt"
    from ikd_yolo.checkpoint import wrapper_state  # last.pt: the student, and the kd_module's state beside it

    state = wrapper_state(torch.load(last, map_location="cpu", weights_only=False))
    saved = {k[len("kd_module.") :]: v for k, v in state.items() if k.startswith("kd_module.")}
    assert any(v.abs().sum() > 0 for k, v in saved.items() if k.endswith("transform.3.weight"))  # it trained

    second = IKDTrainer(overrides={"resume": str(last)})
    assert second.ikd.kd_loss == "fgd" and second.ikd.kd_fgd_lambda == 0.01
    restored = {}
    second.add_callback(
        "on_pretrain_routine_end",
        lambda tr: restored.update({k: v.clone() for k, v in tr.model.kd_module.state_dict().items()}),
    )
    second.train()
    assert restored.keys() == saved.keys()
    for k, v in saved.items():
        assert torch.equal(restored[k].float().cpu(), v), k
    assert not torch.equal(second.model.kd_module.context_s[0].key.weight.detach(), restored["context_s.0.key.weight"])
    rows = read_results(tmp_path / "fgd")
    assert [int(r["epoch"]) for r in rows] == [1, 2] and all(math.isfinite(r["train/dis_loss"]) for r in rows)
