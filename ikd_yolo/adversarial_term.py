"""IKD's adversarial feature augmentation as a loss term (``adv_loss``): :class:`AdversarialTerm`, a mixin of
:class:`ikd_yolo.model.IKDDistillationModel`.

A fraction of the current (already augmented) batch is attacked with MI-DI-FGSM against the frozen teacher's
classification loss on the batch's ground truth (:mod:`ikd_yolo.adversarial`), at ``adv_scale`` of the image's
resolution (the perturbation is then resized to it). Teacher and student then run on the adversarial images and the
student's outputs are pulled towards the teacher's: with ``adv_match=response`` (default) its Detect outputs, by BCKD
and LD (:mod:`ikd_yolo.response_kd`); with ``features`` (the reference's term) its projected Detect-input features
(:mod:`ikd_yolo.kd_losses`); with ``labels`` the teacher is not matched at all: the student's detection loss on the
adversarial images and the batch's (teacher-refined) labels; with ``delta`` the student's outputs must move from its
own clean outputs as the teacher's move from the teacher's (BCKD and LD towards the student's clean logits plus the
teacher's change under the attack), which transfers how the teacher reacts to the perturbation without pulling the
student towards the teacher's clean-image confidences. ``adv_target=gap`` makes the attack ascend the matching term
itself (the student's distance to the teacher) instead of the teacher's classification loss. The student's BatchNorm
on the adversarial images follows ``adv_bn`` (:mod:`ikd_yolo.adv_bn`).

Choices made deliberately:

- The attack differentiates with respect to the input only (``torch.autograd.grad``), so no parameter ever holds
  a gradient from it and DDP's reducer is untouched.
- The attack does not wait for the GPU to check each step: an image whose attack gradient was not finite comes out
  NaN and is replaced by its clean image (so a NaN never reaches the student, whose clean images share its forward
  with ``adv_bn`` split or joint); such images are counted on the GPU and read once per epoch
  (``attack_failures``). A batch whose term is still not finite skips it (counted in ``adv_skipped``).
- When no clean-image KD term is on (the default recipe), the teacher runs on the attacked images only.

The mixin reads the wrapper's teacher, student, hooks (``_teacher_feats``, ``_student_feats``, ``feats_idx``),
``ikd``, ``same_reg_max`` and ``adv_active``, and calls its :meth:`pop_features`, :meth:`teacher_pass` and
:meth:`clean_kd_terms`.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F

from .adv_bn import ONE_FORWARD, frozen_bn_statistics, running_bn_statistics, split_bn_statistics, take
from .adversarial import TeacherClsLoss, mi_di_fgsm
from .config import IKDConfig
from .kd_losses import FEATURE_LOSSES, feature_loss
from .response_kd import bckd_loss, head_outputs, ld_loss

# The teacher's classification loss is multiplied by this before its input gradient is taken: the gradient is
# L1-normalised per sample and only its sign is used, so the factor changes nothing except keeping fp16
# intermediate gradients above underflow under autocast.
ATTACK_LOSS_SCALE = 1024.0


def attack_step(ikd: IKDConfig) -> float:
    """The attack's step in pixel levels: ``adv_step_size``, or ``adv_eps / adv_steps`` when that is 0."""
    return ikd.adv_step_size or ikd.adv_eps / max(1, ikd.adv_steps)


def adv_loss_name(ikd: IKDConfig) -> str:
    """The adversarial term's feature loss: ``adv_loss``, or for ``base`` the feature base's (mse if it has none)."""
    if ikd.adv_loss != "base":
        return ikd.adv_loss
    return ikd.kd_loss if ikd.kd_loss in FEATURE_LOSSES else "mse"


def attacked_count(ikd: IKDConfig, batch_size: int) -> int:
    """How many images of a batch (its first ones) the attack takes: ``adv_batch_frac`` of them, at least one."""
    return max(1, math.ceil(ikd.adv_batch_frac * batch_size))


def head_logits(hooked, n: int | None = None) -> dict[str, torch.Tensor]:
    """The dense class and DFL logits of a hooked Detect output (the first ``n`` images), detached."""
    out = head_outputs(hooked)
    return {k: out[k][:n].detach() for k in ("boxes", "scores")}


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
    """

    def init_adversarial_term(self, adv_active: bool) -> None:
        """The term's state, empty (called by the wrapper's constructor)."""
        self.adv_active = adv_active
        self.adv_skipped = 0
        self._attack_failures: torch.Tensor | int = 0  # images whose attack gradient was not finite (on the device)
        self._teacher_loss: TeacherClsLoss | None = None
        self._adv_student_feats: dict = {}  # adv_bn split/joint: the student's hooked outputs on the adversarial images
        self._adv_preds = None  # adv_bn split/joint: the student's training outputs on them (adv_match=labels)
        self._clean_heads: dict = {}  # adv_match=delta: student's and teacher's logits on the attacked images, clean

    def __getstate__(self):
        """Drop the cached teacher criterion (it references the teacher, which must not reach EMA or checkpoints) and
        the step's state."""
        state = super().__getstate__()
        state["_teacher_loss"] = None
        state["_adv_student_feats"] = {}
        state["_adv_preds"] = None
        state["_clean_heads"] = {}
        state["_attack_failures"] = 0
        return state

    def clean_and_adversarial_terms(self, batch: dict):
        """:meth:`clean_kd_terms` plus the adversarial term ``adv`` (times ``adv_weight``): with ``adv_bn`` split or
        joint the student sees the clean and the adversarial images in one forward, else in two."""
        if self.ikd.adv_bn not in ONE_FORWARD:
            regular, items, terms = self.clean_kd_terms(batch)
            terms["adv"] = self.adversarial_feature_loss(self._refined) * self.ikd.adv_weight
            self._refined = None
            return regular, items, terms
        self._teacher_feats.clear()
        batch = self.teacher_pass(batch, self.soft_terms_on)  # the attack reads the labels the student learns
        clean_teacher = dict(self._teacher_feats)  # the attack's teacher passes empty the hooks
        adv_img = self.adversarial_images(batch)
        self._teacher_feats.update(clean_teacher)
        regular, items, terms = self.clean_kd_terms(batch, extra=adv_img, teacher_done=True)
        labelled = sub_batch(self._refined, adv_img.shape[0]) if self.ikd.adv_match == "labels" else None
        clean = batch["img"][: adv_img.shape[0]]  # the attack takes the first images
        term = self.adversarial_term(adv_img, clean, self._adv_student_feats, self._adv_preds, labelled)
        terms["adv"] = term * self.ikd.adv_weight
        self._adv_student_feats, self._adv_preds, self._refined = {}, None, None
        return regular, items, terms

    def joint_forward(self, img: torch.Tensor, extra: torch.Tensor):
        """The student's forward of ``img`` and the adversarial images ``extra`` together (``adv_bn`` split or
        joint): the training outputs on ``img``; the hooks keep the features of ``img``, those of ``extra`` are left
        in ``_adv_student_feats`` and (``adv_match=labels``) its training outputs in ``_adv_preds``."""
        n = img.shape[0]
        split = self.ikd.adv_bn == "split"
        with split_bn_statistics(self.student_model, n) if split else contextlib.nullcontext():
            both = self.student_model(torch.cat([img, extra.to(img.dtype)]))
        preds = take(both, slice(0, n))
        if self.ikd.adv_match == "labels":  # the only reader of the adversarial images' training outputs
            self._adv_preds = take(both, slice(n, None))
        hooked = dict(self._student_feats)
        self._student_feats.clear()  # the hooks' own dict: emptied and refilled, never replaced
        self._student_feats.update({k: take(v, slice(0, n)) for k, v in hooked.items()})
        self._adv_student_feats = {k: take(v, slice(n, None)) for k, v in hooked.items()}
        return preds

    def keep_clean_student_head(self, batch_size: int) -> None:
        """``adv_match=delta``: keep the student's Detect logits on the clean images the attack will take, from the
        hooks of the clean forward."""
        if self.ikd.adv_match == "delta" and self.ikd.adv_aug and self.adv_active:
            head = self._student_feats[len(self.feats_idx) - 1]  # the attack takes the first images of the batch
            self._clean_heads["student"] = head_logits(head, attacked_count(self.ikd, batch_size))

    def adversarial_feature_loss(self, batch: dict) -> torch.Tensor:
        """Attack part of the batch against the teacher and match student to teacher features on it, with a student
        forward of its own (``adv_bn`` batch or running). ``batch`` carries the labels the detection loss used (refined
        per batch with ``kd_labels_mode=batch``): the attack and ``adv_match=labels`` read them."""
        adv_img = self.adversarial_images(batch)
        self._student_feats.clear()
        with self.separate_adv_bn():
            preds = self.student_model(adv_img)
        hooked = dict(self._student_feats)
        part = sub_batch(batch, adv_img.shape[0])
        return self.adversarial_term(adv_img, part["img"], hooked, preds, part)

    def separate_adv_bn(self):
        """The student's BatchNorm for a forward of adversarial images of their own: running statistics
        (``adv_bn=running``), else their own batch statistics; the running statistics do not move."""
        bn = running_bn_statistics if self.ikd.adv_bn == "running" else frozen_bn_statistics
        return bn(self.student_model)

    def adversarial_term(
        self, adv_img: torch.Tensor, clean_img: torch.Tensor, student_hooked: dict, preds, labelled: dict | None
    ) -> torch.Tensor:
        """The loss between the student's hooked outputs on ``adv_img`` and the teacher's on the same images (with
        ``adv_match=delta``, the teacher's change from ``clean_img``, the same images before the attack), or
        (``adv_match=labels``) the student's detection loss on them, per image, from its training outputs ``preds``
        and the attacked images' labels ``labelled``. Zero, and counted in ``adv_skipped``, when it is not finite
        (e.g. a failed attack)."""
        self._teacher_feats.clear()
        self._student_feats.clear()
        if self.ikd.adv_match == "labels":  # no teacher pass: the labels are the batch's (teacher-refined ones)
            loss, _ = self.student_model.loss(labelled, preds)
            total = loss.sum().reshape(1) / adv_img.shape[0]
        else:
            with torch.no_grad():
                if self.ikd.adv_match == "delta":  # the teacher's outputs on the same images before the attack
                    self.teacher_model(clean_img)
                    self._clean_heads["teacher"] = head_logits(self._teacher_feats[len(self.feats_idx) - 1])
                    self._teacher_feats.clear()
                self.teacher_model(adv_img)
            self._student_feats.update(student_hooked)
            total = self.match_loss()
        if not torch.isfinite(total).all():  # the term's one wait for the GPU
            self.adv_skipped += 1
            return torch.zeros(1, device=adv_img.device)
        return total

    def match_loss(self) -> torch.Tensor:
        """The adversarial term's loss between the hooked student and teacher outputs of the last forwards
        (``adv_match``: projected features or Detect outputs); the hooks are emptied."""
        students, teachers, student_head, teacher_head = self.pop_features()
        total = torch.zeros(1, device=teachers[0].device)
        if self.ikd.adv_match == "delta":  # targets: the student's clean logits moved as the teacher's moved
            clean, self._clean_heads = self._clean_heads, {}
            student, teacher = clean["student"], clean["teacher"]
            keys = ("boxes", "scores") if self.same_reg_max else ("scores",)  # DFL bins: only when comparable
            teacher_head = {k: student[k] + (teacher_head[k] - teacher[k]) for k in keys}
        if self.ikd.adv_match in ("response", "delta"):  # the target outputs on the adversarial images
            total = total + bckd_loss(student_head["scores"], teacher_head["scores"], self.ikd.kd_cls_beta)
            if self.same_reg_max:
                total = total + ld_loss(
                    student_head["boxes"], teacher_head["boxes"], teacher_head["scores"], self.ikd.kd_dfl_tau
                )
        else:
            for student_feat, teacher_feat in zip(students, teachers, strict=True):
                loss = feature_loss(adv_loss_name(self.ikd), student_feat, teacher_feat, self.ikd.adv_cwd_tau)
                total = total + loss
        return total

    def student_teacher_gap(self, x: torch.Tensor) -> torch.Tensor:
        """``adv_target=gap``'s attack objective: the adversarial term between the student and the teacher on
        ``x`` (differentiable with respect to ``x``; the student's BatchNorm statistics do not move). BCKD and LD
        take the teacher's outputs as fixed targets, so with ``adv_match=response`` the teacher runs without a graph
        (the gradient reaches ``x`` through the student only, as it would anyway)."""
        self._teacher_feats.clear()
        self._student_feats.clear()
        with torch.no_grad() if self.ikd.adv_match == "response" else contextlib.nullcontext():
            self.teacher_model(x)
        with self.separate_adv_bn():
            self.student_model(x)
        return self.match_loss().sum()

    def adversarial_images(self, batch: dict) -> torch.Tensor:
        """The attacked part of the batch (its first ``adv_batch_frac``) made adversarial against the teacher at
        ``adv_scale`` of its resolution, detached. An image whose attack gradient was not finite is returned clean
        (and counted in ``_attack_failures``, without waiting for the GPU)."""
        part = sub_batch(batch, attacked_count(self.ikd, batch["img"].shape[0]))
        if self.ikd.adv_target == "gap":

            def objective(x, scale):
                return self.student_teacher_gap(x)
        else:
            if self._teacher_loss is None:
                self._teacher_loss = TeacherClsLoss(self.teacher_model)
            teacher_loss = self._teacher_loss

            def objective(x, scale):
                return teacher_loss(x, part, scale)

        clean = part["img"].detach()
        h, w = clean.shape[-2:]
        stride = int(self.teacher_model.stride.max())  # the attack's input must stay a multiple of it
        size = tuple(max(stride, round(v * self.ikd.adv_scale / stride) * stride) for v in (h, w))
        attacked = clean if size == (h, w) else F.interpolate(clean, size=size, mode="bilinear", align_corners=False)
        try:
            adv_img = mi_di_fgsm(
                lambda x, scale: objective(x, scale) * ATTACK_LOSS_SCALE,
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
