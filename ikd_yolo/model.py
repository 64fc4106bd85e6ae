"""IKDDistillationModel: Ultralytics' DistillationModel plus response KD, a KD schedule and IKD's adversarial term.

Ultralytics' ``DistillationModel`` provides the frame: frozen teacher, forward hooks on the Detect inputs and on the
Detect head of both networks, a trained 1x1 projector per level, teacher stripped from checkpoints, and a zero
``dis_loss`` in eval mode so validation columns line up. This subclass computes the training loss itself:

**Feature base** (``kd_loss``, reported as ``dis_loss``). ``native`` is Ultralytics' score-weighted L2 (weight
``dis``), computed with Ultralytics' own ``loss_sl2``; ``pkd``, ``cwd``, ``mgd`` and ``fgd``
(:mod:`ikd_yolo.kd_losses`) compare the projected student features with the teacher's, with their own ``kd_*``
weights. Their trainable parts (MGD's generation blocks, FGD's global-context blocks) are the submodule
``kd_module``, so the optimizer, the EMA, checkpoints and resume carry them like the projector.

**Response terms** (``cls_kd``, ``dfl_kd``; :mod:`ikd_yolo.response_kd`): BCKD on the class logits and LD on the
DFL bins, from the Detect outputs the hooks already capture.

**Teacher-refined labels** (``kd_labels``; :mod:`ikd_yolo.pseudo_labels`): the teacher's detections correct the
labels' boxes and add the objects they miss. The trainer has the training set refined once, before the first epoch
(:meth:`IKDDistillationModel.refine_dataset_labels`); the loss then trains on the refined labels as on any labels.

**Schedule and calibration** (:mod:`ikd_yolo.schedule`): every KD term is multiplied by ``kd_scale`` (set by the
trainer each iteration) and by a per-term gain, calibrated on the first batches when ``kd_balance`` is on and kept
in the buffer ``kd_gain``. During the projector warm-up the feature term trains the projector on detached student
features. At scale 0 (after the warm-up), or when every KD term's weight is 0, the teacher is not run.

**Adversarial feature augmentation** (:mod:`ikd_yolo.adversarial_term`, the mixin :class:`AdversarialTerm`): part
of the batch is attacked against the frozen teacher (:mod:`ikd_yolo.adversarial`) and the student's outputs on the
attacked images are matched as the ``adv_match`` mode says (one object per mode, :mod:`ikd_yolo.adv_match`), with
the student's BatchNorm following ``adv_bn`` (:mod:`ikd_yolo.adv_bn`). The term is reported as ``adv_loss`` (zero
when inactive, and in eval mode, because Ultralytics freezes loss columns at the first batch).

Choices made deliberately:

- The frozen teacher's BatchNorm layers are folded into its convolutions (:func:`ikd_yolo.teacher.fold_batchnorm`):
  the same outputs without the BatchNorm passes (the teacher's forward is most of the added cost).
- The calibration's gradients are taken with ``torch.autograd.grad``, as the attack's are (no parameter's ``.grad``
  is touched).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
import torch.distributed as dist
from torch import nn
from ultralytics.nn.distill_model import DistillationModel

from .adv_bn import split_bn_statistics, take
from .adv_match import adv_loss_name
from .adversarial_term import AdversarialTerm, attack_step, sub_batch
from .config import IKDConfig
from .kd_losses import build_kd_module
from .pseudo_labels import refine_dataset
from .response_kd import bckd_loss, head_outputs, ld_loss
from .schedule import GradientBalance
from .teacher import fold_batchnorm

# the BatchNorm modes and the adversarial term's helpers were defined here before they had their modules
__all__ = [
    "KD_TERMS",
    "IKDDistillationModel",
    "adv_loss_name",
    "attack_step",
    "split_bn_statistics",
    "sub_batch",
    "take",
]

# KD terms: name in the code and in kd_gain -> loss column (results.csv, progress bar)
KD_TERMS = {"dis": "dis_loss", "cls": "cls_kd", "dfl": "dfl_kd", "adv": "adv_loss"}


class CleanTerms(NamedTuple):
    """What :meth:`IKDDistillationModel.clean_kd_terms` computed: the detection loss ``regular`` and its ``items``,
    the KD ``terms`` by name and, when asked for, the student's hooked outputs on the adversarial images of the same
    forward (``extra_student``)."""

    regular: torch.Tensor
    items: dict
    terms: dict
    extra_student: dict | None = None


class IKDDistillationModel(AdversarialTerm, DistillationModel):
    """Teacher-student wrapper: detection loss, feature KD, response KD and IKD's adversarial term.

    Attributes:
        ikd (IKDConfig): IKD settings.
        kd_scale (float): Schedule factor of every KD term for the current iteration (set by the trainer).
        projector_warmup (bool): Whether this iteration belongs to the projector warm-up (set by the trainer).
        adv_active (bool): Whether the adversarial term is on for the current epoch (set by the trainer).
        adv_skipped (int): Batches whose adversarial term was not finite and was skipped.
        kd_gain (Tensor): Per-term gains, in the order of ``KD_TERMS`` (1 until ``kd_balance`` calibrates them).
        kd_calibrated (Tensor): 1 once the gains are calibrated (or when ``kd_balance`` is 0).
    """

    def __init__(self, teacher_model: str | Path | nn.Module, student_model: nn.Module, ikd: IKDConfig):
        """Build the wrapper; ``ikd`` holds the distillation settings."""
        super().__init__(teacher_model=teacher_model, student_model=student_model)
        fold_batchnorm(self.teacher_model)  # frozen and in eval mode: the same outputs, a cheaper forward
        self.ikd = ikd
        self.kd_scale = 1.0
        self.projector_warmup = False
        self._balance: GradientBalance | None = None
        self._calibrated: bool | None = None  # mirror of the kd_calibrated buffer, read on first use
        device = next(self.projector.parameters()).device
        channels = [p[-1].out_channels for p in self.projector]  # teacher channels per level
        kd_module = build_kd_module(ikd, channels)
        self.kd_module = kd_module.to(device) if kd_module is not None else None
        self.register_buffer("kd_gain", torch.ones(len(KD_TERMS), device=device))
        self.register_buffer("kd_calibrated", torch.tensor(0.0 if ikd.kd_balance > 0 else 1.0, device=device))
        reg_max = [getattr(m.model[-1], "reg_max", 1) for m in (self.teacher_model, self.student_model)]
        self.same_reg_max = reg_max[0] == reg_max[1] > 1  # the DFL bins can be compared (LD)
        self.dfl_kd_on = ikd.kd_dfl_weight > 0 and self.same_reg_max
        feature_weight = {"pkd": ikd.kd_pkd_weight, "cwd": ikd.kd_cwd_weight, "none": 0.0}.get(ikd.kd_loss, 1.0)
        self.feature_term_on = feature_weight > 0  # dis_loss; without it there is no projector warm-up
        # no clean-image term at all (every weight 0): the teacher is not run for them
        self.soft_terms_on = self.feature_term_on or ikd.kd_cls_weight > 0 or self.dfl_kd_on
        self.init_adversarial_term(adv_active=ikd.adv_aug)

    def __getstate__(self):
        """Drop the step's state from copies (EMA, checkpoints); the adversarial term's is dropped by its mixin."""
        state = super().__getstate__()
        state["_balance"] = None
        state["_calibrated"] = None  # a copy (EMA, checkpoint) reads its own buffer
        return state

    # --- the trainer's interface: one call before the first epoch, one per batch, two per epoch -------------------

    def refine_dataset_labels(self, dataset, batch: int, workers: int, classes: list[int] | None = None) -> dict:
        """``kd_labels``: the teacher refines the labels of the training ``dataset`` once, in memory
        (:func:`ikd_yolo.pseudo_labels.refine_dataset`, ``batch`` images per forward, ``classes``: the training's
        ``classes=``), the hooks emptied after each forward; returns its counts."""
        return refine_dataset(
            dataset,
            self.teacher_model,
            conf=self.ikd.kd_label_conf,
            mix=self.ikd.kd_labels,
            match_iou=self.ikd.kd_label_iou,
            new_iou=self.ikd.kd_label_new_iou,
            batch=batch,
            workers=workers,
            after_batch=self._teacher_feats.clear,
            classes=classes,
        )

    def set_iteration(self, kd_scale: float, projector_warmup: bool) -> None:
        """Where the coming batch sits in the KD schedule (:mod:`ikd_yolo.schedule`)."""
        self.kd_scale, self.projector_warmup = float(kd_scale), bool(projector_warmup)

    def start_epoch(self, adv_active: bool) -> None:
        """Whether the adversarial term acts in the coming epoch."""
        self.adv_active = bool(adv_active)

    def pop_epoch_stats(self) -> dict:
        """What the epoch did: ``adv_skipped`` (batches whose term was not finite), ``attack_failures`` (images
        whose attack gradient was not finite and that were used clean; both reset here) and ``gains`` (per-term
        gains by loss column once calibrated, else None)."""
        skipped, self.adv_skipped = self.adv_skipped, 0
        failures, self._attack_failures = int(self._attack_failures), 0  # the epoch's one wait for this count
        gains = {KD_TERMS[k]: v for k, v in self.gains().items()} if self.is_calibrated() else None
        return {"adv_skipped": skipped, "attack_failures": failures, "gains": gains}

    def gains(self) -> dict[str, float]:
        """The per-term gains as a dict (``dis``, ``cls``, ``dfl``, ``adv``)."""
        return {k: float(v) for k, v in zip(KD_TERMS, self.kd_gain.tolist(), strict=True)}

    def loss(self, batch: dict, preds=None):
        """Detection loss followed by the four KD terms (``dis_loss``, ``cls_kd``, ``dfl_kd``, ``adv_loss``)."""
        device = batch["img"].device
        zero = torch.zeros(1, device=device)
        warmup = self.training and self.projector_warmup and self.feature_term_on
        calibrating = self.training and not warmup and not self.is_calibrated()
        adv_on = self.ikd.adv_aug and self.adv_active and self.ikd.adv_weight > 0
        kd_on = (self.kd_scale > 0 or calibrating or warmup) and (self.soft_terms_on or adv_on)
        if not self.training or not kd_on:  # detection alone, without the teacher
            if preds is None or self.training:
                preds = self.student_model(batch["img"])
            self._teacher_feats.clear()
            self._student_feats.clear()
            regular, items = self.student_model.loss(batch, preds)
            items.update({name: zero.detach() for name in KD_TERMS.values()})
            return torch.cat([regular, zero.repeat(len(KD_TERMS))]), items

        if warmup:  # the projector (and kd_module) learn on detached student features; the student sees detection
            regular, items, terms, _ = self.clean_kd_terms(batch, detach_student=True)
            items.update({name: zero.detach() for name in KD_TERMS.values()})
            items["dis_loss"] = terms["dis"].detach().reshape(1)
            bs = batch["img"].shape[0]
            return torch.cat([regular, terms["dis"].reshape(1) * bs, zero.repeat(len(KD_TERMS) - 1)]), items

        if adv_on:
            regular, items, terms = self.clean_and_adversarial_terms(batch)
        else:
            regular, items, terms, _ = self.clean_kd_terms(batch)
        bs = batch["img"].shape[0]
        if calibrating:
            self.calibrate(regular.sum(), {k: v * bs for k, v in terms.items()})
        out = []
        for i, (term, column) in enumerate(KD_TERMS.items()):
            value = terms[term] * (self.kd_gain[i] * self.kd_scale) if term in terms and not calibrating else zero
            value = value.reshape(1)
            items[column] = value.detach()
            out.append(value * bs)
        return torch.cat([regular, *out]), items

    def is_calibrated(self) -> bool:
        """Whether ``kd_gain`` holds calibrated gains; read from the buffer once (after a resume has restored it)
        and then kept in Python, so the training step does not synchronise with the GPU to ask."""
        if self._calibrated is None:
            self._calibrated = bool(self.kd_calibrated.item() > 0.5)
        return self._calibrated

    def calibrate(self, det_loss: torch.Tensor, kd_losses: dict[str, torch.Tensor]) -> None:
        """One batch of the ``kd_balance`` calibration; sets ``kd_gain`` once enough batches are in."""
        if self._balance is None:
            self._balance = GradientBalance(self.ikd.kd_balance, self.ikd.kd_balance_batches, tuple(KD_TERMS))
        params = [p for p in self.student_model.parameters() if p.requires_grad]
        if self._balance.observe(det_loss, kd_losses, params):
            gains = self._balance.gains()
            self.kd_gain.copy_(torch.tensor([gains[k] for k in KD_TERMS], device=self.kd_gain.device))
            if dist.is_available() and dist.is_initialized():  # one set of gains for every rank: their mean
                dist.all_reduce(self.kd_gain)
                self.kd_gain.div_(dist.get_world_size())
            self.kd_calibrated.fill_(1.0)
            self._calibrated = True
            self._balance = None

    def pop_features(self, detach_student: bool = False) -> tuple[list, list, dict, dict]:
        """The hooked features of the last forwards: projected student's and teacher's Detect inputs per level, and
        the student's and teacher's dense Detect outputs. ``detach_student``: the projector sees the student's
        features cut from the student's graph (the projector warm-up).

        The hook dicts are emptied, so no graph-holding tensor outlives the step.
        """
        n = len(self.feats_idx) - 1  # the last tapped layer is the Detect head itself
        feats = [self.decouple_outputs(self._student_feats[i]) for i in range(n)]
        students = [self.projector[i](f.detach() if detach_student else f) for i, f in enumerate(feats)]
        teachers = [self.decouple_outputs(self._teacher_feats[i]) for i in range(n)]
        student_head, teacher_head = (head_outputs(f[n]) for f in (self._student_feats, self._teacher_feats))
        self._teacher_feats.clear()
        self._student_feats.clear()
        return students, teachers, student_head, teacher_head

    def native_term(self, students: list[torch.Tensor], teachers: list[torch.Tensor], teacher_head) -> torch.Tensor:
        """Ultralytics' score-weighted L2 (``DistillationModel.loss``'s formula), times ``dis``."""
        scores = teacher_head["scores"]
        parts = torch.split(scores, [t.shape[-2] * t.shape[-1] for t in teachers], dim=-1)
        weights = tuple(p.sigmoid().max(dim=1, keepdim=True).values for p in parts)
        total = torch.zeros(1, device=scores.device)
        for i, (s, t) in enumerate(zip(students, teachers, strict=True)):
            total = total + self.loss_sl2(s, t, feat_idx=i, teacher_scores=weights) * self.dis
        return total

    def teacher_pass(self, batch: dict) -> None:
        """The teacher's forward on the clean batch (its hooks capture the outputs the soft terms read)."""
        self._teacher_feats.clear()
        with torch.no_grad():
            self.teacher_model(batch["img"])

    def clean_kd_terms(
        self, batch: dict, detach_student: bool = False, extra=None, teacher_done: bool = False
    ) -> CleanTerms:
        """Teacher and student forwards on the clean batch: detection loss (on the teacher-refined labels when
        ``kd_labels`` is on), its items, and the unweighted-by-schedule KD terms ``dis`` (feature base), ``cls`` and
        ``dfl`` (response). ``detach_student``: the projector warm-up, only ``dis``, on student features cut from the
        student's graph. ``extra``: images that the student sees in the same forward, after the batch's
        (``adv_bn=split``); its hooked outputs on them are returned. ``teacher_done``: the caller ran
        :meth:`teacher_pass` on ``batch`` already (its hooks hold the teacher's outputs)."""
        self._student_feats.clear()
        if self.soft_terms_on and not teacher_done:  # else e.g. the adversarial term alone: no clean-image KD term
            self.teacher_pass(batch)
        img = batch["img"]  # the hooks capture the student's features
        extra_student = None
        if extra is None:
            preds = self.student_model(img)
        else:
            preds, extra_student = self.joint_forward(img, extra)
        regular_loss, loss_items = self.student_model.loss(batch, preds)
        out = CleanTerms(regular_loss, loss_items, {}, extra_student)
        if not self.soft_terms_on:
            self._teacher_feats.clear()
            self._student_feats.clear()
            return out
        students, teachers, student_head, teacher_head = self.pop_features(detach_student)  # teacher: no graph
        terms = out.terms
        if self.feature_term_on and self.kd_module is None:  # kd_loss=native
            terms["dis"] = self.native_term(students, teachers, teacher_head)
        elif self.feature_term_on:
            terms["dis"] = self.kd_module(students, teachers, batch)
        if detach_student:
            return out
        if self.ikd.kd_cls_weight > 0:
            cls = bckd_loss(student_head["scores"], teacher_head["scores"], self.ikd.kd_cls_beta)
            terms["cls"] = cls * self.ikd.kd_cls_weight
        if self.dfl_kd_on:
            dfl = ld_loss(student_head["boxes"], teacher_head["boxes"], teacher_head["scores"], self.ikd.kd_dfl_tau)
            terms["dfl"] = dfl * self.ikd.kd_dfl_weight
        return out
