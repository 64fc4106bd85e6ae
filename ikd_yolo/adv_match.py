"""What the student matches on the adversarial images (``adv_match``): one small object per mode, built by
:func:`make`.

Every mode answers the same questions for :class:`ikd_yolo.adversarial_term.AdversarialTerm`, which runs the forwards
and hands the mode what they gave: does its loss read the teacher's hooked outputs on the adversarial images
(``uses_teacher``), the student's training outputs on them (``needs_preds``), the student's and teacher's Detect
logits on the same images before the attack (``needs_clean_heads``), and does it take the teacher's outputs as
fixed targets (``fixed_targets``: ``adv_target=gap``'s attack then runs the teacher without a graph)? Its
:meth:`AdvMatch.loss` turns the hooked outputs of the last forwards and the step's data (:class:`AdversarialStep`)
into the term, unweighted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .config import IKDConfig
from .kd_losses import FEATURE_LOSSES, feature_loss
from .response_kd import bckd_loss, ld_loss


def adv_loss_name(ikd: IKDConfig) -> str:
    """The adversarial term's feature loss: ``adv_loss``, or for ``base`` the feature base's (mse if it has none)."""
    if ikd.adv_loss != "base":
        return ikd.adv_loss
    return ikd.kd_loss if ikd.kd_loss in FEATURE_LOSSES else "mse"


@dataclass(frozen=True)
class AdversarialStep:
    """One batch's attacked images and what the step computed on them, as a mode's loss reads it.

    Attributes:
        adv_img (Tensor): The attacked images (the batch's first ones).
        clean_img (Tensor): The same images before the attack.
        student (dict): The student's hooked outputs on ``adv_img`` (by hooked layer).
        preds: ``needs_preds``: the student's training outputs on ``adv_img``.
        labelled (dict | None): ``needs_preds``: the attacked images with the labels of the batch's detection loss.
        criterion (Callable | None): ``needs_preds``: the student's detection loss, ``(batch, preds) -> (loss, items)``.
        student_head (dict | None): ``needs_clean_heads``: the student's Detect logits on ``clean_img``, detached.
        teacher_head (dict | None): ``needs_clean_heads``: the teacher's Detect logits on ``clean_img``.
    """

    adv_img: torch.Tensor
    clean_img: torch.Tensor
    student: dict
    preds: Any = None
    labelled: dict | None = None
    criterion: Callable | None = None
    student_head: dict | None = None
    teacher_head: dict | None = None


class AdvMatch:
    """The interface of an ``adv_match`` mode (class attributes: module docstring)."""

    uses_teacher = True
    needs_preds = False
    needs_clean_heads = False
    fixed_targets = True

    def __init__(self, ikd: IKDConfig, same_reg_max: bool):
        """``same_reg_max``: whether the student's and the teacher's DFL bins can be compared (LD)."""
        self.ikd, self.same_reg_max = ikd, same_reg_max

    def loss(self, hooked: tuple | None, step: AdversarialStep | None = None) -> torch.Tensor:
        """The term from ``hooked``, the wrapper's ``pop_features()`` of the forwards on the adversarial images
        (projected student and teacher features, student and teacher Detect outputs; None without ``uses_teacher``),
        and ``step`` (None in ``adv_target=gap``'s attack, which only the modes that do not read it allow)."""
        raise NotImplementedError

    def response_loss(self, student_head: dict, target: dict, device) -> torch.Tensor:
        """BCKD of the student's class logits and (comparable DFL bins only) LD of its DFL bins towards ``target``."""
        total = torch.zeros(1, device=device)
        total = total + bckd_loss(student_head["scores"], target["scores"], self.ikd.kd_cls_beta)
        if self.same_reg_max:
            total = total + ld_loss(student_head["boxes"], target["boxes"], target["scores"], self.ikd.kd_dfl_tau)
        return total


class Response(AdvMatch):
    """``response`` (the default): the student's Detect outputs on the adversarial images are pulled towards the
    teacher's by BCKD on the class logits and LD on the DFL bins (:mod:`ikd_yolo.response_kd`)."""

    def loss(self, hooked, step=None):
        _, teachers, student_head, teacher_head = hooked
        return self.response_loss(student_head, teacher_head, teachers[0].device)


class Features(AdvMatch):
    """``features`` (the reference implementation's term): the student's projected Detect-input features on the
    adversarial images are pulled towards the teacher's by the feature loss ``adv_loss`` (:func:`adv_loss_name`,
    :mod:`ikd_yolo.kd_losses`), summed over the levels. ``adv_target=gap``'s attack differentiates through the
    teacher too."""

    fixed_targets = False

    def loss(self, hooked, step=None):
        students, teachers, _, _ = hooked
        total = torch.zeros(1, device=teachers[0].device)
        for student_feat, teacher_feat in zip(students, teachers, strict=True):
            total = total + feature_loss(adv_loss_name(self.ikd), student_feat, teacher_feat, self.ikd.adv_cwd_tau)
        return total


class Labels(AdvMatch):
    """``labels``: the teacher is not matched at all (nor run on the adversarial images): the term is the student's
    detection loss on the adversarial images and the batch's (teacher-refined) labels, per attacked image."""

    uses_teacher = False
    needs_preds = True
    fixed_targets = False

    def loss(self, hooked, step=None):
        loss, _ = step.criterion(step.labelled, step.preds)
        return loss.sum().reshape(1) / step.adv_img.shape[0]


class Delta(AdvMatch):
    """``delta``: the student's outputs must move from its own clean outputs as the teacher's move from the
    teacher's: BCKD and LD towards the student's clean logits plus the teacher's change under the attack (DFL bins
    only when comparable). It transfers how the teacher reacts to the perturbation without pulling the student
    towards the teacher's clean-image confidences."""

    needs_clean_heads = True

    def loss(self, hooked, step=None):
        _, teachers, student_head, teacher_head = hooked
        keys = ("boxes", "scores") if self.same_reg_max else ("scores",)
        target = {k: step.student_head[k] + (teacher_head[k] - step.teacher_head[k]) for k in keys}
        return self.response_loss(student_head, target, teachers[0].device)


MODES: dict[str, type[AdvMatch]] = {"response": Response, "features": Features, "labels": Labels, "delta": Delta}


def make(ikd: IKDConfig, same_reg_max: bool) -> AdvMatch:
    """The object of ``ikd.adv_match`` (the settings' validation admits no other value)."""
    return MODES[ikd.adv_match](ikd, same_reg_max)
