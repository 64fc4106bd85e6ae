"""IKD's adversarial feature augmentation as a loss term (``adv_loss``): :class:`AdversarialTerm`, a mixin of
:class:`ikd_yolo.model.IKDDistillationModel`.

A fraction of the current (already augmented) batch is attacked with MI-DI-FGSM against the frozen teacher's
classification loss on the batch's ground truth (:mod:`ikd_yolo.adversarial`), at ``adv_scale`` of the image's
resolution (the perturbation is then resized to it). The student and the teacher then run on the adversarial images
and the ``adv_match`` mode, an object of :mod:`ikd_yolo.adv_match` (``matching``), turns their outputs into the term:
by default (``response``) the student's Detect outputs are pulled towards the teacher's; nothing of the step is kept
on the wrapper. The student's BatchNorm on the adversarial images follows ``adv_bn`` (:mod:`ikd_yolo.adv_bn`).
Removed (benchmarks/HISTORY.md): ``adv_target=gap``, an attack that ascended the matching term itself (the
student's distance to the teacher) instead of the teacher's classification loss.

Choices made deliberately:

- The attack differentiates with respect to the input only (``torch.autograd.grad``), so no parameter ever holds
  a gradient from it and DDP's reducer is untouched.
- The attack does not wait for the GPU to check each step: an image whose attack gradient was not finite comes out
  NaN and is replaced by its clean image (so a NaN never reaches the student, whose clean images share its forward
  with ``adv_bn=split``); such images are counted on the GPU and read once per epoch
  (``attack_failures``). A batch whose term is still not finite skips it (counted in ``adv_skipped``).
- When no clean-image KD term is on (the default recipe), the teacher runs on the attacked images only.

The mixin reads the wrapper's teacher, student, hooks (``_teacher_feats``, ``_student_feats``, ``feats_idx``),
``ikd``, ``same_reg_max`` and ``adv_active``, and calls its :meth:`pop_features`, :meth:`teacher_pass` and
:meth:`clean_kd_terms` (which returns, asked for them, the student's outputs on the adversarial images of a shared
forward).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import adv_match
from .adv_bn import running_bn_statistics, split_bn_statistics, take
from .adversarial import TeacherClsLoss, mi_di_fgsm
from .config import IKDConfig

# The teacher's classification loss is multiplied by this before its input gradient is taken: the gradient is
# L1-normalised per sample and only its sign is used, so the factor changes nothing except keeping fp16
# intermediate gradients above underflow under autocast.
ATTACK_LOSS_SCALE = 1024.0


def attack_step(ikd: IKDConfig) -> float:
    """The attack's step in pixel levels: ``adv_step_size``, or ``adv_eps / adv_steps`` when that is 0."""
    return ikd.adv_step_size or ikd.adv_eps / max(1, ikd.adv_steps)


def attacked_count(ikd: IKDConfig, batch_size: int) -> int:
    """How many images of a batch (its first ones) the attack takes: ``adv_batch_frac`` of them, at least one."""
    return max(1, math.ceil(ikd.adv_batch_frac * batch_size))


def sub_batch(batch: dict, n: int) -> dict:
    """The first ``n`` images of an Ultralytics training batch with their targets."""
    keep = batch["batch_idx"] < n
    return {
        "img": batch["img"][:n],
        "batch_idx": batch["batch_idx"][keep],
        "cls": batch["cls"][keep],
        "bboxes": batch["bboxes"][keep],
    }


class AdversarialTerm:
    """The adversarial term of :class:`ikd_yolo.model.IKDDistillationModel` (module docstring).

    Attributes:
        adv_active (bool): Whether the adversarial term is on for the current epoch (set by the trainer).
        adv_skipped (int): Batches whose adversarial term was not finite and was skipped.
        matching (AdvMatch): The ``adv_match`` mode (:mod:`ikd_yolo.adv_match`).
    """

    def init_adversarial_term(self, adv_active: bool) -> None:
        """The term's state, empty (called by the wrapper's constructor, once ``same_reg_max`` is known)."""
        self.adv_active = adv_active
        self.adv_skipped = 0
        self._attack_failures: torch.Tensor | int = 0  # images whose attack gradient was not finite (on the device)
        self._teacher_loss: TeacherClsLoss | None = None
        self.matching = adv_match.make(self.ikd, self.same_reg_max)

    def __getstate__(self):
        """Drop the cached teacher criterion (it references the teacher, which must not reach EMA or checkpoints) and
        the epoch's count of failed attacks."""
        state = super().__getstate__()
        state["_teacher_loss"] = None
        state["_attack_failures"] = 0
        return state

    def clean_and_adversarial_terms(self, batch: dict):
        """:meth:`clean_kd_terms` plus the adversarial term ``adv`` (times ``adv_weight``): with ``adv_bn=split`` the
        student sees the clean and the adversarial images in one forward, with ``running`` in two."""
        if self.ikd.adv_bn == "running":
            clean = self.clean_kd_terms(batch)
            term = self.adversarial_feature_loss(batch)
        else:
            self._teacher_feats.clear()
            if self.soft_terms_on:
                self.teacher_pass(batch)
            clean_teacher = dict(self._teacher_feats)  # the attack's teacher passes empty the hooks
            adv_img = self.adversarial_images(batch)
            self._teacher_feats.update(clean_teacher)
            clean = self.clean_kd_terms(batch, extra=adv_img, teacher_done=True)
            term = self.adversarial_term(adv_img, clean.extra_student)
        clean.terms["adv"] = term * self.ikd.adv_weight
        return clean.regular, clean.items, clean.terms

    def joint_forward(self, img: torch.Tensor, extra: torch.Tensor):
        """The student's forward of ``img`` and the adversarial images ``extra`` together (``adv_bn=split``: each group
        normalised by its own batch statistics): the training outputs on ``img`` and the student's hooked outputs on
        ``extra``; the hooks keep the outputs of ``img``."""
        n = img.shape[0]
        with split_bn_statistics(self.student_model, n):
            both = self.student_model(torch.cat([img, extra.to(img.dtype)]))
        hooked = dict(self._student_feats)
        self._student_feats.clear()  # the hooks' own dict: emptied and refilled, never replaced
        self._student_feats.update({k: take(v, slice(0, n)) for k, v in hooked.items()})
        return take(both, slice(0, n)), {k: take(v, slice(n, None)) for k, v in hooked.items()}

    def adversarial_feature_loss(self, batch: dict) -> torch.Tensor:
        """Attack part of the batch against the teacher and match student to teacher on it, with a student forward of
        its own normalised by the running statistics (``adv_bn=running``, the reference's frozen BatchNorm)."""
        adv_img = self.adversarial_images(batch)
        self._student_feats.clear()
        with running_bn_statistics(self.student_model):
            self.student_model(adv_img)
        return self.adversarial_term(adv_img, dict(self._student_feats))

    def adversarial_term(self, adv_img: torch.Tensor, student: dict) -> torch.Tensor:
        """The mode's loss (:attr:`matching`) on the adversarial images ``adv_img``, from the student's hooked outputs
        on them (``student``) and the teacher's forward on them, run here. Zero, and counted in ``adv_skipped``, when
        it is not finite (e.g. a failed attack)."""
        self._teacher_feats.clear()
        self._student_feats.clear()
        with torch.no_grad():
            self.teacher_model(adv_img)
        self._student_feats.update(student)
        total = self.matching.loss(self.pop_features())
        if not torch.isfinite(total).all():  # the term's one wait for the GPU
            self.adv_skipped += 1
            return torch.zeros(1, device=adv_img.device)
        return total

    def adversarial_images(self, batch: dict) -> torch.Tensor:
        """The attacked part of the batch (its first ``adv_batch_frac``) made adversarial against the teacher at
        ``adv_scale`` of its resolution, detached. An image whose attack gradient was not finite is returned clean
        (and counted in ``_attack_failures``, without waiting for the GPU)."""
        part = sub_batch(batch, attacked_count(self.ikd, batch["img"].shape[0]))
        if self._teacher_loss is None:
            self._teacher_loss = TeacherClsLoss(self.teacher_model)
        teacher_loss = self._teacher_loss
        clean = part["img"].detach()
        h, w = clean.shape[-2:]
        stride = int(self.teacher_model.stride.max())  # the attack's input must stay a multiple of it
        size = tuple(max(stride, round(v * self.ikd.adv_scale / stride) * stride) for v in (h, w))
        attacked = clean if size == (h, w) else F.interpolate(clean, size=size, mode="bilinear", align_corners=False)
        try:
            adv_img = mi_di_fgsm(
                lambda x, scale: teacher_loss(x, part, scale) * ATTACK_LOSS_SCALE,
                attacked,
                eps=self.ikd.adv_eps / 255,
                step=attack_step(self.ikd) / 255,
                steps=self.ikd.adv_steps,
                decay=self.ikd.adv_decay,
                di_prob=self.ikd.adv_di_prob,
                di_rate=self.ikd.adv_di_rate,
                check_finite=False,  # a non-finite step makes that image NaN: replaced by its clean image below
            )
        finally:
            self._teacher_feats.clear()  # the attack's forwards left graph-holding tensors in the hooks
            self._student_feats.clear()

        if size != (h, w):  # the perturbation found at the attack's resolution, on the full-size images
            delta = F.interpolate(adv_img - attacked, size=(h, w), mode="bilinear", align_corners=False)
            eps = self.ikd.adv_eps / 255
            adv_img = (clean + delta.clamp(-eps, eps)).clamp(0.0, 1.0)
        bad = ~torch.isfinite(adv_img).flatten(1).all(dim=1)
        self._attack_failures = self._attack_failures + bad.sum()
        return torch.where(bad.view(-1, 1, 1, 1), clean, adv_img)
