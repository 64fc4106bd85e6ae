"""When and how strongly every distillation term acts: the per-iteration scale and the ``kd_balance`` calibration.

**Projector warm-up.** For the first ``kd_warmup_epochs`` the student is trained on detection alone while the
projector (and a base's own modules) learn to map the student's features onto the teacher's: the feature term is
computed on detached student features, so it trains only them (FitNets' hint stage). A random projector would
otherwise send the student gradients unrelated to the teacher, and make any calibration of the weights meaningless.

**Scale.** After the warm-up every KD term (``dis_loss``, ``cls_kd``, ``dfl_kd``, ``adv_loss``) is multiplied by one
per-iteration scale :func:`kd_scale`: a cosine from 1 down to ``kd_final_scale`` at the last KD epoch (DAMO-YOLO
and YOLOv6 decay their KD weights the same way), and 0 in the ``close_mosaic`` epochs when ``kd_close_mosaic_off``
is set (MMYOLO detaches its KD losses there): the teacher is not run then (the labels it refined stay refined).

**Calibration** (``kd_balance = f > 0``). Fixed KD weights mean different things for different teachers, feature
maps and datasets (the native term's ``dis=6`` is 3-4x the whole detection loss on one setup, a fraction of it on
another). So on ``kd_balance_batches`` training batches the model measures, for the detection loss and for
each KD term at its configured weight, the L2 norm of its gradient on the student's parameters, and then sets each
term's gain so that its gradient norm is ``f`` times the detection loss's (Tencent's YOLO-Master sets each KD weight
the same way, at 10 %). The calibration runs on the first batches after the projector warm-up (on the first
batches of training when there is no feature term, hence no projector to warm up), with the KD terms off for the
student. Without a feature term the KD scale is still 0 for the first ``kd_warmup_epochs``. The gains are logged,
written to ``ikd.yaml``, and saved with the model's buffers, so a resumed run keeps them.
"""

from __future__ import annotations

import math

import torch


def kd_scale(progress: float, stop: float, warmup: float, final: float) -> float:
    """Scale of the KD terms on the student after ``progress`` epochs of training (fractional: per iteration).

    0 during the projector warm-up (``progress <= warmup``) and after ``stop``; in between a cosine from 1 down to
    ``final``.

    Args:
        progress: Epochs done, counting the current batch (``epoch + (i + 1) / batches_per_epoch``).
        stop: Epochs after which every KD term is off (the start of ``close_mosaic``, or the last epoch).
        warmup: Length of the projector warm-up, in epochs (0: none).
        final: Value of the cosine decay at ``stop``, relative to 1.
    """
    if progress > stop + 1e-9 or in_projector_warmup(progress, warmup):
        return 0.0
    span = stop - warmup
    p = min(1.0, max(0.0, (progress - warmup) / span)) if span > 0 else 1.0
    return final + (1.0 - final) * (1.0 + math.cos(math.pi * p)) / 2.0


def in_projector_warmup(progress: float, warmup: float) -> bool:
    """Whether the batch ending at ``progress`` epochs belongs to the projector warm-up (the first ``warmup``)."""
    return warmup > 0 and progress <= warmup + 1e-9


def first_kd_batch(batches_per_epoch: int, warmup: float, calibration_batches: int, feature_term: bool) -> int:
    """The training batch (1-based) at which the KD terms first act on the student: after the projector warm-up and
    the ``kd_balance`` calibration (``calibration_batches``, 0 without it), which follows the warm-up when there is a
    feature term and otherwise starts with training, beside it."""
    warm = math.floor(warmup * batches_per_epoch + 1e-9) if warmup > 0 else 0
    return (warm + calibration_batches if feature_term else max(warm, calibration_batches)) + 1


def kd_stop_epoch(epochs: int, close_mosaic: int, close_mosaic_off: bool) -> int:
    """The number of epochs, from the first, in which the KD terms act."""
    if close_mosaic_off and 0 < close_mosaic < epochs:
        return epochs - close_mosaic
    return epochs


GRAD_SCALE = 1024.0  # losses are scaled by this before their gradients are measured (fp16 underflow); ratios only


def grad_norm(loss: torch.Tensor, params: list[torch.Tensor]) -> float:
    """L2 norm of d(loss)/d(params) (unused parameters count as zero), keeping the graph for the real backward."""
    if not loss.requires_grad:
        return 0.0
    grads = torch.autograd.grad(loss * GRAD_SCALE, params, retain_graph=True, allow_unused=True)
    squares = [g.float().pow(2).sum() for g in grads if g is not None]
    if not squares:
        return 0.0
    return math.sqrt(float(torch.stack(squares).sum())) / GRAD_SCALE  # one device sync


class GradientBalance:
    """Accumulates gradient norms over the calibration batches and turns them into per-term gains."""

    def __init__(self, fraction: float, batches: int, terms: tuple[str, ...]):
        self.fraction, self.batches, self.terms = fraction, batches, terms
        self.det: list[float] = []
        self.kd: dict[str, list[float]] = {t: [] for t in terms}

    def observe(self, det_loss: torch.Tensor, kd_losses: dict[str, torch.Tensor], params: list[torch.Tensor]) -> bool:
        """Measure one batch; return True once enough batches are in."""
        self.det.append(grad_norm(det_loss, params))
        for name in self.terms:
            norm = grad_norm(kd_losses[name], params) if name in kd_losses else 0.0
            if norm > 0 and math.isfinite(norm):  # a term that did not run (or failed) this batch is not counted
                self.kd[name].append(norm)
        return len(self.det) >= self.batches

    def gains(self) -> dict[str, float]:
        """Gain per term: fraction * mean detection gradient norm / mean term gradient norm (1 if never measured)."""
        det = sum(self.det) / max(1, len(self.det))
        out = {}
        for name, norms in self.kd.items():
            mean = sum(norms) / len(norms) if norms else 0.0
            out[name] = self.fraction * det / mean if mean > 0 and math.isfinite(mean) and det > 0 else 1.0
        return out
