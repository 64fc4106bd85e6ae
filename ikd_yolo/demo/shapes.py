"""A generated detection dataset for the demo, the tests and the benchmarks.

Nothing may be downloaded at run time, so the project makes its own data: geometric objects of four classes
(disc, box, triangle, cross) drawn at three sizes on cluttered backgrounds (smooth colour gradients, texture
noise, random lines and distractor blobs). Sizes follow COCO's convention at training resolution:

- *small*: box area below 0.25 % of the image (COCO's 32x32 px at 640 px),
- *medium*: up to 9 % of the image (96x96 px at 640 px),
- *large*: above that.

About 40 % of the images hold only small objects and the rest hold at least one medium or large object, so both
branches of the size-dependent frequency augmentation have samples. Generation is deterministic in ``seed``.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

CLASS_NAMES = ("disc", "box", "triangle", "cross")
SMALL_AREA = 0.0025  # fraction of the image area, COCO's 32^2 at 640^2
MEDIUM_AREA = 0.09  # COCO's 96^2 at 640^2


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Cluttered background: colour gradient, texture noise, lines and distractor blobs (uint8 BGR)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    c0, c1, c2 = (rng.uniform(40, 215, 3) for _ in range(3))
    angle = rng.uniform(0, 2 * np.pi)
    t = (np.cos(angle) * xx + np.sin(angle) * yy + 1.5) / 3.0
    img = c0 * (1 - t)[..., None] + c1 * t[..., None]
    img += (c2 - 128) * 0.3 * np.sin(xx[..., None] * rng.uniform(2, 8) + yy[..., None] * rng.uniform(2, 8))
    coarse = cv2.resize(rng.normal(0, 18, (size // 8, size // 8, 3)).astype(np.float32), (size, size))
    img = np.clip(img + coarse + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    for _ in range(rng.integers(4, 12)):  # lines
        p1, p2 = rng.integers(0, size, 2), rng.integers(0, size, 2)
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.line(img, tuple(int(v) for v in p1), tuple(int(v) for v in p2), color, int(rng.integers(1, 3)))
    for _ in range(rng.integers(3, 9)):  # distractor blobs: irregular polygons that are not objects
        centre = rng.uniform(0, size, 2)
        radius = rng.uniform(0.02, 0.12) * size
        angles = np.sort(rng.uniform(0, 2 * np.pi, rng.integers(5, 9)))
        radii = radius * rng.uniform(0.4, 1.0, len(angles))
        pts = np.stack([centre[0] + radii * np.cos(angles), centre[1] + radii * np.sin(angles)], 1)
        cv2.fillPoly(img, [pts.astype(np.int32)], tuple(int(c) for c in rng.integers(0, 256, 3)))
    return img


def _draw_object(img: np.ndarray, rng: np.random.Generator, cls: int, x0: int, y0: int, side: int) -> None:
    """Draw one object of class ``cls`` filling the square box (x0, y0, side) in place."""
    color = tuple(int(c) for c in rng.integers(0, 256, 3))
    x1, y1 = x0 + side - 1, y0 + side - 1
    if cls == 0:  # disc
        cv2.circle(img, (x0 + side // 2, y0 + side // 2), side // 2, color, -1, cv2.LINE_AA)
    elif cls == 1:  # box
        cv2.rectangle(img, (x0, y0), (x1, y1), color, -1)
    elif cls == 2:  # triangle
        pts = np.array([[x0 + side // 2, y0], [x0, y1], [x1, y1]], np.int32)
        cv2.fillPoly(img, [pts], color, cv2.LINE_AA)
    else:  # cross
        w = max(1, side // 4)
        c = side // 2
        cv2.rectangle(img, (x0 + c - w // 2, y0), (x0 + c - w // 2 + w, y1), color, -1)
        cv2.rectangle(img, (x0, y0 + c - w // 2), (x1, y0 + c - w // 2 + w), color, -1)


def _sample_image(
    rng: np.random.Generator, size: int, small_objects: bool = True
) -> tuple[np.ndarray, list[tuple[int, float, float, float, float]]]:
    """One image and its YOLO labels (cls, xc, yc, w, h normalised); without ``small_objects`` none is small."""
    img = _background(rng, size)
    all_small = small_objects and rng.random() < 0.4
    n = int(rng.integers(3, 9)) if all_small else int(rng.integers(1, 5 if small_objects else 7))
    small_max = np.sqrt(SMALL_AREA) * size * 0.95
    boxes: list[tuple[int, int, int]] = []
    labels = []
    for k in range(n):
        if not small_objects:  # medium (60 %) or large
            side = rng.uniform(np.sqrt(SMALL_AREA) * size * 1.1, np.sqrt(MEDIUM_AREA) * size)
            if rng.random() >= 0.6:
                side = rng.uniform(np.sqrt(MEDIUM_AREA) * size * 1.05, 0.5 * size)
        elif all_small or k > 0 and rng.random() < 0.5:
            side = rng.uniform(min(max(5.0, 0.025 * size), small_max - 1), small_max)
        elif rng.random() < 0.5:
            side = rng.uniform(np.sqrt(SMALL_AREA) * size * 1.1, np.sqrt(MEDIUM_AREA) * size)
        else:
            side = rng.uniform(np.sqrt(MEDIUM_AREA) * size * 1.05, 0.55 * size)
        side = int(side)
        for _ in range(20):  # place without heavy overlap
            x0, y0 = (int(v) for v in rng.integers(0, size - side, 2))
            if all(
                max(0, min(x0 + side, bx + bs) - max(x0, bx)) * max(0, min(y0 + side, by + bs) - max(y0, by))
                < 0.2 * min(side, bs) ** 2
                for bx, by, bs in boxes
            ):
                break
        else:
            continue
        cls = int(rng.integers(0, len(CLASS_NAMES)))
        _draw_object(img, rng, cls, x0, y0, side)
        boxes.append((x0, y0, side))
        labels.append((cls, (x0 + side / 2) / size, (y0 + side / 2) / size, side / size, side / size))
    return img, labels


def annotate(rng: np.random.Generator, labels: list, box_noise: float, miss_rate: float) -> list:
    """Labels as an imperfect annotator writes them: each object missed with probability ``miss_rate``, each box
    edge off by a Gaussian of ``box_noise`` times the object's side; boxes stay inside the image."""
    out = []
    for c, x, y, w, h in labels:
        jitter = rng.normal(0.0, box_noise, 4) * np.array([w, h, w, h])  # drawn for every object: one stream
        if rng.random() < miss_rate:
            continue
        x1, y1, x2, y2 = np.clip(np.array([x - w / 2, y - h / 2, x + w / 2, y + h / 2]) + jitter, 0.0, 1.0)
        if x2 - x1 < 0.25 * w or y2 - y1 < 0.25 * h:  # a box noise turned inside out: keep the exact one
            x1, y1, x2, y2 = x - w / 2, y - h / 2, x + w / 2, y + h / 2
        out.append((c, (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1))
    return out


def make_shapes_dataset(
    root: str | Path,
    n_train: int = 96,
    n_val: int = 32,
    imgsz: int = 128,
    seed: int = 0,
    channels: int = 3,
    small_objects: bool = True,
    box_noise: float = 0.0,
    miss_rate: float = 0.0,
) -> Path:
    """Write the dataset under ``root`` (reused when already made with the same parameters); return its data yaml.

    Args:
        root: Folder that receives ``images/{train,val}``, ``labels/{train,val}`` and ``data.yaml``.
        n_train: Number of training images.
        n_val: Number of validation images.
        imgsz: Side of the square images in pixels.
        seed: Seed of the generator; the same seed gives the same files.
        channels: 3 for colour, 1 for grayscale images (written as single-channel PNGs).
        small_objects: False for images with medium and large objects only (1-6 per image): at 128 px a small
            object is under 6.4 px wide, which no model of the CPU benchmark detects.
        box_noise: Annotation noise of the **training** labels: each box edge moves by a Gaussian of this standard
            deviation, as a fraction of the object's side (0: exact boxes). The validation labels stay exact.
        miss_rate: Fraction of the training objects left unlabelled, as an annotator misses them (drawn per
            object). The images do not change: the noise has its own random stream.
    """
    root = Path(root).resolve()
    params = {"n_train": n_train, "n_val": n_val, "imgsz": imgsz, "seed": seed, "channels": channels, "v": 1}
    if not small_objects:
        params["small_objects"] = False
    if box_noise or miss_rate:
        params["label_noise"] = [box_noise, miss_rate]
    yaml_path = root / "data.yaml"
    stamp = root / "params.json"
    if yaml_path.exists() and stamp.exists() and json.loads(stamp.read_text()) == params:
        return yaml_path
    rng = np.random.default_rng(seed)
    noise_rng = np.random.default_rng([seed, 1])  # a stream of its own: the images are those of the exact labels
    for split, count in (("train", n_train), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            img, labels = _sample_image(rng, imgsz, small_objects)
            if channels == 1:
                img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
            cv2.imwrite(str(root / "images" / split / f"{i:05d}.png"), img)
            if split == "train" and (box_noise or miss_rate):
                labels = annotate(noise_rng, labels, box_noise, miss_rate)
            lines = [f"{c} {x:.6f} {y:.6f} {w:.6f} {h:.6f}" for c, x, y, w, h in labels]
            (root / "labels" / split / f"{i:05d}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(CLASS_NAMES))
    yaml_path.write_text(f"path: {root}\ntrain: images/train\nval: images/val\nchannels: {channels}\nnames:\n{names}\n")
    stamp.write_text(json.dumps(params))
    return yaml_path
