"""The probe's temporary datasets: every image of a split, filtered at each radius, with its original labels."""

from __future__ import annotations

import glob
import os
import shutil
import statistics
from pathlib import Path

import numpy as np

from .filters import KINDS, filter_image


def split_images(data: dict, split: str = "val") -> list[str]:
    """Image files of ``split`` in a checked data dict, found as Ultralytics finds them (dirs, txt lists, files)."""
    from ultralytics.data.utils import IMG_FORMATS

    paths = data.get(split)
    if not paths:
        raise ValueError(f"the dataset has no '{split}' split")
    files: list[str] = []
    for p in paths if isinstance(paths, list) else [paths]:
        p = Path(p)
        if p.is_dir():
            files += glob.glob(str(Path(glob.escape(str(p))) / "**" / "*.*"), recursive=True)
        elif p.is_file() and p.suffix[1:].lower() in IMG_FORMATS:
            files.append(str(p))
        elif p.is_file():
            lines = p.read_text(encoding="utf-8-sig").strip().splitlines()
            files += [x.replace("./", str(p.parent) + os.sep, 1) if x.startswith("./") else x for x in lines]
        else:
            raise FileNotFoundError(f"{p} does not exist")
    files = sorted(f for f in files if f.rpartition(".")[-1].lower() in IMG_FORMATS)
    if not files:
        raise FileNotFoundError(f"no images in the '{split}' split: {paths}")
    return files


def _write_dataset(root: Path, data: dict) -> Path:
    import yaml

    (root / "images" / "val").mkdir(parents=True, exist_ok=True)
    (root / "labels" / "val").mkdir(parents=True, exist_ok=True)
    cfg = {
        "path": str(root),
        "train": "images/val",
        "val": "images/val",
        "names": data["names"],
        "channels": int(data.get("channels", 3)),
    }
    (root / "data.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return root / "data.yaml"


def _dataset_key(kind: str, radius: float | None) -> str:
    return "none" if kind == "none" else f"{kind}_r{radius:g}"


def build_filtered_datasets(
    images: list[str], data: dict, radii: list[float], filter: str, root: Path
) -> tuple[dict[str, Path], float, np.ndarray | None]:
    """Write the unfiltered and every filtered copy of ``images`` (+ labels) under ``root``.

    Returns the data yaml of each copy (keys ``none``, ``low_r8``, ``high_r8``, ...), the median image area in px^2
    and a strip of the first image through every filter (for ``probe_examples.jpg``).
    """
    import cv2
    from ultralytics.data.utils import img2label_paths
    from ultralytics.utils import TQDM
    from ultralytics.utils.patches import imread, imwrite

    channels = int(data.get("channels", 3))
    flags = {1: cv2.IMREAD_GRAYSCALE, 3: cv2.IMREAD_COLOR}.get(channels, cv2.IMREAD_UNCHANGED)
    suffix = ".png" if channels in (1, 3, 4) else ".tiff"
    jobs = [("none", None)] + [(k, r) for r in radii for k in KINDS]
    yamls = {_dataset_key(k, r): _write_dataset(root / _dataset_key(k, r), data) for k, r in jobs}
    stems: dict[str, str] = {}
    areas, example = [], None
    for i, (im_file, label_file) in enumerate(
        TQDM(list(zip(images, img2label_paths(images), strict=True)), desc="probe: filtering images")
    ):
        stem = Path(im_file).stem
        if stem in stems:
            raise ValueError(f"{stems[stem]} and {im_file} have the same file name stem; the probe needs unique stems")
        stems[stem] = im_file
        img = imread(im_file, flags)
        if img is None:
            continue  # unreadable: Ultralytics skips it too
        areas.append(img.shape[0] * img.shape[1])
        tiles = []
        for kind, r in jobs:
            out = img if kind == "none" else filter_image(img, r, kind, filter)
            key = _dataset_key(kind, r)
            imwrite(str(root / key / "images" / "val" / f"{stem}{suffix}"), out)
            if Path(label_file).is_file():
                shutil.copyfile(label_file, root / key / "labels" / "val" / f"{stem}.txt")
            if i == 0:
                tiles.append((key, out))
        if i == 0:
            example = _example_strip(tiles)
    if not areas:
        raise FileNotFoundError("no readable image in the split")
    return yamls, float(statistics.median(areas)), example


def _example_strip(tiles: list[tuple[str, np.ndarray]]) -> np.ndarray:
    """Two rows (low-pass, high-pass) of one image through every filter, the original first in each row."""
    import cv2

    def tile(key: str, im: np.ndarray) -> np.ndarray:
        im = im if im.ndim == 3 else cv2.cvtColor(im, cv2.COLOR_GRAY2BGR)
        im = cv2.resize(np.ascontiguousarray(im[..., :3]), (160, round(160 * im.shape[0] / im.shape[1])))
        im = cv2.copyMakeBorder(im, 18, 2, 2, 2, cv2.BORDER_CONSTANT, value=(255, 255, 255))
        cv2.putText(im, key, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        return im

    base = tile("original", tiles[0][1])
    rows = [np.hstack([base] + [tile(k, im) for k, im in tiles if k.startswith(kind)]) for kind in KINDS]
    return np.vstack(rows)
