"""Response-level distillation on the Detect outputs: BCKD on the class logits, LD on the DFL bins.

Feature imitation does not target what YOLO's decoupled head is trained on; these two terms do, and cost almost
nothing, because the teacher's Detect outputs are captured by the same forward hook as its features. Both need the
teacher and the student to predict on the same anchors (same strides and input size, which the trainer checks) with
the same classes; the DFL term also needs the same ``reg_max``.

- **cls_kd** (BCKD, Yang et al., ICCV 2023, "Bridging Cross-task Protocol Inconsistency for Distillation in Dense
  Object Detection"): YOLO scores each class with a sigmoid and binary cross-entropy, so the teacher's per-class
  probabilities are the soft targets of a BCE, weighted by ``|p_t - p_s|^beta`` (detached) like a quality focal
  loss. Summed over anchors and classes and divided by the teacher's soft positive count (the sum over anchors of
  its highest class probability, at least 1), as Ultralytics divides its own cls loss by the target-score sum.
- **dfl_kd** (LD, Zheng et al., CVPR 2022, "Localization Distillation for Dense Object Detection"): for each box
  side, KL(teacher || student) of the softmax over the ``reg_max`` DFL bins at temperature ``tau``, times tau^2,
  averaged over the four sides and weighted per anchor by the teacher's highest class probability (a soft version
  of LD's positive and valuable-localisation regions), normalised by the sum of those weights.

Both are zero when the student's outputs equal the teacher's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_positive_weight(teacher_scores: torch.Tensor) -> torch.Tensor:
    """(B, A) teacher confidence per anchor: its highest class probability, detached."""
    return teacher_scores.detach().float().sigmoid().amax(dim=1)


def bckd_loss(student_scores: torch.Tensor, teacher_scores: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Classification KD between (B, nc, A) class logits; see the module docstring."""
    s = student_scores.float()
    p_t = teacher_scores.detach().float().sigmoid()
    weight = (p_t - s.sigmoid()).abs().pow(beta).detach()
    bce = F.binary_cross_entropy_with_logits(s, p_t, reduction="none")
    return (bce * weight).sum() / soft_positive_weight(teacher_scores).sum().clamp(min=1.0)


def ld_loss(
    student_boxes: torch.Tensor, teacher_boxes: torch.Tensor, teacher_scores: torch.Tensor, tau: float = 10.0
) -> torch.Tensor:
    """Localisation KD between (B, 4 * reg_max, A) DFL logits; see the module docstring."""
    b, c, a = student_boxes.shape
    s = student_boxes.float().view(b, 4, c // 4, a) / tau
    t = teacher_boxes.detach().float().view(b, 4, c // 4, a) / tau
    kl = F.kl_div(F.log_softmax(s, dim=2), F.log_softmax(t, dim=2), reduction="none", log_target=True).sum(dim=2)
    w = soft_positive_weight(teacher_scores)  # (B, A)
    return (kl.mean(dim=1) * w).sum() / w.sum().clamp(min=1.0) * tau**2


def head_outputs(preds) -> dict[str, torch.Tensor]:
    """The dense training outputs of a Detect head's forward: ``{"boxes": (B, 4*reg_max, A), "scores": (B, nc, A)}``.

    End-to-end heads (YOLOv10, YOLO26) return one dict per branch; the one-to-many branch is the dense one.
    """
    if isinstance(preds, tuple):  # eval-mode output: (decoded, raw)
        preds = preds[1]
    if isinstance(preds, dict) and "one2many" in preds:
        preds = preds["one2many"]
    return preds
