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
labels' boxes and add the objects they miss. With ``kd_labels_mode=dataset`` (default) the trainer refines the
training set once before the first epoch and nothing happens here; with ``batch`` it happens here, on every batch,
before the student's detection loss (the teacher then runs in the ``close_mosaic`` epochs too).

**Schedule and calibration** (:mod:`ikd_yolo.schedule`): every KD term is multiplied by ``kd_scale`` (set by the
trainer each iteration) and by a per-term gain, calibrated on the first batches when ``kd_balance`` is on and kept
in the buffer ``kd_gain``. During the projector warm-up the feature term trains the projector on detached student
features. At scale 0 (after the warm-up), or when every KD term's weight is 0, the teacher is not run (unless
``kd_labels_mode=batch`` needs its detections).

**Adversarial feature augmentation.** A fraction of the current (already augmented) batch is attacked with
MI-DI-FGSM against the frozen teacher's classification loss on the batch's ground truth
(:mod:`ikd_yolo.adversarial`), at ``adv_scale`` of the image's resolution (the perturbation is then resized to
it). Teacher and student then run on the adversarial images and the student's outputs are pulled towards the
teacher's: with ``adv_match=response`` (default) its Detect outputs, by BCKD and LD
(:mod:`ikd_yolo.response_kd`); with ``features`` (the reference's term) its projected Detect-input features
(:mod:`ikd_yolo.kd_losses`); with ``labels`` the teacher is not matched at all: the student's detection loss on
the adversarial images and the batch's (teacher-refined) labels; with ``delta`` the student's outputs must move
from its own clean outputs as the teacher's move from the teacher's (BCKD and LD towards the student's clean logits
plus the teacher's change under the attack), which transfers how the teacher reacts to the perturbation without
pulling the student towards the teacher's clean-image confidences. ``adv_target=gap`` makes the attack ascend the
matching term itself (the student's distance to the teacher) instead of the teacher's classification loss. The
term is reported as ``adv_loss`` (zero when inactive, and in eval mode, because Ultralytics freezes loss columns at
the first batch).

Choices made deliberately:

- The frozen teacher's BatchNorm layers are folded into its convolutions (:func:`ikd_yolo.teacher.fold_batchnorm`):
  the same outputs without the BatchNorm passes (the teacher's forward is most of the added cost).

- The attack differentiates with respect to the input only (``torch.autograd.grad``), so no parameter ever holds
  a gradient from it and DDP's reducer is untouched.
- The student's BatchNorm on adversarial images (``adv_bn``): by default (``split``) they run in the same forward as
  the clean batch (one student pass fewer: the step on a GPU is bound by the CPU's launches), but every BatchNorm
  layer normalises each group by its own batch statistics and updates the running statistics from the clean group
  only (:func:`split_bn_statistics`), so evaluation statistics describe clean images; ``joint`` shares the batch
  statistics and the running-statistics update between the two groups (the adversarial images then set the
  statistics under which the clean images' loss is computed); ``batch`` gives them a forward of their own in train
  mode (their own batch statistics: the numbers of ``split``) that leaves the running statistics as they were;
  ``running`` normalises them by the running statistics instead.
- The attack does not wait for the GPU to check each step: an image whose attack gradient was not finite comes out
  NaN and is replaced by its clean image (so a NaN never reaches the student, whose clean images share its forward
  with ``adv_bn`` split or joint); such images are counted on the GPU and read once per epoch
  (``attack_failures``). A batch whose term is still not finite skips it (counted in ``adv_skipped``).
- When no clean-image KD term is on (the default recipe), the teacher runs on the attacked images only.
- The calibration's gradients are taken with ``torch.autograd.grad`` too (no parameter's ``.grad`` is touched).
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from ultralytics.nn.distill_model import DistillationModel

from .adversarial import TeacherClsLoss, mi_di_fgsm
from .config import IKDConfig
from .kd_losses import FEATURE_LOSSES, build_kd_module, feature_loss
from .pseudo_labels import refine_labels, teacher_detections
from .response_kd import bckd_loss, head_outputs, ld_loss
from .schedule import GradientBalance
from .teacher import fold_batchnorm

# KD terms: name in the code and in kd_gain -> loss column (results.csv, progress bar)
KD_TERMS = {"dis": "dis_loss", "cls": "cls_kd", "dfl": "dfl_kd", "adv": "adv_loss"}

# The teacher's classification loss is multiplied by this before its input gradient is taken: the gradient is
# L1-normalised per sample and only its sign is used, so the factor changes nothing except keeping fp16
# intermediate gradients above underflow under autocast.
ATTACK_LOSS_SCALE = 1024.0
ONE_FORWARD = ("joint", "split")  # adv_bn modes whose student sees the clean and adversarial images in one forward


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
        for m, (momentum, tracked) in zip(bns, saved, strict=True):
            m.momentum = momentum
            m.num_batches_tracked.copy_(tracked)


@contextlib.contextmanager
def running_bn_statistics(model: nn.Module):
    """Run ``model`` with its BatchNorm layers normalising by their running statistics (eval mode), which stay as
    they are; every other layer keeps its mode. Gradients flow through the fixed normalisation."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    for m in bns:
        m.eval()
    try:
        yield
    finally:
        for m in bns:
            m.train()


@contextlib.contextmanager
def split_bn_statistics(model: nn.Module, n_first: int):
    """Run ``model`` in train mode on a batch whose first ``n_first`` samples and the rest are each normalised by
    their own batch statistics, in one forward: the running statistics move with the first group only. The same
    numbers as two forwards, the second under :func:`frozen_bn_statistics`, with one pass through the model."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]

    def grouped(m):
        plain = type(m).forward

        def forward(x):
            first = plain(m, x[:n_first])  # as the module's own forward: running statistics, num_batches_tracked
            rest = F.batch_norm(x[n_first:], None, None, m.weight, m.bias, True, 0.0, m.eps)
            return torch.cat([first, rest])

        return forward

    for m in bns:
        m.forward = grouped(m)
    try:
        yield
    finally:
        for m in bns:
            vars(m).pop("forward", None)


def take(obj, index: slice):
    """``obj`` (a tensor, or lists, tuples and dicts of them, as Ultralytics' training outputs) sliced on the batch
    dimension."""
    if isinstance(obj, torch.Tensor):
        return obj[index]
    if isinstance(obj, dict):
        return {k: take(v, index) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(take(v, index) for v in obj)
    return obj


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


class IKDDistillationModel(DistillationModel):
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
        self.adv_active = ikd.adv_aug
        self.adv_skipped = 0
        self._attack_failures: torch.Tensor | int = 0  # images whose attack gradient was not finite (on the device)
        self._teacher_loss: TeacherClsLoss | None = None
        self._balance: GradientBalance | None = None
        self._calibrated: bool | None = None  # mirror of the kd_calibrated buffer, read on first use
        self._adv_student_feats: dict = {}  # adv_bn split/joint: the student's hooked outputs on the adversarial images
        self._adv_preds = None  # adv_bn split/joint: the student's training outputs on them (adv_match=labels)
        self._refined: dict | None = None  # the batch with the labels of the last clean detection loss
        self._clean_heads: dict = {}  # adv_match=delta: student's and teacher's logits on the attacked images, clean
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
        # kd_labels_mode=dataset refines the dataset's labels once (the trainer); batch: here, on every batch
        self.labels_per_batch = ikd.kd_labels > 0 and ikd.kd_labels_mode == "batch"

    def __getstate__(self):
        """Drop the cached teacher criterion: it references the teacher, which must not reach EMA or checkpoints."""
        state = super().__getstate__()
        state["_teacher_loss"] = None
        state["_balance"] = None
        state["_calibrated"] = None  # a copy (EMA, checkpoint) reads its own buffer
        state["_adv_student_feats"] = {}
        state["_adv_preds"] = None
        state["_refined"] = None
        state["_clean_heads"] = {}
        state["_attack_failures"] = 0
        return state

    # --- the trainer's interface: one call per batch, two per epoch ---------------------------------------------

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
        if not self.training or not kd_on:  # detection alone; the teacher runs only for per-batch kd_labels
            if self.training and self.labels_per_batch:  # e.g. the close_mosaic epochs
                regular, items, _ = self.clean_kd_terms(batch, kd_terms=False)
            else:
                if preds is None or self.training:
                    preds = self.student_model(batch["img"])
                self._teacher_feats.clear()
                self._student_feats.clear()
                regular, items = self.student_model.loss(batch, preds)
            items.update({name: zero.detach() for name in KD_TERMS.values()})
            return torch.cat([regular, zero.repeat(len(KD_TERMS))]), items

        if warmup:  # the projector (and kd_module) learn on detached student features; the student sees detection
            regular, items, terms = self.clean_kd_terms(batch, detach_student=True)
            items.update({name: zero.detach() for name in KD_TERMS.values()})
            items["dis_loss"] = terms["dis"].detach().reshape(1)
            bs = batch["img"].shape[0]
            return torch.cat([regular, terms["dis"].reshape(1) * bs, zero.repeat(len(KD_TERMS) - 1)]), items

        if adv_on and self.ikd.adv_bn in ONE_FORWARD:  # one student forward of the clean and adversarial images
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
        else:
            regular, items, terms = self.clean_kd_terms(batch)
            if adv_on:
                terms["adv"] = self.adversarial_feature_loss(self._refined) * self.ikd.adv_weight
            self._refined = None
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

    def teacher_pass(self, batch: dict, kd_terms: bool) -> dict:
        """The teacher's forward on the clean batch, when anything reads it (``kd_terms``: its hooked outputs, for the
        soft terms; ``kd_labels_mode=batch``: its detections); the batch with its labels refined by those detections
        in ``batch`` mode, else the batch itself."""
        if kd_terms or self.labels_per_batch:
            with torch.no_grad():
                out = self.teacher_model(batch["img"])  # hooks capture teacher features
        if self.labels_per_batch:
            decoded = out[0] if isinstance(out, (tuple, list)) else out
            classes = getattr(getattr(self, "args", None), "classes", None)  # the training's classes=
            detections = teacher_detections(decoded, self.ikd.kd_label_conf, classes)
            batch = refine_labels(batch, detections, self.ikd.kd_labels)
        return batch

    def clean_kd_terms(
        self, batch: dict, detach_student: bool = False, kd_terms: bool = True, extra=None, teacher_done: bool = False
    ):
        """Teacher and student forwards on the clean batch: detection loss (on the teacher-refined labels when
        ``kd_labels`` is on), its items, and the unweighted-by-schedule KD terms ``dis`` (feature base), ``cls`` and
        ``dfl`` (response). ``detach_student``: the projector warm-up, only ``dis``, on student features cut from the
        student's graph. ``kd_terms=False``: the detection loss alone. ``extra``: images that the student sees in the
        same forward, after the batch's (``adv_bn`` split or joint); their hooked features are left in
        ``_adv_student_feats`` and their training outputs in ``_adv_preds``. The batch with the labels the detection
        loss used (refined per batch when ``kd_labels_mode=batch``) is left in ``_refined``. ``teacher_done``: the
        caller ran :meth:`teacher_pass` on ``batch`` already (its hooks hold the teacher's outputs)."""
        self._student_feats.clear()
        kd_terms = kd_terms and self.soft_terms_on  # e.g. the adversarial term alone: no clean-image KD term
        if not teacher_done:
            self._teacher_feats.clear()
            batch = self.teacher_pass(batch, kd_terms)
        self._refined = batch
        if extra is None:
            preds = self.student_model(batch["img"])  # hooks capture student features
        else:
            n = batch["img"].shape[0]
            split = self.ikd.adv_bn == "split"
            with split_bn_statistics(self.student_model, n) if split else contextlib.nullcontext():
                both = self.student_model(torch.cat([batch["img"], extra.to(batch["img"].dtype)]))
            preds = take(both, slice(0, n))
            if self.ikd.adv_match == "labels":  # the only reader of the adversarial images' training outputs
                self._adv_preds = take(both, slice(n, None))
            hooked = dict(self._student_feats)
            self._student_feats.clear()  # the hooks' own dict: emptied and refilled, never replaced
            self._student_feats.update({k: take(v, slice(0, n)) for k, v in hooked.items()})
            self._adv_student_feats = {k: take(v, slice(n, None)) for k, v in hooked.items()}
        if self.ikd.adv_match == "delta" and self.ikd.adv_aug and self.adv_active:
            head = self._student_feats[len(self.feats_idx) - 1]  # the attack takes the first images of the batch
            self._clean_heads["student"] = head_logits(head, attacked_count(self.ikd, batch["img"].shape[0]))
        regular_loss, loss_items = self.student_model.loss(batch, preds)
        if not kd_terms:
            self._teacher_feats.clear()
            self._student_feats.clear()
            return regular_loss, loss_items, {}
        students, teachers, student_head, teacher_head = self.pop_features(detach_student)  # teacher: no graph
        terms = {}
        if self.feature_term_on and self.kd_module is None:  # kd_loss=native
            terms["dis"] = self.native_term(students, teachers, teacher_head)
        elif self.feature_term_on:
            terms["dis"] = self.kd_module(students, teachers, batch)
        if detach_student:
            return regular_loss, loss_items, terms
        if self.ikd.kd_cls_weight > 0:
            cls = bckd_loss(student_head["scores"], teacher_head["scores"], self.ikd.kd_cls_beta)
            terms["cls"] = cls * self.ikd.kd_cls_weight
        if self.dfl_kd_on:
            dfl = ld_loss(student_head["boxes"], teacher_head["boxes"], teacher_head["scores"], self.ikd.kd_dfl_tau)
            terms["dfl"] = dfl * self.ikd.kd_dfl_weight
        return regular_loss, loss_items, terms

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
