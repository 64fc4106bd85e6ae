"""Sample-specific frequency augmentation (IKD, mechanism 1) as one albumentations transform.

The reference implementation (the IKD authors' mmdetection fork) picks the augmentation of each training sample
from the sizes of its objects:

- every object is *small* (box area below ``small_object_area`` of the image; COCO's 32x32 px at 640x640 is
  0.0025): with probability ``noise_p`` the whole image gets Gaussian noise (ImageNet-C ``gaussian_noise``,
  severity 1: sigma 0.08 on a 0..1 image) -- extra high-frequency energy, where small objects live;
- at least one object is medium or large: with probability ``crop_p`` a window keeping a fraction in
  [``crop_min_side``, 1] of each side is cropped at a random position: the window's pixels stay where they are, at
  their scale, and the rest is filled with Ultralytics' padding grey (YOLO batches need one size): border context
  removed, no resampling, as the reference crops;
- no objects: left alone.

Where it runs: on each source image as the dataset loads it (:class:`SourceImageFrequency`), before mosaic, by that
image's own boxes, as the reference decides per COCO image (a mosaic of four images rarely holds small objects only,
a source image often does); ``small_object_area`` is a fraction of the source image as loaded (its long side at
imgsz): 0.0025 is 32x32 px at imgsz 640 and 16x16 px at imgsz 320. Removed (benchmarks/HISTORY.md):
``freq_stage=sample``, the transform in Ultralytics' albumentations list, after mosaic and affine.

The transform's arguments are the ``freq_*`` settings, with their defaults and ranges (:mod:`ikd_yolo.settings`).
What a run does with it, epoch by epoch, is :class:`ikd_yolo.frequency_run.FrequencyAugmentation`.
"""

from __future__ import annotations

import os
import random
from typing import Any

import cv2
import numpy as np
import torch
from albumentations.core.transforms_interface import DualTransform

from .settings import SETTINGS

BRANCHES = ("none", "noise", "crop")
# the transform's arguments are the freq_* settings: their defaults, ranges and choices are the settings' alone
SETTING_OF = {
    "small_object_area": "freq_small_area",
    "noise_p": "freq_noise_p",
    "noise_sigma": "freq_noise_sigma",
    "crop_p": "freq_crop_p",
    "crop_min_side": "freq_crop_min_side",
}
PAD_VALUE = 114  # Ultralytics' letterbox and mosaic grey


def choose_branch(box_areas: np.ndarray, small_object_area: float) -> str:
    """Which branch a sample may take: ``noise`` if all boxes are small, ``crop`` if any is not, else ``none``.

    Args:
        box_areas: Box areas as fractions of the image area.
        small_object_area: Threshold below which a box is small (a box exactly at the threshold is not small).
    """
    box_areas = np.asarray(box_areas, dtype=np.float64)
    if box_areas.size == 0:
        return "none"
    return "noise" if bool((box_areas < small_object_area).all()) else "crop"


_NOISE_BANK_SIZE = 1 << 23  # 8M int16 values (16 MB): covers a 1600x1600x3 image
_noise_banks: dict[float, np.ndarray] = {}


def add_gaussian_noise(img: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """``img`` (uint8) plus i.i.d. N(0, (255 sigma)^2) noise per pixel, rounded and saturated to 0..255.

    Drawing 1.2M normal variates per 640x640 image costs tens of milliseconds, too slow for a dataloader. The
    values are drawn once per process into a bank; each image takes a contiguous run of it at an offset chosen by
    ``seed``, which is still i.i.d. normal within the image (images only share noise if their offsets overlap).
    """
    bank = _noise_banks.get(sigma)
    if bank is None:
        rng = np.random.default_rng(0)
        bank = np.rint(rng.standard_normal(_NOISE_BANK_SIZE, dtype=np.float32) * (sigma * 255.0)).astype(np.int16)
        _noise_banks[sigma] = bank
    if img.size > bank.size:  # very large image: draw directly
        noise = np.rint(np.random.default_rng(seed).standard_normal(img.shape, dtype=np.float32) * (sigma * 255.0))
        return np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    offset = seed % (bank.size - img.size + 1)
    noise = bank[offset : offset + img.size].reshape(img.shape)
    return cv2.add(img, noise, dtype=cv2.CV_8U).reshape(img.shape)


def _checked(name: str, value: float) -> float:
    """``value`` as a float, refused (naming the argument) outside its setting's range in :mod:`ikd_yolo.settings`."""
    s = SETTINGS[SETTING_OF[name]]
    value = float(value)
    if not s.low <= value <= s.high:
        raise ValueError(f"SizeAwareFrequencyAug: {name}={value} must be in [{s.low}, {s.high}]")
    return value


def _default(name: str):
    return SETTINGS[SETTING_OF[name]].default


class SizeAwareFrequencyAug(DualTransform):
    """Gaussian noise for all-small samples, a crop for samples with a medium or large object.

    Each argument is a ``freq_*`` setting (:data:`SETTING_OF`), with that setting's default and range.

    Args:
        small_object_area: Box area, as a fraction of the image area, below which an object is small.
        noise_p: Probability of the noise branch on an all-small sample.
        noise_sigma: Noise standard deviation on a 0..1 scale.
        crop_p: Probability of the crop branch on a sample with a non-small object.
        crop_min_side: Smallest fraction of each side the crop keeps.
        p: Probability of applying the transform at all.
    """

    def __init__(
        self,
        small_object_area: float = _default("small_object_area"),
        noise_p: float = _default("noise_p"),
        noise_sigma: float = _default("noise_sigma"),
        crop_p: float = _default("crop_p"),
        crop_min_side: float = _default("crop_min_side"),
        p: float = 1.0,
    ):
        super().__init__(p=p)
        self.small_object_area = _checked("small_object_area", small_object_area)
        self.noise_p = _checked("noise_p", noise_p)
        self.noise_sigma = _checked("noise_sigma", noise_sigma)
        self.crop_p = _checked("crop_p", crop_p)
        self.crop_min_side = _checked("crop_min_side", crop_min_side)
        # (none, noise, crop) counts shared with forked DataLoader workers, read by the trainer once per epoch
        self.branch_counts = torch.zeros(len(BRANCHES), dtype=torch.int64).share_memory_()

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("small_object_area", "noise_p", "noise_sigma", "crop_p", "crop_min_side")

    @property
    def targets_as_params(self) -> list[str]:
        return ["bboxes"]

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        return self.draw(data.get("bboxes", []), self.py_random)

    def draw(self, boxes, rng) -> dict[str, Any]:
        """The branch and its parameters for a sample with ``boxes`` (normalised ``x_min, y_min, x_max, y_max``
        first), drawn from ``rng`` (a ``random.Random``-like object); counted in ``branch_counts``."""
        boxes = np.asarray(boxes, dtype=np.float64)
        boxes = boxes.reshape(-1, boxes.shape[-1]) if boxes.size else np.zeros((0, 4))
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) if len(boxes) else np.zeros(0)
        candidate = choose_branch(areas, self.small_object_area)
        branch = "none"
        if candidate == "noise" and rng.random() < self.noise_p:
            branch = "noise"
        elif candidate == "crop" and rng.random() < self.crop_p:
            branch = "crop"
        self.branch_counts[BRANCHES.index(branch)] += 1
        out: dict[str, Any] = {"branch": branch, "window": (0.0, 0.0, 1.0, 1.0), "noise_seed": 0}
        if branch == "crop":
            fw = rng.uniform(self.crop_min_side, 1.0)
            fh = rng.uniform(self.crop_min_side, 1.0)
            x0 = rng.uniform(0.0, 1.0 - fw)
            y0 = rng.uniform(0.0, 1.0 - fh)
            out["window"] = (x0, y0, x0 + fw, y0 + fh)  # normalised x_min, y_min, x_max, y_max
        elif branch == "noise":
            out["noise_seed"] = rng.randrange(2**31)
        return out

    def apply(self, img: np.ndarray, branch: str = "none", window=(0.0, 0.0, 1.0, 1.0), noise_seed: int = 0, **_):
        if branch == "noise":
            return add_gaussian_noise(img, self.noise_sigma, noise_seed)
        if branch == "crop":
            h, w = img.shape[:2]
            x0, y0, x1, y1 = window
            rows = slice(int(round(y0 * h)), int(round(y1 * h)))
            cols = slice(int(round(x0 * w)), int(round(x1 * w)))
            out = np.full_like(img, PAD_VALUE)
            out[rows, cols] = img[rows, cols]
            return out
        return img

    def apply_to_bboxes(self, bboxes: np.ndarray, branch: str = "none", window=(0.0, 0.0, 1.0, 1.0), **_):
        if branch != "crop" or not len(bboxes):
            return bboxes
        x0, y0, x1, y1 = window
        out = np.array(bboxes, dtype=np.float64, copy=True)
        out[:, [0, 2]] = out[:, [0, 2]].clip(x0, x1)  # boxes stay where they are, cut to the window
        out[:, [1, 3]] = out[:, [1, 3]].clip(y0, y1)
        return out.astype(np.asarray(bboxes).dtype)

    def apply_to_keypoints(self, keypoints: np.ndarray, **_):
        return keypoints  # the crop keeps every pixel where it is

    def pop_branch_fractions(self) -> dict[str, float]:
        """Fraction of samples per branch since the last call; resets the counts."""
        counts = self.branch_counts.clone()
        self.branch_counts.zero_()
        total = int(counts.sum())
        return {b: (int(c) / total if total else 0.0) for b, c in zip(BRANCHES, counts, strict=True)}


# --- wiring into Ultralytics' pipeline ----------------------------------------------------------------------


def build_transform(ikd) -> SizeAwareFrequencyAug:
    """The transform with the run's ``freq_*`` settings (``ikd``: an :class:`~ikd_yolo.config.IKDConfig`)."""
    return SizeAwareFrequencyAug(**{name: getattr(ikd, key) for name, key in SETTING_OF.items()})


class SourceImageFrequency:
    """The transform on each source image as the dataset loads it, before mosaic.

    Installed as the training dataset's ``get_image_and_label`` (an instance attribute, so Ultralytics' ``Mosaic``,
    which loads its other tiles through that method, gets them augmented too). The branch is chosen from the boxes
    of that source image alone, as fractions of its own area, which is how the reference decides per COCO image. Its
    draws come from a stream of its own, seeded in each process (the main one, each dataloader worker) from the
    state of Python's ``random`` there, which Ultralytics seeds per run, per worker and (here) per resumed epoch:
    reproducible, and it takes no draw from ``random`` itself, so mosaic, affine and the rest of Ultralytics'
    pipeline draw exactly what they would without the hook (a run with it and one without see the same layouts,
    which keeps benchmark comparisons paired). Boxes cut to
    less than a pixel by a crop are dropped with their classes. Detection labels only (boxes; no segments or
    keypoints).
    """

    def __init__(self, dataset, transform: SizeAwareFrequencyAug):
        self.dataset = dataset
        self.transform = transform
        self._rng: random.Random | None = None
        self._rng_pid: int | None = None

    def reset_stream(self) -> None:
        """Seed the stream again, from ``random``'s state at the next draw (after a resume has reseeded it)."""
        self._rng = None

    def rng(self) -> random.Random:
        """This process's stream (a forked dataloader worker gets its own on its first draw)."""
        if self._rng is None or self._rng_pid != os.getpid():
            # reads the global state, draws nothing from it; only its integers are hashed (before Python 3.12 the hash
            # of the state's trailing None is its address, which differs between processes)
            self._rng = random.Random(hash(random.getstate()[1]))
            self._rng_pid = os.getpid()
        return self._rng

    @classmethod
    def install(cls, dataset, ikd) -> SourceImageFrequency:
        hook = cls(dataset, build_transform(ikd))
        dataset.get_image_and_label = hook
        return hook

    @staticmethod
    def installed(dataset) -> SourceImageFrequency | None:
        """The hook installed in ``dataset``, or None."""
        hook = dataset.__dict__.get("get_image_and_label")
        return hook if isinstance(hook, SourceImageFrequency) else None

    @classmethod
    def remove(cls, dataset) -> bool:
        """Take the hook out of ``dataset``; whether there was one."""
        if cls.installed(dataset) is None:
            return False
        del dataset.get_image_and_label
        return True

    def __call__(self, index: int) -> dict[str, Any]:
        label = type(self.dataset).get_image_and_label(self.dataset, index)
        return self.apply(label, self.rng())

    def apply(self, label: dict[str, Any], rng) -> dict[str, Any]:
        """The transform on one Ultralytics label dict (``img`` and ``instances``), drawn from ``rng``."""
        img, instances = label["img"], label["instances"]
        if instances.segments.size or instances.keypoints is not None:
            raise NotImplementedError("the frequency augmentation handles detection labels (boxes) only")
        h, w = img.shape[:2]
        fmt, normalized = instances._bboxes.format, instances.normalized
        instances.convert_bbox("xyxy")
        if not normalized:
            instances.normalize(w, h)
        params = self.transform.draw(instances.bboxes, rng)
        label["img"] = self.transform.apply(img, **params)
        if params["branch"] == "crop" and len(instances):
            boxes = self.transform.apply_to_bboxes(instances.bboxes, **params)
            instances.update(bboxes=boxes)
            keep = ((boxes[:, 2] - boxes[:, 0]) * w >= 1) & ((boxes[:, 3] - boxes[:, 1]) * h >= 1)
            if not keep.all():
                instances = instances[keep]
                label["cls"] = label["cls"][keep]
        if not normalized:
            instances.denormalize(w, h)
        instances.convert_bbox(fmt)
        label["instances"] = instances
        return label
