"""MI-DI-FGSM against the frozen teacher (ikd_yolo.adversarial) on a tiny yaml-built YOLOv8n teacher."""

from __future__ import annotations

import copy
import math
import pickle

import pytest
import torch
from torch import nn

from ikd_yolo.adversarial import AttackFailed, TeacherClsLoss, diversify, mi_di_fgsm

IMGSZ = 64
EPS = 8 / 255


def _calibrated(model: nn.Module, ch: int = 3) -> nn.Module:
    """Give a randomly initialised model real BatchNorm statistics, then freeze it in eval mode.

    With Ultralytics' default initialisation and BN running statistics (0, 1), an untrained model's eval-mode class
    logits barely depend on the input (the attack moves the loss by ~1e-6 relative); calibrated statistics make it
    a sensitive stand-in for a trained teacher.
    """
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the calibration batches
            m.reset_running_stats()
    model.train()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(4, ch, IMGSZ, IMGSZ, generator=gen))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _build(cfg: str) -> nn.Module:
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    return _calibrated(DetectionModel(cfg, nc=3, verbose=False))


@pytest.fixture(scope="module")
def teacher() -> nn.Module:
    return _build("yolov8n.yaml")


@pytest.fixture()
def batch() -> dict:
    gen = torch.Generator().manual_seed(0)
    return {
        "img": torch.rand(4, 3, IMGSZ, IMGSZ, generator=gen),
        "batch_idx": torch.tensor([0.0, 0.0, 1.0, 2.0, 3.0]),
        "cls": torch.tensor([[0.0], [1.0], [2.0], [0.0], [1.0]]),
        "bboxes": torch.tensor(
            [
                [0.3, 0.3, 0.2, 0.2],
                [0.6, 0.6, 0.3, 0.4],
                [0.5, 0.5, 0.5, 0.5],
                [0.2, 0.7, 0.2, 0.3],
                [0.7, 0.3, 0.3, 0.3],
            ]
        ),
    }


def _recording(loss: TeacherClsLoss, batch: dict, record: list):
    def fn(x, scale):
        value = loss(x, batch, scale)
        record.append((value.item(), scale))
        return value

    return fn


def _assert_bounds(adv: torch.Tensor, clean: torch.Tensor, eps: float = EPS) -> None:
    assert adv.shape == clean.shape and adv.dtype == clean.dtype and adv.device == clean.device
    assert not adv.requires_grad
    assert (adv.float() - clean.float()).abs().max().item() <= eps + 1e-6
    assert adv.min().item() >= 0.0 and adv.max().item() <= 1.0


# --------------------------------------------------------------------------------------------- attack on the teacher


def test_attack_raises_teacher_cls_loss(teacher, batch):
    loss = TeacherClsLoss(teacher)
    record: list = []
    adv = mi_di_fgsm(_recording(loss, batch, record), batch["img"], steps=5, di_prob=0.0)
    assert len(record) == 5 and all(scale == 1.0 for _, scale in record)
    per_step = [v for v, _ in record]
    with torch.no_grad():
        final = loss(adv, batch).item()
    assert math.isfinite(final)
    assert per_step[0] == pytest.approx(loss(batch["img"], batch).item(), rel=1e-5)  # step 1 sees the clean image
    assert final > per_step[0] * 1.05, per_step + [final]
    assert final >= max(per_step), per_step + [final]
    _assert_bounds(adv, batch["img"])
    assert (adv - batch["img"]).abs().max().item() == pytest.approx(EPS, abs=1e-6)  # 5 steps of 2/255 reach eps


def test_attack_beats_random_sign_noise(teacher, batch):
    loss = TeacherClsLoss(teacher)
    img = batch["img"]
    adv = mi_di_fgsm(lambda x, s: loss(x, batch, s), img, steps=5, di_prob=0.0)
    noise = (img + EPS * torch.randn(img.shape, generator=torch.Generator().manual_seed(3)).sign()).clamp(0, 1)
    with torch.no_grad():
        assert loss(adv, batch).item() > loss(noise, batch).item()


@pytest.mark.parametrize("frozen", [True, False])
@pytest.mark.parametrize("no_grad", [False, True])
def test_teacher_untouched(teacher, batch, frozen, no_grad):
    model = copy.deepcopy(teacher)
    for p in model.parameters():
        p.requires_grad_(not frozen)  # unfrozen: a .backward() anywhere would leave grads behind
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss = TeacherClsLoss(model)
    with torch.no_grad() if no_grad else torch.enable_grad():
        adv = mi_di_fgsm(lambda x, s: loss(x, batch, s), batch["img"], steps=3, di_prob=0.5)
    assert not torch.equal(adv, batch["img"])
    assert all(p.grad is None for p in model.parameters())
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN statistics
    assert not model.training
    assert not hasattr(model, "args")  # the criterion's hyper-parameters were only lent to the model
    _assert_bounds(adv, batch["img"])


def test_teacher_in_train_mode_runs_in_eval_and_is_restored(teacher, batch):
    model = copy.deepcopy(teacher).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss = TeacherClsLoss(model)
    mi_di_fgsm(lambda x, s: loss(x, batch, s), batch["img"], steps=2, di_prob=0.0)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_steps_zero_returns_clean(batch):
    img = batch["img"]

    def never(x, s):
        raise AssertionError("loss_fn must not be called for steps=0")

    out = mi_di_fgsm(never, img, steps=0)
    assert torch.equal(out, img) and out.dtype == img.dtype
    assert out.data_ptr() != img.data_ptr()


def test_generator_makes_runs_identical(teacher, batch):
    loss = TeacherClsLoss(teacher)
    runs = []
    for _ in range(2):
        record: list = []
        state = torch.get_rng_state()
        adv = mi_di_fgsm(
            _recording(loss, batch, record), batch["img"], steps=4, generator=torch.Generator().manual_seed(7)
        )
        assert torch.equal(state, torch.get_rng_state())  # the global RNG was not consumed
        runs.append((adv, record))
    assert torch.equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]


@pytest.mark.parametrize("decay, expected", [(1.0, (2.0, 0.0)), (0.0, (0.0, 0.0))])
def test_update_rule_momentum_of_per_sample_l1_normalised_gradients(decay, expected):
    """Two pixels, two samples, two steps with hand-made gradients: only the exact rule gives ``expected``.

    Step 1 gradients are (1, 1) * 0.01 (sample 0) and (1, 1) * 100 (sample 1); step 2 gradients are (-0.5, -2)
    for both. L1-normalised per sample: m = (1, 1) + (-0.4, -1.6) = (0.6, -0.6), so pixel 0 moves +2 steps and pixel
    1 moves +1 -1 = 0 in both samples. Unnormalised, or normalised over the whole batch, sample 0 ends at (0, 0)
    and/or sample 1 at (2, 2); with decay 0 the step-2 sign alone gives (+1 - 1, +1 - 1) = (0, 0).
    """
    img = torch.full((2, 1, 1, 2), 0.5)
    calls = []
    first = torch.tensor([0.01, 100.0]).view(2, 1, 1, 1)
    second = torch.tensor([-0.5, -2.0]).view(1, 1, 1, 2)

    def fn(x, scale):
        calls.append(scale)
        return (x * first).sum() if len(calls) == 1 else (x * second).sum()

    step = 2 / 255
    adv = mi_di_fgsm(fn, img, steps=2, step=step, decay=decay, di_prob=0.0)
    moved = ((adv - img) / step).round().view(2, 2)
    assert moved.tolist() == [list(expected), list(expected)]


def test_input_diversity_scale_and_padding():
    h, w = 64, 96
    img = torch.rand(3, 3, h, w) * 0.9 + 0.1  # strictly positive content
    seen = []

    def fn(x, scale):
        seen.append((x.detach().clone(), scale))
        return (x * x).sum()

    gen = torch.Generator().manual_seed(0)
    mi_di_fgsm(fn, img, steps=6, di_prob=1.0, di_rate=0.9, generator=gen)
    assert len(seen) == 6
    scales = [s for _, s in seen]
    assert all(0.9 <= s < 1.0 for s in scales) and len(set(scales)) > 1
    for x, s in seen:
        rows, cols = math.floor(h * s), math.floor(w * s)
        assert rows < h and cols < w
        assert torch.all(x[..., rows:, :] == 0) and torch.all(x[..., :, cols:] == 0)  # zero pad bottom/right
        assert torch.all(x[..., :rows, :cols] > 0)  # content anchored at the top-left

    seen.clear()
    mi_di_fgsm(fn, img, steps=3, di_prob=0.0, generator=gen)
    assert [s for _, s in seen] == [1.0, 1.0, 1.0]


def test_diversify_scales_content_by_exactly_scale():
    """A normalised box centre (cx, cy) must land at (cx * s, cy * s): what TeacherClsLoss does to the boxes."""
    h, w = 64, 96
    img = torch.zeros(1, 1, h, w)
    img[..., 20:30, 40:56] = 1.0  # centre (48, 25) px -> normalised (0.5, 25/64)
    yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    for s in (0.9, 0.93, 0.97):
        out = diversify(img, s)[0, 0]
        cx, cy = (out * xx).sum() / out.sum() / w, (out * yy).sum() / out.sum() / h
        assert cx.item() == pytest.approx(0.5 * s, abs=1e-3)
        assert cy.item() == pytest.approx(25 / 64 * s, abs=1e-3)


def test_teacher_loss_rescales_boxes_without_mutating_batch(teacher, batch):
    loss = TeacherClsLoss(teacher)
    crit = loss.criterion()
    seen = []
    original = crit.__class__.__call__

    class Spy(crit.__class__):
        def __call__(self, preds, targets):
            seen.append(targets["bboxes"].clone())
            return original(self, preds, targets)

    crit.__class__ = Spy
    bboxes = batch["bboxes"].clone()
    loss(batch["img"], batch, 0.92)
    loss(batch["img"], batch, 1.0)
    assert torch.allclose(seen[0], bboxes * 0.92) and torch.equal(seen[1], bboxes)
    assert torch.equal(batch["bboxes"], bboxes)


# ----------------------------------------------------------------------------------------------- failure, precision


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_gradient_raises(batch, bad):
    with pytest.raises(AttackFailed):
        mi_di_fgsm(lambda x, s: x.sum() * bad, batch["img"], steps=2)


def test_unchecked_non_finite_gradient_leaves_nan_images(batch):
    """check_finite=False (no wait for the GPU per step): a bad step makes the result NaN for the caller to detect."""
    adv = mi_di_fgsm(lambda x, s: x.sum() * float("nan"), batch["img"], steps=2, check_finite=False)
    assert adv.isnan().all()


def test_loss_fn_must_return_scalar(batch):
    with pytest.raises(ValueError):
        mi_di_fgsm(lambda x, s: x * 2, batch["img"], steps=1)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_rounding_stays_in_ball(dtype):
    """x.sum() pushes every pixel to clean + eps, which a round-to-nearest cast can overshoot."""
    img = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)).to(dtype)
    received = []

    def fn(x, s):
        received.append(x.dtype)
        return x.float().sum()

    adv = mi_di_fgsm(fn, img, steps=5, di_prob=0.0)
    assert set(received) == {dtype}
    _assert_bounds(adv, img)
    assert (adv.float() - img.float()).max().item() > EPS * 0.9  # it did move to the edge of the ball


def test_bf16_teacher_autocast_and_bf16_tensors(teacher, batch):
    loss = TeacherClsLoss(teacher)
    img = batch["img"].bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        adv = mi_di_fgsm(lambda x, s: loss(x, batch, s), img, steps=2, di_prob=0.5)
    _assert_bounds(adv, img)
    assert not torch.equal(adv, img)
    # no autocast: TeacherClsLoss casts the bf16 input for the fp32 teacher
    adv = mi_di_fgsm(lambda x, s: loss(x, batch, s), img, steps=2, di_prob=0.0)
    _assert_bounds(adv, img)
    assert not torch.equal(adv, img)


# ---------------------------------------------------------------------------------------------- criterion building


def test_criterion_hyperparameters_and_pickle(teacher, batch):
    from ultralytics.utils.loss import v8DetectionLoss

    model = copy.deepcopy(teacher)
    model.args = {"cls": 2.0, "box": 3.0, "model": "x.yaml"}  # as a checkpoint stores it: a dict
    loss = TeacherClsLoss(model, hyp={"box": 9.0})
    assert type(loss.criterion()) is v8DetectionLoss
    assert (loss.hyp.cls, loss.hyp.box, loss.hyp.dfl) == (2.0, 9.0, 1.5)  # default < teacher's own < given
    assert model.args == {"cls": 2.0, "box": 3.0, "model": "x.yaml"}  # restored, not mutated
    value = loss(batch["img"], batch).item()
    double = TeacherClsLoss(model, hyp={"cls": 4.0})(batch["img"], batch).item()
    assert double == pytest.approx(2 * value, rel=1e-5)  # the cls gain scales component 1

    clone = pickle.loads(pickle.dumps(loss))
    assert clone._criterion is None
    assert clone(batch["img"], batch).item() == pytest.approx(value, rel=1e-5)


def test_end_to_end_head(batch):
    from ultralytics.utils.loss import E2ELoss

    model = _build("yolo26n.yaml")
    loss = TeacherClsLoss(model)
    assert isinstance(loss.criterion(), E2ELoss)
    record: list = []
    adv = mi_di_fgsm(_recording(loss, batch, record), batch["img"], steps=3, di_prob=0.0)
    with torch.no_grad():
        assert loss(adv, batch).item() > record[0][0]
    _assert_bounds(adv, batch["img"])

    model.end2end = True
    model.fuse(verbose=False)  # keeps only the one-to-one branch
    assert model.model[-1].cv2 is None
    assert math.isfinite(TeacherClsLoss(model)(batch["img"], batch).item())


def test_unsupported_head_is_named():
    from ultralytics.nn.tasks import SegmentationModel

    with pytest.raises(NotImplementedError, match="Segment"):
        TeacherClsLoss(SegmentationModel("yolov8n-seg.yaml", nc=3, verbose=False))
    with pytest.raises(TypeError):
        TeacherClsLoss(nn.Conv2d(3, 3, 1))
