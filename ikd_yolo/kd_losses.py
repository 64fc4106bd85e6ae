"""Feature distillation losses: the clean-image bases of ``kd_loss`` (pkd, cwd, mgd, fgd; ``native`` is
Ultralytics') and the per-level losses the adversarial term picks by name (``adv_loss``).

Every base compares, level by level, the student's Detect-input features after the wrapper's 1x1 ``projector``
(so student and teacher tensors of a level have the same shape (N, C_l, H_l, W_l)) with the frozen teacher's, and
returns one scalar per image: the sum over levels. Teacher features are detached: only the student side and the
loss's own modules (FGD's teacher-side context block included) receive gradients. The wrapper reports it as
``dis_loss`` and, like Ultralytics' other terms, multiplies it by the batch size before backward. The native
term's weight ``dis`` is not used by these losses: each has its own weights (``kd_*`` keys of ``cfg/ikd.yaml``).

- **pkd** (Cao et al., NeurIPS 2022, "PKD: General Distillation Framework for Object Detectors via Pearson
  Correlation Coefficient"): both maps standardised per channel over (N, H, W), then half their MSE, i.e.
  1 - Pearson r, times ``kd_pkd_weight`` per level. Bounded and blind to the scale of the teacher's features, so
  high-magnitude channels do not dominate and one weight fits every teacher. No trainable part.
- **cwd** (Shu et al., ICCV 2021, "Channel-wise Knowledge Distillation for Dense Prediction"): each channel is a
  distribution over the H*W positions (softmax at temperature tau); KL(teacher || student) * tau^2, averaged over
  images and channels (:func:`cwd_loss`), times ``kd_cwd_weight``. No trainable part. With
  ``kd_cwd_norm`` (default) both maps are standardised per channel first, as MMYOLO's and DAMO-YOLO's cwd
  normalise with an affine-free BatchNorm.
- **mgd** (Yang et al., ECCV 2022, "Masked Generative Distillation"): a random fraction ``kd_mgd_lambda`` of the
  student's positions is zeroed (the same positions in every channel), a per-level generation block
  (3x3 conv, ReLU, 3x3 conv) must regenerate the teacher's full feature map from what is left; squared error
  summed over C*H*W, averaged over images, times ``kd_mgd_alpha``. The mask is drawn from torch's RNG on the
  features' device at every call (so each DDP rank draws its own mask, as each draws its own batch).
- **fgd** (Yang et al., CVPR 2022, "Focal and Global Knowledge Distillation for Detectors"): the ground-truth
  boxes split every map into foreground (each position weighted by 1/area of the smallest box covering it, in
  cells of that level) and background (1/number of background positions); the teacher's spatial and channel
  attention (softmax of mean |feature| at temperature ``kd_fgd_temp``, scaled to average 1) weight the squared
  error of both parts (``kd_fgd_alpha`` foreground, ``kd_fgd_beta`` background); an L1 term pulls the
  student's attention maps to the teacher's (``kd_fgd_gamma``); and a global term compares the two maps after
  a GcBlock-style global-context block each (one for the student, one for the teacher, per level; the last conv
  starts at zero so both start as the identity) (``kd_fgd_lambda``). All sums per image, averaged over images.

Where the defaults come from. The papers' weights were tuned for mmdetection sums on RetinaNet-sized maps
(256 channels, ~100x150 positions at P3). We keep each paper's formula, temperature, mask ratio and the ratios
between its weights (the authors' one-stage RetinaNet settings), and multiply all of one loss's weights by a
single factor measured so that the initial ``dis_loss`` is a few units, the order of Ultralytics' box/cls/dfl
terms at the start (~4-5 each there) and below the native term's: cwd x1 (weight 5 kept), mgd x16 (alpha 3.2e-4),
fgd x2 (2e-3, 1e-3, 1e-3, 1e-5). The measurement, on one fixed batch of demo images with the demo's student and
teacher, is ``benchmarks/bench_kd_losses.py`` (figures in ``benchmarks/results/bench_kd_losses.json``). With
``kd_balance`` on (the default) these fixed weights only set each term's shape: the calibration rescales it.

Scale caveat, as in the papers: mgd's error and fgd's global and spatial-attention terms are sums over positions,
so they grow with the feature-map area (x25 from imgsz 128 to 640); cwd and fgd's focal terms do not. At a larger
``imgsz``, divide ``kd_mgd_alpha``, ``kd_fgd_gamma`` and ``kd_fgd_lambda`` accordingly if the term dominates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# --- per-level losses between two (N, C, H, W) maps --------------------------------------------------------------
# Each returns a scalar that does not grow with batch size or map size (a mean), so one weight fits every level and
# every input size; sums are taken in float32 so that fp16 autocast cannot overflow them. The adversarial term
# uses them by name (``adv_loss``, :func:`feature_loss`); the clean-image bases below use them per level.

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


# --- clean-image bases over levels (kd_loss) ---------------------------------------------------------------------

KD_LOSSES = ("none", "pkd", "cwd", "native", "mgd", "fgd")  # none: no feature term


class PKDLoss(nn.Module):
    """Pearson-correlation distillation (:func:`pkd_loss`) summed over levels."""

    def __init__(self, weight: float):
        """``weight``: multiplier of the per-level loss."""
        super().__init__()
        self.weight = weight

    def forward(self, students: list[torch.Tensor], teachers: list[torch.Tensor], batch: dict | None = None):
        """Sum over levels of weight * (1 - Pearson r), per channel over (N, H, W)."""
        total = students[0].new_zeros((), dtype=torch.float32)
        for s, t in zip(students, teachers, strict=True):
            total = total + pkd_loss(s, t.detach()) * self.weight
        return total


class CWDLoss(nn.Module):
    """Channel-wise distillation summed over levels, optionally on per-channel standardised features."""

    def __init__(self, tau: float, weight: float, norm: bool = False):
        """``tau``: softmax temperature; ``weight``: multiplier of the per-level loss; ``norm``: standardise first."""
        super().__init__()
        self.tau = tau
        self.weight = weight
        self.norm = norm

    def forward(self, students: list[torch.Tensor], teachers: list[torch.Tensor], batch: dict | None = None):
        """Sum over levels of weight * KL(teacher || student) of the per-channel spatial distributions."""
        total = students[0].new_zeros((), dtype=torch.float32)
        for s, t in zip(students, [t.detach() for t in teachers], strict=True):
            if self.norm:
                s, t = standardize(s), standardize(t)
            total = total + cwd_loss(s, t, self.tau) * self.weight
        return total


def mgd_keep_mask(n: int, h: int, w: int, ratio: float, device) -> torch.Tensor:
    """(n, 1, h, w) float mask: each position is 0 (masked) with probability ``ratio``, else 1; torch's RNG."""
    return (torch.rand(n, 1, h, w, device=device) >= ratio).float()


class MGDLoss(nn.Module):
    """Masked generative distillation: one generation block per level, owned by the loss (trained with it)."""

    def __init__(self, channels: list[int], alpha: float, ratio: float):
        """``channels``: teacher channels per level; ``alpha``: loss weight; ``ratio``: masked fraction."""
        super().__init__()
        self.alpha = alpha
        self.ratio = ratio
        self.generation = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(c, c, 3, padding=1))
            for c in channels
        )

    def level_loss(self, i: int, s: torch.Tensor, t: torch.Tensor, keep: torch.Tensor | None = None):
        """Per-image squared error of level ``i``'s regeneration; ``keep`` overrides the random mask."""
        n, _, h, w = s.shape
        if keep is None:
            keep = mgd_keep_mask(n, h, w, self.ratio, s.device)
        generated = self.generation[i](s * keep.to(s.dtype))
        return (generated.float() - t.float()).pow(2).sum() / n

    def forward(self, students: list[torch.Tensor], teachers: list[torch.Tensor], batch: dict | None = None):
        """alpha * sum over levels of the per-image squared error between regenerated and teacher features."""
        total = students[0].new_zeros((), dtype=torch.float32)
        for i, (s, t) in enumerate(zip(students, [t.detach() for t in teachers], strict=True)):
            total = total + self.level_loss(i, s, t) * self.alpha
        return total


class GlobalContext(nn.Module):
    """GcBlock-style global context (Cao et al., 2019) as used by FGD: x + transform(attention-pooled context)."""

    def __init__(self, c: int):
        """``c`` channels; bottleneck c // 2 as in FGD; the last conv starts at zero (the block starts as identity)."""
        super().__init__()
        hidden = max(1, c // 2)
        self.key = nn.Conv2d(c, 1, 1)
        self.transform = nn.Sequential(
            nn.Conv2d(c, hidden, 1), nn.LayerNorm([hidden, 1, 1]), nn.ReLU(inplace=True), nn.Conv2d(hidden, c, 1)
        )
        nn.init.kaiming_normal_(self.key.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(self.key.bias)
        nn.init.zeros_(self.transform[-1].weight)
        nn.init.zeros_(self.transform[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Add the per-image channel vector computed from the softmax-weighted sum of all positions."""
        n, c, h, w = x.shape
        weights = self.key(x).view(n, 1, h * w).softmax(dim=-1)  # (n, 1, hw)
        context = torch.bmm(x.view(n, c, h * w), weights.transpose(1, 2)).view(n, c, 1, 1)
        return x + self.transform(context)


def fgd_attention(f: torch.Tensor, temp: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Spatial (n, h, w) and channel (n, c) attention of ``f``: softmax of mean |f| / temp, scaled to mean 1."""
    n, c, h, w = f.shape
    a = f.float().abs()
    spatial = (a.mean(dim=1).view(n, h * w) / temp).softmax(dim=1).view(n, h, w) * (h * w)
    channel = (a.mean(dim=(2, 3)) / temp).softmax(dim=1) * c
    return spatial, channel


def fgd_masks(batch: dict, n: int, h: int, w: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Foreground scale mask and background mask, both (n, h, w), from the batch's normalised xywh boxes.

    A cell of the h x w grid belongs to a box when it overlaps the box (at least the cell holding the box centre,
    clamped inside the map, so boxes touching or crossing the border and degenerate boxes are handled). A
    foreground cell is worth 1 / (cells of the smallest box covering it); a background cell 1 / (background
    cells of its image); an image without boxes is all background.
    """
    fg = torch.zeros(n, h * w, device=device)
    idx = batch["batch_idx"].to(device).long()
    boxes = batch["bboxes"].to(device).float().view(-1, 4)
    keep = (idx >= 0) & (idx < n)
    idx, boxes = idx[keep], boxes[keep]
    if len(idx):
        cx, cy, bw, bh = boxes.unbind(1)
        x_lo = torch.floor((cx - bw / 2) * w).clamp(0, w - 1)
        x_hi = torch.maximum(torch.ceil((cx + bw / 2) * w) - 1, x_lo).clamp(0, w - 1)
        y_lo = torch.floor((cy - bh / 2) * h).clamp(0, h - 1)
        y_hi = torch.maximum(torch.ceil((cy + bh / 2) * h) - 1, y_lo).clamp(0, h - 1)
        cols = torch.arange(w, device=device, dtype=torch.float32)
        rows = torch.arange(h, device=device, dtype=torch.float32)
        in_x = (cols >= x_lo[:, None]) & (cols <= x_hi[:, None])  # (m, w)
        in_y = (rows >= y_lo[:, None]) & (rows <= y_hi[:, None])  # (m, h)
        cells = (in_y[:, :, None] & in_x[:, None, :]).float().view(-1, h * w)  # (m, hw)
        value = cells / ((x_hi - x_lo + 1) * (y_hi - y_lo + 1))[:, None]
        fg.scatter_reduce_(0, idx[:, None].expand_as(value), value, reduce="amax")
    bg = (fg == 0).float()
    bg = bg / bg.sum(dim=1, keepdim=True).clamp(min=1)
    return fg.view(n, h, w), bg.view(n, h, w)


class FGDLoss(nn.Module):
    """Focal and global distillation: per level, a global-context block for the student and one for the teacher."""

    def __init__(self, channels: list[int], temp: float, alpha: float, beta: float, gamma: float, lam: float):
        """``channels``: teacher channels per level; weights: foreground, background, attention, global."""
        super().__init__()
        self.temp, self.alpha, self.beta, self.gamma, self.lam = temp, alpha, beta, gamma, lam
        self.context_s = nn.ModuleList(GlobalContext(c) for c in channels)
        self.context_t = nn.ModuleList(GlobalContext(c) for c in channels)

    def level_terms(self, i: int, s: torch.Tensor, t: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        """Unweighted per-image terms of level ``i``: fg, bg (focal feature), attention and global."""
        n, _, h, w = s.shape
        fg, bg = fgd_masks(batch, n, h, w, s.device)
        sa_t, ca_t = fgd_attention(t.detach(), self.temp)
        sa_s, ca_s = fgd_attention(s, self.temp)
        err = (s.float() - t.float()).pow(2) * sa_t[:, None] * ca_t[:, :, None, None]  # teacher attention weights
        return {
            "fg": (err * fg[:, None]).sum() / n,
            "bg": (err * bg[:, None]).sum() / n,
            "attention": ((ca_s - ca_t).abs().sum() + (sa_s - sa_t).abs().sum()) / n,
            "global": (self.context_s[i](s).float() - self.context_t[i](t).float()).pow(2).sum() / n,
        }

    def forward(self, students: list[torch.Tensor], teachers: list[torch.Tensor], batch: dict):
        """Weighted sum of the four terms over levels."""
        total = students[0].new_zeros((), dtype=torch.float32)
        for i, (s, t) in enumerate(zip(students, [t.detach() for t in teachers], strict=True)):
            terms = self.level_terms(i, s, t, batch)
            total = total + (
                self.alpha * terms["fg"]
                + self.beta * terms["bg"]
                + self.gamma * terms["attention"]
                + self.lam * terms["global"]
            )
        return total


def build_kd_module(ikd, channels: list[int]) -> nn.Module | None:
    """The loss module for ``ikd.kd_loss`` over levels with the given (teacher) channels; None for native and none."""
    if ikd.kd_loss in ("native", "none"):
        return None
    if ikd.kd_loss == "pkd":
        return PKDLoss(ikd.kd_pkd_weight)
    if ikd.kd_loss == "cwd":
        return CWDLoss(ikd.kd_cwd_tau, ikd.kd_cwd_weight, ikd.kd_cwd_norm)
    if ikd.kd_loss == "mgd":
        return MGDLoss(channels, ikd.kd_mgd_alpha, ikd.kd_mgd_lambda)
    if ikd.kd_loss == "fgd":
        return FGDLoss(
            channels, ikd.kd_fgd_temp, ikd.kd_fgd_alpha, ikd.kd_fgd_beta, ikd.kd_fgd_gamma, ikd.kd_fgd_lambda
        )
    raise ValueError(f"unknown kd_loss '{ikd.kd_loss}': use one of {', '.join(KD_LOSSES)}")
