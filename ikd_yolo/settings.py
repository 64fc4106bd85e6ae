"""The declaration of every IKD setting: default (whose type is the key's type), help, and choices or range.

This is the one place a key is declared; :mod:`ikd_yolo.config` builds the typed, validated :class:`IKDConfig` from
it and writes ``cfg/ikd.yaml`` from it. The modules that own a setting's choices export them
(:data:`ikd_yolo.kd_losses.KD_LOSSES`, :data:`ikd_yolo.kd_losses.FEATURE_LOSSES`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .kd_losses import FEATURE_LOSSES, KD_LOSSES


@dataclass(frozen=True)
class Setting:
    """One IKD key: its default (whose type is the key's type), help, and choices or an inclusive range."""

    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    low: float | None = None
    high: float | None = None
    section: str = ""

    @property
    def kind(self) -> type:
        return type(self.default)


_BASE = "clean-image distillation: the feature base (dis_loss) and the response terms (cls_kd, dfl_kd)"
_SCHED = "schedule and calibration of every distillation term"
_FREQ = "1. sample-specific frequency augmentation (dataloader)"
_ADV = "2. adversarial feature augmentation (loss)"


def _s(default, help, section, choices=None, low=None, high=None) -> Setting:
    return Setting(default, help, choices, low, high, section)


SETTINGS: dict[str, Setting] = {
    # --- base feature distillation on clean images ---
    "kd_loss": _s(
        "none",
        "feature KD loss on the Detect inputs (dis_loss): none (no feature term), pkd (1 - Pearson r per channel), "
        "cwd, native (Ultralytics' score-weighted L2, weight `dis`), mgd or fgd",
        _BASE,
        choices=KD_LOSSES,
    ),
    "kd_pkd_weight": _s(
        1.0, "pkd weight per level (Cao et al. NeurIPS 2022; bounded in [0, 2] per level)", _BASE, low=0.0, high=1e6
    ),
    "kd_cwd_tau": _s(
        1.0, "cwd temperature (Shu et al. ICCV 2021, detection setting: 1.0)", _BASE, low=1e-3, high=100.0
    ),
    "kd_cwd_weight": _s(
        5.0, "cwd weight per level (the authors' RetinaNet-FPN detection setting: 5)", _BASE, low=0.0, high=1e6
    ),
    "kd_cwd_norm": _s(
        True,
        "cwd on per-channel standardised features (as MMYOLO's and DAMO-YOLO's BN-normalised "
        "cwd): invariant to feature scale",
        _BASE,
    ),
    "kd_mgd_alpha": _s(
        0.00032,
        "mgd weight: the paper's one-stage 2e-5 x 16 (so that the initial dis_loss is a few units)",
        _BASE,
        low=0.0,
        high=1e6,
    ),
    "kd_mgd_lambda": _s(
        0.65,
        "mgd fraction of student positions masked (Yang et al. ECCV 2022, one-stage: 0.65)",
        _BASE,
        low=0.0,
        high=0.99,
    ),
    "kd_fgd_temp": _s(
        0.5, "fgd attention temperature (Yang et al. CVPR 2022, RetinaNet: 0.5)", _BASE, low=1e-3, high=100.0
    ),
    "kd_fgd_alpha": _s(0.002, "fgd foreground weight: the authors' RetinaNet 1e-3 x 2", _BASE, low=0.0, high=1e6),
    "kd_fgd_beta": _s(0.001, "fgd background weight: the authors' RetinaNet 5e-4 x 2", _BASE, low=0.0, high=1e6),
    "kd_fgd_gamma": _s(
        0.001, "fgd attention-transfer (L1) weight: the authors' RetinaNet 5e-4 x 2", _BASE, low=0.0, high=1e6
    ),
    "kd_fgd_lambda": _s(
        0.00001, "fgd global (GcBlock relation) weight: the authors' RetinaNet 5e-6 x 2", _BASE, low=0.0, high=1e6
    ),
    "kd_cls_weight": _s(
        0.0,
        "classification KD on the Detect class logits (cls_kd): BCE to the teacher's "
        "probabilities weighted by |p_t - p_s|^beta (BCKD, Yang et al. ICCV 2023); 0 = off",
        _BASE,
        low=0.0,
        high=1e6,
    ),
    "kd_cls_beta": _s(1.0, "exponent of the BCKD weight |p_t - p_s|^beta (paper: 1.0)", _BASE, low=0.0, high=10.0),
    "kd_dfl_weight": _s(
        0.0,
        "localisation KD on the DFL bins (dfl_kd): KL at temperature kd_dfl_tau, weighted by the "
        "teacher's class confidence (LD, Zheng et al. CVPR 2022); 0 = off",
        _BASE,
        low=0.0,
        high=1e6,
    ),
    "kd_dfl_tau": _s(10.0, "LD temperature (paper: 10)", _BASE, low=1e-3, high=100.0),
    "kd_labels": _s(
        1.0,
        "teacher-refined labels: a label overlapping a confident teacher detection of its class moves this far "
        "towards its box (1 = replaced); confident detections that overlap no label are added; 0 = off",
        _BASE,
        low=0.0,
        high=1.0,
    ),
    "kd_label_conf": _s(
        0.5, "score from which a teacher detection refines or adds a label (kd_labels)", _BASE, low=0.001, high=1.0
    ),
    "kd_label_iou": _s(
        0.5,
        "IoU from which a confident teacher detection of a label's class refines that label (kd_labels)",
        _BASE,
        low=0.01,
        high=1.0,
    ),
    "kd_label_new_iou": _s(
        0.3,
        "a confident teacher detection whose IoU with every label of its image is below this becomes a new label "
        "(kd_labels); 0: none",
        _BASE,
        low=0.0,
        high=1.0,
    ),
    # --- schedule and calibration ---
    "kd_warmup_epochs": _s(
        1.0,
        "projector warm-up: for this many epochs the feature term trains only the projector (on detached student "
        "features) and no KD term reaches the student",
        _SCHED,
        low=0.0,
        high=1e4,
    ),
    "kd_final_scale": _s(
        0.1,
        "after the warm-up, the KD scale decays on a cosine from 1 to this at the end of the KD epochs",
        _SCHED,
        low=0.0,
        high=1.0,
    ),
    "kd_close_mosaic_off": _s(True, "every KD term (and the teacher's forward) off in the close_mosaic epochs", _SCHED),
    "kd_balance": _s(
        0.03,
        "automatic weights: after the projector warm-up each KD term is scaled so that its gradient on the "
        "student is this fraction of the detection loss's gradient; 0 = use the fixed weights",
        _SCHED,
        low=0.0,
        high=100.0,
    ),
    "kd_balance_batches": _s(4, "training batches averaged by the kd_balance calibration", _SCHED, low=1, high=1000),
    # --- 1. sample-specific frequency augmentation (dataloader) ---
    "freq_aug": _s(True, "append the size-aware frequency augmentation to the training pipeline", _FREQ),
    "freq_epochs": _s(
        0.667,
        "fraction of the epochs (from the start) with the frequency augmentation on; the reference uses it in stage 1 "
        "only, like the adversarial term (16 of 24 epochs)",
        _FREQ,
        low=0.0,
        high=1.0,
    ),
    "freq_small_area": _s(
        0.0025,
        "box area, as a fraction of the training image, below which an object is small (COCO 32^2 at 640^2)",
        _FREQ,
        low=1e-6,
        high=1.0,
    ),
    "freq_noise_p": _s(
        0.3, "probability of Gaussian noise on a sample whose objects are all small", _FREQ, low=0.0, high=1.0
    ),
    "freq_noise_sigma": _s(
        0.08, "noise std on a 0..1 image (ImageNet-C gaussian_noise severity 1)", _FREQ, low=0.0, high=1.0
    ),
    "freq_crop_p": _s(
        0.5,
        "probability of a crop on a sample with at least one medium/large object: the window stays in place at its "
        "scale, the rest padded grey (the reference crops without resizing)",
        _FREQ,
        low=0.0,
        high=1.0,
    ),
    "freq_crop_min_side": _s(
        0.8, "a crop keeps a fraction of each side drawn uniformly from [this, 1]", _FREQ, low=0.1, high=1.0
    ),
    # --- 2. adversarial feature augmentation (loss) ---
    "adv_aug": _s(True, "match the student to the teacher on adversarial images made against the teacher", _ADV),
    "adv_weight": _s(
        1.0,
        "weight of the adversarial term (its loss per element or per soft positive, x batch size like other "
        "terms; rescaled by kd_balance when that is on)",
        _ADV,
        low=0.0,
        high=1e6,
    ),
    "adv_loss": _s(
        "mse",
        "adversarial feature loss: base = the feature base's own loss (kd_loss pkd or cwd; mse for native, mgd "
        "and fgd), or one of mse, l1, cwd, pkd",
        _ADV,
        choices=("base", *FEATURE_LOSSES),
    ),
    "adv_match": _s(
        "response",
        "on adversarial images the student matches: response = the teacher's Detect outputs (BCKD, LD), "
        "features = its projected features (the reference's; adv_loss)",
        _ADV,
        choices=("response", "features"),
    ),
    "adv_cwd_tau": _s(1.0, "temperature of the cwd adversarial loss", _ADV, low=1e-3, high=100.0),
    "adv_eps": _s(
        4.0,
        "L-inf bound of the perturbation, in pixel levels of 255 (reference: 8)",
        _ADV,
        low=0.0,
        high=255.0,
    ),
    "adv_step_size": _s(
        0.0,
        "step size per attack iteration, in pixel levels of 255 (was adv_step); 0 = adv_eps / adv_steps, so that "
        "the attack reaches the bound",
        _ADV,
        low=0.0,
        high=255.0,
    ),
    "adv_steps": _s(
        1,
        "MI-DI-FGSM iterations per batch (reference: 5); each costs a teacher forward and backward",
        _ADV,
        low=0,
        high=100,
    ),
    "adv_decay": _s(1.0, "momentum decay of MI-FGSM", _ADV, low=0.0, high=10.0),
    "adv_di_prob": _s(
        0.5, "probability of input diversity (random shrink + zero pad) at each attack step", _ADV, low=0.0, high=1.0
    ),
    "adv_di_rate": _s(0.9, "smallest shrink factor of input diversity", _ADV, low=0.1, high=1.0),
    "adv_scale": _s(
        1.0,
        "resolution of the attack, as a fraction of the training image's side (rounded to the teacher's stride): the "
        "attack's teacher passes cost about its square; the perturbation found is resized (bilinear) to the image",
        _ADV,
        low=0.25,
        high=1.0,
    ),
    "adv_batch_frac": _s(0.5, "fraction of each batch that is attacked and used by the term", _ADV, low=0.01, high=1.0),
    "adv_bn": _s(
        "split",
        "the student's BatchNorm on adversarial images: split = one forward with the clean images, own batch "
        "statistics per group, running statistics from clean only; running = own forward, frozen (the reference's)",
        _ADV,
        choices=("running", "split"),
    ),
    "adv_epochs": _s(
        0.667,
        "fraction of the epochs (from the start) during which the term is on (reference: 16/24)",
        _ADV,
        low=0.0,
        high=1.0,
    ),
}
