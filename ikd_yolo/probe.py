"""Frequency probe: how a detector's AP on small, medium and large objects changes when its input keeps only the
low or only the high spatial frequencies, for a teacher and a student side by side.

    ikd-yolo probe model=STUDENT.pt [teacher=TEACHER.pt] data=DATA.yaml [radii=8,16,32,64] [filter=ideal|gaussian]
                   [imgsz=MODEL'S] [batch=16] [device=cpu|0] [project=runs/probe] [name=probe]
                   [split=val] [small_area=0.0025] [medium_area=0.09] [max_images=0]
    python run.py probe ...     (the same)

IKD's frequency augmentation rests on an observation: detectors read small objects mostly from high spatial
frequencies and large objects from low ones, and a large teacher uses high-frequency cues that a small student
does not. The probe measures this on your data and models.

**Filters.** Every image of the split is filtered in the Fourier domain (numpy FFT of each channel) with a low-pass
and a high-pass filter per cut-off radius:

- *radius* ``r`` is a distance from the centre of the image's spectrum in **cycles per longer image side**: for a
  square N x N image it is the frequency index, ``r = N/2`` is the Nyquist frequency along an axis, and low-pass at
  ``r`` keeps detail whose period is longer than ``N/r`` pixels. The unit does not change when the image is resized,
  so ``r`` means the same on the original image and on the network input (``imgsz / r`` pixels there).
- ``filter=ideal`` (default): low-pass keeps frequencies with distance ``<= r`` and zeroes the rest, high-pass the
  complement. ``filter=gaussian``: low-pass weights ``exp(-d^2 / 2r^2)``, high-pass ``1 - exp(-d^2 / 2r^2)``.
- The high-pass image keeps the DC term, i.e. each channel's mean is added back, so it stays a viewable image at the
  original mean brightness rather than a signed edge map; nothing else below the cut-off is kept. Both outputs are
  rounded and clipped to the image's value range (0..255) and written as lossless PNG.

The filtered copies, with the original labels, form temporary YOLO datasets (deleted at the end), and each model is
scored on each of them and on the unfiltered images (``filter none``) with :func:`ikd_yolo.sizeval.evaluate`:
Ultralytics' mAP50-95 plus COCO AP per object size. Sizes are fractions of the image area, as ``freq_small_area``:
small below ``small_area`` (0.0025: COCO's 32^2 px at 640^2), medium up to ``medium_area`` (0.09: 96^2 at 640^2),
large above; they are turned into pixel areas with the median image area of the split.

**Outputs** in the run folder (``project/name``, default ``runs/probe/probe``, incremented, never overwritten):
``probe.csv`` (one row per model, filter and radius), ``probe.png`` (AP against cut-off radius, low-pass and
high-pass panels, one line per model and size, unfiltered AP dotted), ``probe_examples.jpg`` (one image through
every filter), ``probe.txt`` (the table and the recommendation, as printed).

**Recommendation.** *Retention* is a model's AP on filtered images divided by its unfiltered AP, averaged over the
radii (a bucket whose unfiltered AP is 0 or missing gives no evidence). With ``MARGIN = 0.05``:

- *noise branch* (images whose objects are all small get Gaussian noise): supported if, under high-pass, the teacher
  keeps at least ``MARGIN`` more of its small-object AP than the student -- the teacher reads high-frequency cues the
  student lacks, which the noise images expose. Without ``teacher=``: supported if the model keeps more small-object
  AP under high-pass than under low-pass.
- *crop branch* (images with a medium or large object get a zoom crop): supported if the large-object AP (medium if
  there are no large objects) of the teacher (or the single model) is retained at least ``MARGIN`` better under
  low-pass than under high-pass -- large objects depend on low frequencies.
- *size threshold* (``freq_small_area``): objects rely on high frequencies in a size bucket when their high-pass
  retention exceeds their low-pass retention. If both small and medium objects do, ``medium_area`` is suggested
  (treat medium objects as small), otherwise ``small_area``.
"""

from __future__ import annotations

import csv
import glob
import logging
import math
import os
import shutil
import statistics
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

KINDS = ("low", "high")
FILTERS = ("ideal", "gaussian")
SIZES = ("small", "medium", "large")
MARGIN = 0.05
DEFAULTS = dict(
    model=None, teacher=None, data=None, radii=(8, 16, 32, 64), filter="ideal", imgsz=None, batch=16, device=None,
    project=None, name=None, split="val", small_area=0.0025, medium_area=0.09, max_images=0,
)
USAGE = __doc__.split("\n\n")[1]


# ----------------------------------------------------------------------------------------------------- filters
def frequency_distance(h: int, w: int) -> np.ndarray:
    """Distance of each ``rfft2`` coefficient of an h x w image from DC, in cycles per longer image side."""
    side = max(h, w)
    fy = np.fft.fftfreq(h)[:, None] * side
    fx = np.fft.rfftfreq(w)[None, :] * side
    return np.hypot(fy, fx)


def frequency_mask(h: int, w: int, radius: float, kind: str, filter: str = "ideal") -> np.ndarray:
    """Transfer function (0..1) over the ``rfft2`` layout of an h x w image; see the module docstring."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if filter not in FILTERS:
        raise ValueError(f"filter must be one of {FILTERS}, got {filter!r}")
    if radius <= 0:
        raise ValueError(f"radius must be positive, got {radius}")
    d = frequency_distance(h, w)
    low = (d <= radius).astype(np.float64) if filter == "ideal" else np.exp(-0.5 * (d / radius) ** 2)
    mask = low if kind == "low" else 1.0 - low
    if kind == "high":
        mask[0, 0] = 1.0  # keep the mean (DC): a viewable image at the original brightness
    return mask


def fourier_filter(img: np.ndarray, radius: float, kind: str, filter: str = "ideal") -> np.ndarray:
    """Low- or high-pass ``img`` (H x W or H x W x C) per channel with numpy's FFT; float64 result, not clipped."""
    x = np.asarray(img, np.float64)
    squeeze = x.ndim == 2
    if squeeze:
        x = x[..., None]
    h, w = x.shape[:2]
    spectrum = np.fft.rfft2(x, axes=(0, 1))
    out = np.fft.irfft2(spectrum * frequency_mask(h, w, radius, kind, filter)[..., None], s=(h, w), axes=(0, 1))
    return out[..., 0] if squeeze else out


def filter_image(img: np.ndarray, radius: float, kind: str, filter: str = "ideal") -> np.ndarray:
    """:func:`fourier_filter` rounded and clipped back to ``img``'s integer type (0..255 for uint8)."""
    info = np.iinfo(img.dtype) if np.issubdtype(img.dtype, np.integer) else None
    out = fourier_filter(img, radius, kind, filter)
    if info is None:
        return out.astype(img.dtype)
    return np.clip(np.rint(out), info.min, info.max).astype(img.dtype)


# ----------------------------------------------------------------------------------------------------- datasets
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
    cfg = {"path": str(root), "train": "images/val", "val": "images/val", "names": data["names"],
           "channels": int(data.get("channels", 3))}
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
        TQDM(list(zip(images, img2label_paths(images))), desc="probe: filtering images")
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


# ----------------------------------------------------------------------------------------------------- analysis
def _fmt(x: float, pct: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{100 * x:.0f}%" if pct else f"{x:.3f}"


def retention(rows: list[dict], model: str, size: str, kind: str) -> float:
    """Mean over radii of AP(model, size, kind, r) / AP(model, size, unfiltered); nan when there is no evidence."""
    key = f"ap_{size}" if size in SIZES else size
    base = [r[key] for r in rows if r["model"] == model and r["filter"] == "none"]
    if not base or not base[0] > 0:  # nan or 0: no evidence
        return float("nan")
    vals = [r[key] / base[0] for r in rows if r["model"] == model and r["filter"] == kind and not math.isnan(r[key])]
    return float(np.mean(vals)) if vals else float("nan")


def recommend(rows: list[dict], small_area: float, medium_area: float) -> list[str]:
    """The recommendation lines (rules in the module docstring)."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    ref = "teacher" if "teacher" in models else models[0]
    lines = []
    # noise branch: small objects, high frequencies
    if "teacher" in models and "student" in models:
        t, s = retention(rows, "teacher", "small", "high"), retention(rows, "student", "small", "high")
        detail = f"small-object AP kept under high-pass: teacher {_fmt(t, True)}, student {_fmt(s, True)}"
        if math.isnan(t) or math.isnan(s):
            lines.append(f"noise branch: no evidence ({detail}; needs small objects both models detect unfiltered)")
        elif t - s >= MARGIN:
            lines.append(f"noise branch: SUPPORTED ({detail}): the teacher reads high-frequency cues the student lacks")
        else:
            lines.append(f"noise branch: not supported ({detail}): no high-frequency advantage of the teacher")
    else:
        hi, lo = retention(rows, ref, "small", "high"), retention(rows, ref, "small", "low")
        detail = f"small-object AP kept: high-pass {_fmt(hi, True)}, low-pass {_fmt(lo, True)}"
        if math.isnan(hi) or math.isnan(lo):
            lines.append(f"noise branch: no evidence ({detail})")
        else:
            verdict = "SUPPORTED" if hi - lo >= MARGIN else "not supported"
            lines.append(f"noise branch: {verdict} ({detail}; give teacher= to compare with a teacher)")
    # crop branch: large (else medium) objects, low frequencies
    size = "large" if not math.isnan(retention(rows, ref, "large", "low")) else "medium"
    lo, hi = retention(rows, ref, size, "low"), retention(rows, ref, size, "high")
    detail = f"{ref} {size}-object AP kept: low-pass {_fmt(lo, True)}, high-pass {_fmt(hi, True)}"
    if math.isnan(lo) or math.isnan(hi):
        lines.append(f"crop branch: no evidence ({detail})")
    elif lo - hi >= MARGIN:
        lines.append(f"crop branch: SUPPORTED ({detail}): {size} objects depend on low frequencies")
    else:
        lines.append(f"crop branch: not supported ({detail})")
    # size threshold
    dep = {s: retention(rows, ref, s, "high") - retention(rows, ref, s, "low") for s in ("small", "medium")}
    if dep["small"] > 0 and dep["medium"] > 0:
        lines.append(f"size threshold: freq_small_area={medium_area:g} (medium objects, like small ones, rely more on "
                     "high than on low frequencies)")
    else:
        if math.isnan(dep["small"]):
            why = "no evidence for small objects"
        elif dep["small"] <= 0:
            why = "even small objects keep no more AP under high-pass than under low-pass"
        elif math.isnan(dep["medium"]):
            why = "no evidence for medium objects"
        else:
            why = "medium objects keep more AP under low-pass than under high-pass"
        lines.append(f"size threshold: freq_small_area={small_area:g} ({why})")
    return lines


def table(rows: list[dict]) -> str:
    """The probe's figures as an aligned text table."""
    head = f"{'model':<10} {'filter':<6} {'radius':>6} {'mAP50-95':>9} {'AP_small':>9} {'AP_medium':>9} {'AP_large':>9}"
    out = [head]
    for r in rows:
        radius = "-" if r["radius"] is None else f"{r['radius']:g}"
        out.append(
            f"{r['model']:<10} {r['filter']:<6} {radius:>6} {_fmt(r['map50_95']):>9} {_fmt(r['ap_small']):>9} "
            f"{_fmt(r['ap_medium']):>9} {_fmt(r['ap_large']):>9}"
        )
    return "\n".join(out)


def plot(rows: list[dict], path: Path, filter: str = "ideal") -> Path:
    """``probe.png``: AP against cut-off radius, a low-pass and a high-pass panel, unfiltered AP dotted."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    colors = {"map50_95": "black", "ap_small": "tab:blue", "ap_medium": "tab:orange", "ap_large": "tab:green"}
    labels = {"map50_95": "all (mAP50-95)", "ap_small": "small", "ap_medium": "medium", "ap_large": "large"}
    models = list(dict.fromkeys(r["model"] for r in rows))
    styles = dict(zip(models, [("-", "o"), ("--", "s"), (":", "^")]))
    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, kind in zip(axes, KINDS):
        for m in models:
            pts = sorted((r["radius"], r) for r in rows if r["model"] == m and r["filter"] == kind)
            base = next((r for r in rows if r["model"] == m and r["filter"] == "none"), None)
            ls, marker = styles.get(m, ("-", "o"))
            for key, color in colors.items():
                xs = [x for x, r in pts if not math.isnan(r[key])]
                ys = [r[key] for _, r in pts if not math.isnan(r[key])]
                if xs:
                    ax.plot(xs, ys, ls, marker=marker, color=color, ms=4, label=f"{m}: {labels[key]}")
                if base is not None and not math.isnan(base[key]):
                    ax.axhline(base[key], color=color, ls=ls, lw=0.8, alpha=0.35)
        ax.set_xscale("log", base=2)
        radii = sorted({r["radius"] for r in rows if r["radius"] is not None})
        ax.set_xticks(radii, [f"{x:g}" for x in radii])
        ax.set_title(f"{kind}-pass ({filter}): keeps {'<=' if kind == 'low' else '>'} radius")
        ax.set_xlabel("cut-off radius (cycles per image side)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("AP50-95 (faint lines: unfiltered)")
    axes[0].set_ylim(0, 1)
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    fig.savefig(path)
    return path


# ----------------------------------------------------------------------------------------------------- run
@contextmanager
def _quiet():
    """Silence Ultralytics' per-validation logging and progress bar (they respect LOGGER's level)."""
    from ultralytics.utils import LOGGER

    level = LOGGER.level
    LOGGER.setLevel(logging.WARNING)
    try:
        yield
    finally:
        LOGGER.setLevel(level)


def _radii(value: Any) -> list[float]:
    if isinstance(value, str):
        value = [v for v in value.replace(" ", "").split(",") if v]
    values = [float(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
    if not values or any(v <= 0 for v in values):
        raise ValueError(f"radii must be positive numbers, got {value!r}")
    return sorted(set(values))


def run_probe(
    model: str | Path,
    data: str | Path,
    teacher: str | Path | None = None,
    radii: Any = DEFAULTS["radii"],
    filter: str = "ideal",
    imgsz: int | None = None,
    batch: int = 16,
    device: Any = None,
    project: str | Path | None = None,
    name: str | None = None,
    split: str = "val",
    small_area: float = 0.0025,
    medium_area: float = 0.09,
    max_images: int = 0,
) -> dict[str, Any]:
    """Run the probe (see the module docstring); return ``save_dir``, ``rows`` and ``recommendation`` (lines).

    ``imgsz`` defaults to the training image size stored in ``model`` (else 640) and is used for every model;
    ``max_images`` > 0 probes only the first that many images of the split (sorted by path).
    """
    from ultralytics import YOLO
    from ultralytics.data.utils import check_det_dataset
    from ultralytics.utils import TQDM
    from ultralytics.utils.files import increment_path

    from .sizeval import evaluate

    if filter not in FILTERS:
        raise ValueError(f"filter must be one of {FILTERS}, got {filter!r}")
    if not 0 < small_area <= medium_area:
        raise ValueError(f"need 0 < small_area <= medium_area, got {small_area}, {medium_area}")
    radii = _radii(radii)
    models = {"teacher": teacher, "student": model} if teacher else {"model": model}
    yolos = {k: YOLO(str(v)) for k, v in models.items()}
    imgsz = int(imgsz or yolos[list(models)[-1]].overrides.get("imgsz") or 640)
    data_dict = check_det_dataset(str(data))
    images = split_images(data_dict, split)
    if max_images and max_images > 0:
        images = images[: int(max_images)]
    save_dir = increment_path(Path(project or "runs/probe") / (name or "probe"), mkdir=True)

    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="ikd_probe_") as tmp:
        tmp = Path(tmp)
        yamls, median_area, example = build_filtered_datasets(images, data_dict, radii, filter, tmp / "data")
        area_rng = (small_area * median_area, medium_area * median_area)
        jobs = [(m, key) for m in yolos for key in yamls]
        bar = TQDM(jobs, desc="probe: evaluating")
        for m, key in bar:
            bar.set_description(f"probe: evaluating {m} on {key}")
            with _quiet():
                r = evaluate(yolos[m], yamls[key], imgsz=imgsz, batch=batch, device="" if device is None else device,
                             project=tmp / "val",
                             name=f"{m}_{key}", area_rng=area_rng, exist_ok=True)
            kind, _, rad = key.partition("_r")
            rows.append({"model": m, "weights": str(models[m]), "filter": kind, "radius": float(rad) if rad else None,
                         **r})
    order = {"none": 0, "low": 1, "high": 2}
    rows.sort(key=lambda r: (list(models).index(r["model"]), order[r["filter"]], r["radius"] or 0))

    with open(save_dir / "probe.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows({**r, "radius": "" if r["radius"] is None else r["radius"]} for r in rows)
    plot(rows, save_dir / "probe.png", filter)
    if example is not None:
        from ultralytics.utils.patches import imwrite

        imwrite(str(save_dir / "probe_examples.jpg"), example)
    lines = recommend(rows, small_area, medium_area)
    side = math.sqrt(median_area)
    report = "\n".join(
        [
            f"frequency probe ({filter} filters, radius in cycles per image side) on {len(images)} {split} images, "
            f"imgsz {imgsz}; sizes: small < {area_rng[0]:.0f} px^2, medium < {area_rng[1]:.0f} px^2 "
            f"(median image {side:.0f}x{side:.0f} px)",
            table(rows),
            "",
            "recommendation (rules: python run.py probe --help):",
            *[f"  {x}" for x in lines],
        ]
    )
    (save_dir / "probe.txt").write_text(report + "\n")
    print(report)
    print(f"\nprobe results saved to {save_dir} (probe.csv, probe.png, probe_examples.jpg, probe.txt)")
    return {"save_dir": save_dir, "rows": rows, "recommendation": lines}


def main(argv: list[str] | None = None) -> int:
    """``ikd-yolo probe key=value ...``; returns the exit status."""
    from ultralytics.cfg import parse_key_value_pair

    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a in {"-h", "--help", "help"} for a in argv):
        print(__doc__)
        return 0
    kwargs = {}
    for token in argv:
        if "=" not in token or token.startswith("="):
            print(f"probe: argument '{token}' is not key=value\n\n{USAGE}", file=sys.stderr)
            return 2
        key, value = parse_key_value_pair(token)
        if key not in DEFAULTS:
            print(f"probe: unknown key '{key}' (keys: {', '.join(DEFAULTS)})", file=sys.stderr)
            return 2
        kwargs[key] = value
    missing = [k for k in ("model", "data") if kwargs.get(k) is None]
    if missing:
        print(f"probe: missing {' and '.join(f'{k}=' for k in missing)}\n\n{USAGE}", file=sys.stderr)
        return 2
    try:
        run_probe(**kwargs)
    except (ValueError, FileNotFoundError) as e:
        print(f"probe: {e}", file=sys.stderr)
        return 2
    return 0
