"""Online MI-DI-FGSM attack against the frozen teacher detector (IKD's adversarial feature augmentation).

IKD (Inconsistent Knowledge Distillation, Liang et al., ACM MM 2023) adds, to feature distillation on clean
images, a feature-distillation term on adversarial images made against the frozen teacher: the student's
features are matched to the teacher's on inputs where the teacher's classification is pushed away from the
ground truth. This module makes those images.

**The attack** is MI-DI-FGSM (momentum iterative FGSM with input diversity) in the L-inf ball, maximising the
teacher's *classification* loss on the batch's ground truth:

- start at the clean image (no random start), momentum ``m = 0``;
- each of ``steps`` steps: with probability ``di_prob`` shrink the image by a random factor
  ``r ~ U[di_rate, 1)`` (bilinear, content anchored at the top-left, exact factor ``r``) and zero-pad it back to
  the original size at the bottom/right; run the loss on that (diversified) input; take the gradient of the loss
  with respect to the *undiversified* adversarial image (through the differentiable resize and pad, as in
  DI-FGSM); L1-normalise it per sample (divide by its mean absolute value); ``m = decay * m + g``;
  ``x = x + step * sign(m)``; project onto ``[clean - eps, clean + eps]`` and clip to ``[0, 1]``.
- defaults: ``eps = 8/255``, ``step = 2/255``, 5 steps, ``decay = 1.0``, ``di_prob = 0.5``, ``di_rate = 0.9``.

**Reference.** The IKD authors generate the adversarial images *offline*, before training, with
``tools/ta_GT.py`` + ``difgsm.py`` in their mmdetection fork. Here the attack runs *online*, inside the loss
computation, on the current (already augmented) batch, so the adversarial images always match the augmentation
actually applied; the price is ``steps`` extra teacher forward/backward passes per batch on the attacked
fraction.

**Gradients go to the input only.** The attack uses ``torch.autograd.grad(loss, x_adv)`` and never ``.backward()``,
so no parameter's ``.grad`` is touched by it: the teacher's weights and BatchNorm statistics stay exactly as they
were, the student's optimiser never sees attack gradients, and under DDP the reducer (whose hooks fire when a
parameter's gradient is accumulated) never sees a teacher gradient nor an extra reduction it would wait for.

**Box rescaling under input diversity.** ``loss_fn(x, scale)`` receives the factor by which the image content was
shrunk towards the top-left corner (``1.0`` when no diversity was applied). Because the content is anchored at the
origin, a normalised ``xywh`` box becomes ``xywh * scale`` (all four numbers), and this is what
:class:`TeacherClsLoss` does with the batch's ``bboxes``. The resize uses ``scale_factor=r`` with
``recompute_scale_factor=False``, so the content is scaled by exactly ``r`` in both axes (the output size is
``floor(H * r) x floor(W * r)``; less than one pixel of the right/bottom edge is cut).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AttackFailed", "TeacherClsLoss", "diversify", "mi_di_fgsm"]


class AttackFailed(RuntimeError):
    """The attack produced a non-finite gradient; the caller should skip the adversarial term for this batch."""


def diversify(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Shrink ``x`` (N, C, H, W) by exactly ``scale`` towards the top-left corner and zero-pad to (H, W).

    Differentiable with respect to ``x``. ``scale == 1`` returns ``x`` unchanged.
    """
    if scale == 1.0:
        return x
    h, w = x.shape[-2:]
    small = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False, recompute_scale_factor=False)
    return F.pad(small, (0, w - small.shape[-1], 0, h - small.shape[-2]))


def _uniform(generator: torch.Generator | None) -> float:
    """One U[0, 1) draw from ``generator`` (CPU), or from torch's global CPU RNG when None."""
    return float(torch.rand((), generator=generator))


def _round_into_ball(x32: torch.Tensor, clean: torch.Tensor, clean32: torch.Tensor, eps: float) -> torch.Tensor:
    """Cast ``x32`` to ``clean.dtype`` without leaving the eps ball (rounding to a low-precision grid can)."""
    out = x32.to(clean.dtype)
    if out.dtype in (torch.float32, torch.float64):
        return out
    outside = (out.float() - clean32).abs() > eps
    if bool(outside.any()):
        # one ulp towards the clean value is inside: clean itself is representable and the step was < 1 ulp over
        toward = torch.nextafter(out, clean)
        out = torch.where(outside, toward, out)
    return out


def _check_arguments(images: torch.Tensor, eps: float, step: float, steps: int, di_prob: float, di_rate: float):
    """Refuse the arguments :func:`mi_di_fgsm` cannot attack with (TypeError, ValueError naming the argument)."""
    if not images.is_floating_point():
        raise TypeError(f"mi_di_fgsm needs floating-point images in [0, 1], got {images.dtype}")
    if images.ndim != 4:
        raise ValueError(f"mi_di_fgsm needs an (N, C, H, W) batch, got shape {tuple(images.shape)}")
    if steps < 0 or int(steps) != steps:
        raise ValueError(f"steps must be a non-negative integer, got {steps}")
    if eps < 0 or step < 0:
        raise ValueError(f"eps and step must be non-negative, got eps={eps}, step={step}")
    if not 0.0 <= di_prob <= 1.0:
        raise ValueError(f"di_prob must be in [0, 1], got {di_prob}")
    if not 0.0 < di_rate <= 1.0:
        raise ValueError(f"di_rate must be in (0, 1], got {di_rate}")


def _diversity_scale(di_prob: float, di_rate: float, generator: torch.Generator | None) -> float:
    """One step's input-diversity factor: ``r ~ U[di_rate, 1)`` with probability ``di_prob``, else 1."""
    scale = 1.0
    if di_prob > 0.0 and (di_prob >= 1.0 or _uniform(generator) < di_prob):
        scale = di_rate + (1.0 - di_rate) * _uniform(generator)
    return scale


def _input_gradient(
    loss_fn: Callable[[torch.Tensor, float], torch.Tensor], x32: torch.Tensor, scale: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """The float32 gradient of ``loss_fn`` on ``x32`` diversified by ``scale`` (in ``dtype``) with respect to
    ``x32`` (the input only, under ``torch.enable_grad()`` so that it works inside ``torch.no_grad()``), and the
    loss."""
    with torch.enable_grad():
        leaf = x32.detach().requires_grad_(True)
        loss = loss_fn(diversify(leaf, scale).to(dtype), scale)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise ValueError("loss_fn must return a scalar tensor")
        (grad,) = torch.autograd.grad(loss.reshape(()), leaf)
    return grad.float(), loss


def _momentum_step(x32, momentum, grad, decay: float, step: float, lower, upper, carry_nan: bool):
    """One MI-FGSM update in float32: the gradient L1-normalised per sample into the momentum, a signed step,
    the projection onto ``[lower, upper]``; ``carry_nan``: a sample with a non-finite gradient comes out NaN.
    Returns the new image and momentum."""
    tiny = torch.finfo(torch.float32).tiny
    grad = grad / grad.abs().mean(dim=(1, 2, 3), keepdim=True).clamp_min(tiny)  # L1 normalisation per sample
    momentum = decay * momentum + grad
    x32 = torch.minimum(torch.maximum(x32 + step * momentum.sign(), lower), upper)
    if carry_nan:  # sign(NaN) is 0: carry a bad gradient into the sample as NaN (inf * 0 is NaN too)
        x32 = x32 + 0.0 * momentum.sum(dim=(1, 2, 3), keepdim=True)
    return x32, momentum


def mi_di_fgsm(
    loss_fn: Callable[[torch.Tensor, float], torch.Tensor],
    images: torch.Tensor,
    *,
    eps: float = 8 / 255,
    step: float = 2 / 255,
    steps: int = 5,
    decay: float = 1.0,
    di_prob: float = 0.5,
    di_rate: float = 0.9,
    generator: torch.Generator | None = None,
    check_finite: bool = True,
) -> torch.Tensor:
    """Return adversarial ``images`` that maximise ``loss_fn`` with MI-DI-FGSM in the L-inf ball of radius ``eps``.

    Args:
        loss_fn: ``loss_fn(x, scale) -> scalar tensor`` to maximise. ``x`` has the dtype and device of ``images``;
            its content was shrunk by ``scale`` towards the top-left corner and zero-padded (``scale == 1.0`` when
            no input diversity was applied), so normalised ``xywh`` ground-truth boxes must be multiplied by
            ``scale``. It must be differentiable with respect to ``x``.
        images: (N, C, H, W) clean images in [0, 1], any floating dtype (fp32, fp16, bf16).
        eps: L-inf radius.
        step: step size alpha.
        steps: number of iterations; 0 returns a copy of the clean images.
        decay: momentum decay factor mu.
        di_prob: probability of applying input diversity at each step.
        di_rate: smallest resize factor of input diversity; ``r ~ U[di_rate, 1)``.
        generator: CPU ``torch.Generator`` for the diversity draws; torch's global RNG when None.
        check_finite: check every step's gradient (each check waits for the GPU). False: no check here; a
            non-finite gradient then makes that sample's returned image NaN, for the caller to detect (the IKD
            model checks its adversarial term once, at the end).

    Returns:
        The detached adversarial batch, same dtype and device as ``images``, inside [0, 1] and within ``eps`` of
        ``images`` in L-inf (also after rounding to a low-precision dtype).

    Raises:
        AttackFailed: the gradient of some step is NaN or infinite (``check_finite``).

    Only the input is differentiated (module docstring); the update runs in float32 (:func:`_momentum_step`).
    """
    _check_arguments(images, eps, step, steps, di_prob, di_rate)
    clean = images.detach()
    if steps == 0:
        return clean.clone()
    clean32 = clean.float()
    lower = (clean32 - eps).clamp_(0.0, 1.0)
    upper = (clean32 + eps).clamp_(0.0, 1.0)
    x32 = clean32.clone()
    momentum = torch.zeros_like(clean32)

    for i in range(int(steps)):
        scale = _diversity_scale(di_prob, di_rate, generator)
        grad, loss = _input_gradient(loss_fn, x32, scale, clean.dtype)
        if check_finite and not bool(torch.isfinite(grad).all()):
            raise AttackFailed(f"non-finite input gradient at attack step {i + 1}/{steps} (loss={loss.item():.4g})")
        x32, momentum = _momentum_step(x32, momentum, grad, decay, step, lower, upper, carry_nan=not check_finite)

    return _round_into_ball(x32, clean, clean32, eps).detach()


class TeacherClsLoss:
    """The frozen teacher's classification loss on a batch's ground truth, as an attack objective.

    The criterion is Ultralytics' own: ``v8DetectionLoss`` for a standard ``Detect`` head, ``E2ELoss`` (two
    ``v8DetectionLoss`` branches, one-to-many and one-to-one) for an end-to-end head (YOLO26). The returned value is
    component 1 (``cls``) of the criterion's loss vector ``[box, cls, dfl] * batch_size``, i.e. the
    gain-weighted BCE over all anchors and classes with task-aligned soft targets, normalised by the batch's total
    target score and multiplied by the batch size. For ``E2ELoss`` it is ``o2m * cls_one2many + (1 - o2m) *
    cls_one2one`` with ``o2m = e2e_o2m``, by default the weight Ultralytics' schedule ends training with
    (``E2ELoss.final_o2m`` = 0.1), since the teacher is a finished model; if fusion removed one branch, the other
    gets weight 1.

    Hyper-parameters: the criterion reads ``model.args.box/cls/dfl``. A checkpoint-loaded model holds ``args`` as a
    dict (and a yaml-built one may hold none), so the criterion is built against an Ultralytics namespace from
    ``ultralytics.cfg.get_cfg()``: defaults, overridden by the loss gains found in the teacher's own ``args``,
    overridden by ``hyp``. The teacher's ``args`` attribute is swapped only for the duration of the criterion's
    construction and then restored.

    The teacher is run in eval mode (its BatchNorm statistics never change); if it is found in train mode it is
    switched to eval for the call and switched back. Its parameters are never differentiated here: callers take
    gradients with respect to the input only. If ``x`` is not in the teacher's dtype and autocast is off, ``x`` is
    cast to the teacher's dtype.

    Args:
        teacher: an Ultralytics ``DetectionModel`` whose last layer is a plain ``Detect`` head.
        hyp: optional hyper-parameter overrides (Ultralytics cfg keys, e.g. ``{"cls": 0.5}``).
        e2e_o2m: one-to-many weight for end-to-end heads; None uses ``E2ELoss.final_o2m``.

    Call: ``loss(x, batch, scale=1.0)`` with ``batch`` an Ultralytics training batch (``batch_idx``, ``cls``,
    ``bboxes`` normalised xywh; ``img`` is not used, ``x`` is the image) and ``scale`` the top-left shrink factor
    of :func:`mi_di_fgsm`'s input diversity (boxes are multiplied by it; ``batch`` itself is never modified).
    """

    def __init__(self, teacher: nn.Module, hyp: Mapping[str, Any] | None = None, e2e_o2m: float | None = None):
        """Check the teacher's head and prepare the loss hyper-parameters; the criterion is built lazily."""
        from ultralytics.nn.modules.head import Detect
        from ultralytics.nn.tasks import DetectionModel

        if not isinstance(teacher, DetectionModel):
            raise TypeError(f"TeacherClsLoss needs an Ultralytics DetectionModel, got {type(teacher).__name__}")
        head = teacher.model[-1]
        if type(head) is not Detect:
            raise NotImplementedError(
                f"TeacherClsLoss supports the plain Detect head (v8/11/26, incl. end-to-end), not "
                f"{type(head).__name__}: its criterion's loss vector has a different layout."
            )
        if e2e_o2m is not None and not 0.0 <= e2e_o2m <= 1.0:
            raise ValueError(f"e2e_o2m must be in [0, 1], got {e2e_o2m}")
        self.teacher = teacher
        self.e2e_o2m = e2e_o2m
        self.hyp = self._hyp(teacher, dict(hyp or {}))
        self._criterion = None
        self._device: torch.device | None = None

    @staticmethod
    def _hyp(teacher: nn.Module, overrides: dict[str, Any]):
        """Ultralytics default cfg < the teacher's own loss gains < ``overrides``, validated by ``get_cfg``."""
        from ultralytics.cfg import get_cfg

        args = getattr(teacher, "args", None)
        if not isinstance(args, Mapping):
            args = vars(args) if hasattr(args, "__dict__") else {}
        own = {k: args[k] for k in ("box", "cls", "dfl", "epochs") if k in args and args[k] is not None}
        return get_cfg(overrides={**own, **overrides})

    def __getstate__(self) -> dict:
        """Pickle without the cached criterion (rebuilt on first use)."""
        state = self.__dict__.copy()
        state["_criterion"] = None
        state["_device"] = None
        return state

    def _build_criterion(self):
        from ultralytics.utils.loss import E2ELoss, v8DetectionLoss

        teacher, head = self.teacher, self.teacher.model[-1]
        missing = object()
        saved = teacher.__dict__.get("args", missing)
        teacher.args = self.hyp  # v8DetectionLoss reads model.args as its hyper-parameters
        try:
            if getattr(head, "one2one_cv2", None) is not None:  # as DetectionModel.init_criterion decides
                criterion = E2ELoss(teacher, loss_fn=v8DetectionLoss)
            else:
                criterion = v8DetectionLoss(teacher)
        finally:
            if saved is missing:
                del teacher.args
            else:
                teacher.args = saved
        return criterion

    def criterion(self):
        """The Ultralytics criterion on the teacher's current device (rebuilt when the teacher moved)."""
        device = next(self.teacher.parameters()).device
        if self._criterion is None or self._device != device:
            self._criterion = self._build_criterion()
            self._device = device
        return self._criterion

    def __call__(self, x: torch.Tensor, batch: Mapping[str, torch.Tensor], scale: float = 1.0) -> torch.Tensor:
        """Teacher classification loss (scalar, differentiable w.r.t. ``x``) against ``batch``'s ground truth."""
        from ultralytics.utils.loss import E2ELoss

        criterion = self.criterion()
        bboxes = batch["bboxes"]
        targets = {
            "batch_idx": batch["batch_idx"],
            "cls": batch["cls"],
            "bboxes": bboxes * scale if scale != 1.0 else bboxes,  # top-left anchored shrink: xywh * scale
        }
        param = next(self.teacher.parameters())
        if x.dtype != param.dtype and not torch.is_autocast_enabled(x.device.type):
            x = x.to(param.dtype)
        was_training = self.teacher.training
        if was_training:
            self.teacher.eval()
        try:
            preds = self.teacher(x)
        finally:
            if was_training:
                self.teacher.train()

        if isinstance(criterion, E2ELoss):
            raw = criterion.one2many.parse_output(preds)
            o2m = criterion.final_o2m if self.e2e_o2m is None else self.e2e_o2m
            branches = [
                (criterion.one2many, raw.get("one2many"), o2m),
                (criterion.one2one, raw.get("one2one"), 1.0 - o2m),
            ]
            present = [(c, p, w) for c, p, w in branches if p]
            if len(present) == 1:  # a fused head keeps a single branch
                present = [(present[0][0], present[0][1], 1.0)]
            if not present:
                raise RuntimeError("the teacher's end-to-end head returned no raw predictions")
            return sum(w * c.loss(p, targets)[0][1] for c, p, w in present)
        return criterion(preds, targets)[0][1]
