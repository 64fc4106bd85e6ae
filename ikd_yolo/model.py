"""IKDDistillationModel: Ultralytics' DistillationModel plus IKD's adversarial feature term.

Ultralytics' ``DistillationModel`` already does the clean-image part: frozen teacher, forward hooks on the Detect
inputs of both networks, a trained 1x1 projector per level, score-weighted L2 (weight ``dis``), teacher stripped
from checkpoints, and a zero ``dis_loss`` in eval mode so validation columns line up. This subclass adds two things:

**Choice of clean-image KD loss** (``kd_loss``). ``native`` keeps Ultralytics' term untouched (``super().loss``).
``cwd``, ``mgd`` and ``fgd`` (:mod:`ikd_yolo.kd_losses`) replace it: the same teacher and student forwards and
detection loss, then the chosen loss on the projected student features vs the teacher's, reported as
``dis_loss`` (weighted by its own ``kd_*`` keys; ``dis`` is the native term's weight only). Its trainable parts
(MGD's generation blocks, FGD's global-context blocks) are the submodule ``kd_module``, so the optimizer, the EMA,
checkpoints and resume carry them like the projector.

**Adversarial feature augmentation.** A fraction of the current (already augmented) batch is attacked with
MI-DI-FGSM against the frozen teacher's classification loss on the batch's ground truth
(:mod:`ikd_yolo.adversarial`). Teacher and student then run on the adversarial images and the student's projected
Detect-input features are pulled towards the teacher's (:mod:`ikd_yolo.losses`). The term is reported as
``adv_loss`` (zero when inactive, and in eval mode, because Ultralytics freezes loss columns at the first batch).

Choices made deliberately:

- The attack differentiates with respect to the input only (``torch.autograd.grad``), so no parameter ever holds
  a gradient from it and DDP's reducer is untouched.
- The student runs on adversarial images in train mode (batch statistics, as for clean images) but its BatchNorm
  running statistics are left as they were, so that evaluation statistics describe clean images only.
- A batch on which the attack produces a non-finite gradient skips the term (counted in ``adv_skipped``).
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import torch
from torch import nn
from ultralytics.nn.distill_model import DistillationModel

from .adversarial import AttackFailed, TeacherClsLoss, mi_di_fgsm
from .config import IKDConfig
from .kd_losses import build_kd_module
from .losses import feature_loss

# The teacher's classification loss is multiplied by this before its input gradient is taken: the gradient is
# L1-normalised per sample and only its sign is used, so the factor changes nothing except keeping fp16
# intermediate gradients above underflow under autocast.
ATTACK_LOSS_SCALE = 1024.0


@contextlib.contextmanager
def frozen_bn_statistics(model: nn.Module):
    """Run ``model`` in train mode without updating its BatchNorm running statistics."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in bns]
    for m in bns:
        m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch: unchanged
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(bns, saved):
            m.momentum = momentum
            m.num_batches_tracked.copy_(tracked)


def sub_batch(batch: dict, n: int) -> dict:
    """The first ``n`` images of an Ultralytics training batch with their targets."""
    keep = batch["batch_idx"] < n
    return {
        "img": batch["img"][:n],
        "batch_idx": batch["batch_idx"][keep],
        "cls": batch["cls"][keep],
        "bboxes": batch["bboxes"][keep],
    }


class IKDDistillationModel(DistillationModel):
    """Teacher-student wrapper computing detection loss, clean feature KD (``dis_loss``) and IKD's ``adv_loss``.

    Attributes:
        ikd (IKDConfig): IKD settings.
        adv_active (bool): Whether the adversarial term is on for the current epoch (set by the trainer).
        adv_skipped (int): Batches whose attack failed numerically and skipped the term.
    """

    def __init__(self, teacher_model: str | Path | nn.Module, student_model: nn.Module, ikd: IKDConfig):
        """Build the wrapper; ``ikd`` holds the settings of the adversarial term."""
        super().__init__(teacher_model=teacher_model, student_model=student_model)
        self.ikd = ikd
        self.adv_active = ikd.adv_aug
        self.adv_skipped = 0
        self._teacher_loss: TeacherClsLoss | None = None
        channels = [p[-1].out_channels for p in self.projector]  # teacher channels per level
        kd_module = build_kd_module(ikd, channels)
        self.kd_module = kd_module.to(next(self.projector.parameters()).device) if kd_module is not None else None

    def __getstate__(self):
        """Drop the cached teacher criterion: it references the teacher, which must not reach EMA or checkpoints."""
        state = super().__getstate__()
        state["_teacher_loss"] = None
        return state

    def loss(self, batch: dict, preds=None):
        """Detection loss + clean feature KD (``kd_loss``) + adversarial feature KD; ``adv_loss`` is always emitted."""
        if self.kd_module is None or not self.training:  # native, and every kd_loss in eval mode (zero dis_loss)
            loss, items = super().loss(batch, preds)
        else:
            loss, items = self.clean_kd_loss(batch)
        adv = torch.zeros(1, device=batch["img"].device)
        if self.training and self.ikd.adv_aug and self.adv_active and self.ikd.adv_weight > 0:
            adv = self.adversarial_feature_loss(batch) * self.ikd.adv_weight
        items["adv_loss"] = adv.detach()
        return torch.cat([loss, adv * batch["img"].shape[0]]), items

    def pop_neck_features(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The hooked Detect-input features of the last forwards: projected student's and teacher's, per level.

        The hook dicts are emptied, so no graph-holding tensor outlives the step.
        """
        levels = range(len(self.feats_idx) - 1)  # the last tapped layer is the Detect head itself
        students = [self.projector[i](self.decouple_outputs(self._student_feats[i])) for i in levels]
        teachers = [self.decouple_outputs(self._teacher_feats[i]) for i in levels]
        self._teacher_feats.clear()
        self._student_feats.clear()
        return students, teachers

    def clean_kd_loss(self, batch: dict):
        """``DistillationModel.loss``'s training path with ``kd_module`` in place of the score-weighted L2."""
        self._teacher_feats.clear()
        self._student_feats.clear()
        with torch.no_grad():
            self.teacher_model(batch["img"])  # hooks capture teacher features
        preds = self.student_model(batch["img"])  # hooks capture student features
        regular_loss, loss_items = self.student_model.loss(batch, preds)
        students, teachers = self.pop_neck_features()
        kd = self.kd_module(students, teachers, batch).reshape(1)
        loss_items["dis_loss"] = kd.detach()
        return torch.cat([regular_loss, kd * batch["img"].shape[0]]), loss_items

    def adversarial_feature_loss(self, batch: dict) -> torch.Tensor:
        """Attack part of the batch against the teacher and match student to teacher features on it."""
        device = batch["img"].device
        n = max(1, math.ceil(self.ikd.adv_batch_frac * batch["img"].shape[0]))
        part = sub_batch(batch, n)
        if self._teacher_loss is None:
            self._teacher_loss = TeacherClsLoss(self.teacher_model)
        teacher_loss = self._teacher_loss
        try:
            adv_img = mi_di_fgsm(
                lambda x, scale: teacher_loss(x, part, scale) * ATTACK_LOSS_SCALE,
                part["img"].detach(),
                eps=self.ikd.adv_eps / 255,
                step=self.ikd.adv_step / 255,
                steps=self.ikd.adv_steps,
                decay=self.ikd.adv_decay,
                di_prob=self.ikd.adv_di_prob,
                di_rate=self.ikd.adv_di_rate,
            )
        except AttackFailed:
            self.adv_skipped += 1
            return torch.zeros(1, device=device)
        finally:
            self._teacher_feats.clear()  # the attack's forwards left graph-holding tensors in the hooks
            self._student_feats.clear()

        with torch.no_grad():
            self.teacher_model(adv_img)
        with frozen_bn_statistics(self.student_model):
            self.student_model(adv_img)
        total = torch.zeros(1, device=device)
        for student_feat, teacher_feat in zip(*self.pop_neck_features()):
            total = total + feature_loss(self.ikd.adv_loss, student_feat, teacher_feat, self.ikd.adv_cwd_tau)
        if not torch.isfinite(total).all():
            self.adv_skipped += 1
            return torch.zeros(1, device=device)
        return total
