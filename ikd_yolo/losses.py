"""Feature-matching losses between (projected) student and teacher feature maps of shape (N, C, H, W).

Each returns a scalar that does not grow with batch size or map size (a mean), so one weight fits every level
and every input size; the trainer multiplies by batch size like Ultralytics' other loss terms. Sums are taken in
float32 so that fp16 autocast cannot overflow them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


FEATURE_LOSSES = ("mse", "l1", "cwd", "pkd")


def standardize(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Each channel of (N, C, H, W) ``x`` to zero mean and unit variance over (N, H, W), in float32."""
    x = x.float()
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), keepdim=True, unbiased=False)
    return (x - mean) / (var + eps).sqrt()


def pkd_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """PKD (Cao et al., NeurIPS 2022): half the MSE of per-channel standardised maps, i.e. 1 - Pearson r per channel.

    Bounded in [0, 2], zero when the student's map is any positive affine transform of the teacher's (per channel).
    """
    return F.mse_loss(standardize(student), standardize(teacher)) / 2


def mse_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared error over all elements."""
    return F.mse_loss(student.float(), teacher.float())


def l1_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over all elements."""
    return F.l1_loss(student.float(), teacher.float())


def cwd_loss(student: torch.Tensor, teacher: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """Channel-wise distillation (Shu et al., ICCV 2021): KL between per-channel spatial softmax maps.

    Each channel is turned into a distribution over its H*W locations at temperature ``tau``; the loss is
    KL(teacher || student) * tau^2, averaged over batch and channels.
    """
    n, c = student.shape[:2]
    s = student.float().reshape(n * c, -1) / tau
    t = teacher.float().reshape(n * c, -1) / tau
    kl = F.kl_div(F.log_softmax(s, dim=1), F.log_softmax(t, dim=1), reduction="sum", log_target=True)
    return kl * tau**2 / (n * c)


def feature_loss(name: str, student: torch.Tensor, teacher: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """Dispatch to the loss called ``name`` (one of :data:`FEATURE_LOSSES`)."""
    if name == "mse":
        return mse_loss(student, teacher)
    if name == "l1":
        return l1_loss(student, teacher)
    if name == "cwd":
        return cwd_loss(student, teacher, tau)
    if name == "pkd":
        return pkd_loss(student, teacher)
    raise ValueError(f"unknown feature loss '{name}': use one of {', '.join(FEATURE_LOSSES)}")
