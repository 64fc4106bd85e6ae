"""What the student matches on the adversarial images (``adv_match``): one small object per mode, built by
:func:`make`.

Every mode answers the same question for :class:`ikd_yolo.adversarial_term.AdversarialTerm`, which runs the student's
and the teacher's forwards on the adversarial images: what is the term (:meth:`AdvMatch.loss`) from their hooked
outputs?

The modes that no benchmark gave a reason to use (``labels``: the detection loss on the adversarial images;
``delta``: the teacher's change under the attack) were removed; their results are in benchmarks/HISTORY.md.
"""

from __future__ import annotations

import torch

from .config import IKDConfig
from .kd_losses import FEATURE_LOSSES, feature_loss
from .response_kd import bckd_loss, ld_loss


def adv_loss_name(ikd: IKDConfig) -> str:
    """The adversarial term's feature loss: ``adv_loss``, or for ``base`` the feature base's (mse if it has none)."""
    if ikd.adv_loss != "base":
        return ikd.adv_loss
    return ikd.kd_loss if ikd.kd_loss in FEATURE_LOSSES else "mse"


class AdvMatch:
    """The interface of an ``adv_match`` mode (module docstring)."""

    def __init__(self, ikd: IKDConfig, same_reg_max: bool):
        """``same_reg_max``: whether the student's and the teacher's DFL bins can be compared (LD)."""
        self.ikd, self.same_reg_max = ikd, same_reg_max

    def loss(self, hooked: tuple) -> torch.Tensor:
        """The term from ``hooked``, the wrapper's ``pop_features()`` of the forwards on the adversarial images
        (projected student and teacher features, student and teacher Detect outputs)."""
        raise NotImplementedError


class Response(AdvMatch):
    """``response`` (the default): the student's Detect outputs on the adversarial images are pulled towards the
    teacher's by BCKD on the class logits and LD on the DFL bins (:mod:`ikd_yolo.response_kd`)."""

    def loss(self, hooked):
        _, _, student, teacher = hooked
        total = bckd_loss(student["scores"], teacher["scores"], self.ikd.kd_cls_beta).reshape(1)
        if self.same_reg_max:
            total = total + ld_loss(student["boxes"], teacher["boxes"], teacher["scores"], self.ikd.kd_dfl_tau)
        return total


class Features(AdvMatch):
    """``features`` (the reference implementation's term): the student's projected Detect-input features on the
    adversarial images are pulled towards the teacher's by the feature loss ``adv_loss`` (:func:`adv_loss_name`,
    :mod:`ikd_yolo.kd_losses`), summed over the levels."""

    def loss(self, hooked):
        students, teachers, _, _ = hooked
        total = torch.zeros(1, device=teachers[0].device)
        for student_feat, teacher_feat in zip(students, teachers, strict=True):
            total = total + feature_loss(adv_loss_name(self.ikd), student_feat, teacher_feat, self.ikd.adv_cwd_tau)
        return total


MODES: dict[str, type[AdvMatch]] = {"response": Response, "features": Features}


def make(ikd: IKDConfig, same_reg_max: bool) -> AdvMatch:
    """The object of ``ikd.adv_match`` (the settings' validation admits no other value)."""
    return MODES[ikd.adv_match](ikd, same_reg_max)
