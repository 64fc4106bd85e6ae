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
scored on each of them and on the unfiltered images (``filter none``) with :func:`ikd_yolo.tools.sizeval.evaluate`:
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
- *crop branch* (images with a medium or large object get a crop): supported if the large-object AP (medium if
  there are no large objects) of the teacher (or the single model) is retained at least ``MARGIN`` better under
  low-pass than under high-pass -- large objects depend on low frequencies.
- *size threshold* (``freq_small_area``): objects rely on high frequencies in a size bucket when their high-pass
  retention exceeds their low-pass retention. If both small and medium objects do, ``medium_area`` is suggested
  (treat medium objects as small), otherwise ``small_area``.
"""

from __future__ import annotations

import csv
import logging
import math
import re
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ...errors import UserError, reading
from .datasets import build_filtered_datasets, split_images
from .filters import FILTERS, KINDS, filter_image, fourier_filter, frequency_mask
from .report import MARGIN, SIZES, plot, recommend, retention, table

__all__ = [
    "FILTERS",
    "KINDS",
    "MARGIN",
    "SIZES",
    "filter_image",
    "fourier_filter",
    "frequency_mask",
    "recommend",
    "retention",
    "run_probe",
    "main",
]
DEFAULTS = dict(
    model=None,
    teacher=None,
    data=None,
    radii=(8, 16, 32, 64),
    filter="ideal",
    imgsz=None,
    batch=16,
    device=None,
    project=None,
    name=None,
    split="val",
    small_area=0.0025,
    medium_area=0.09,
    max_images=0,
)


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
    problem = UserError(f"probe: radii must be positive numbers, e.g. radii=8,16,32, got {value}")
    if isinstance(value, str):
        value = [v for v in value.replace(" ", "").split(",") if v]
    try:
        values = [float(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
    except (TypeError, ValueError):
        raise problem from None
    if not values or any(v <= 0 for v in values):
        raise problem
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
    from ultralytics.data.utils import check_det_dataset
    from ultralytics.utils.files import increment_path

    from ...preflight import DATA_FIX

    if filter not in FILTERS:
        raise UserError(f"probe: filter={filter} is not one of {', '.join(FILTERS)}")
    if not 0 < small_area <= medium_area:
        raise UserError(f"probe: need 0 < small_area <= medium_area, got {small_area} and {medium_area}")
    radii = _radii(radii)
    models = {"teacher": teacher, "student": model} if teacher else {"model": model}
    yolos = {k: _load_model(k, v) for k, v in models.items()}
    imgsz = int(imgsz or yolos[list(models)[-1]].overrides.get("imgsz") or 640)
    with reading(f"probe: data={data}", DATA_FIX):
        data_dict = check_det_dataset(str(data))
    if not data_dict.get(split):
        have = ", ".join(k for k in ("train", "val", "test") if data_dict.get(k))
        raise UserError(f"probe: split={split}: data={data} has no such split (it has {have}); add it to the yaml")
    images = split_images(data_dict, split)
    if max_images and max_images > 0:
        images = images[: int(max_images)]
    save_dir = increment_path(Path(project or "runs/probe") / (name or "probe"), mkdir=True)

    with tempfile.TemporaryDirectory(prefix="ikd_probe_") as tmp:
        tmp = Path(tmp)
        yamls, median_area, example = build_filtered_datasets(images, data_dict, radii, filter, tmp / "data")
        area_rng = (small_area * median_area, medium_area * median_area)
        rows = _evaluate(yolos, models, yamls, tmp / "val", area_rng, imgsz=imgsz, batch=batch, device=device)
    _save_tables(rows, save_dir, filter, example)
    lines = recommend(rows, small_area, medium_area)
    side = math.sqrt(median_area)
    header = (
        f"frequency probe ({filter} filters, radius in cycles per image side) on {len(images)} {split} images, "
        f"imgsz {imgsz}; sizes: small < {area_rng[0]:.0f} px^2, medium < {area_rng[1]:.0f} px^2 "
        f"(median image {side:.0f}x{side:.0f} px)"
    )
    recommendation = ["recommendation (rules: python run.py probe --help):", *[f"  {x}" for x in lines]]
    report = "\n".join([header, table(rows), "", *recommendation])
    (save_dir / "probe.txt").write_text(report + "\n")
    print(report)
    print(f"\nprobe results saved to {save_dir} (probe.csv, probe.png, probe_examples.jpg, probe.txt)")
    return {"save_dir": save_dir, "rows": rows, "recommendation": lines}


def _evaluate(yolos: dict, models: dict, yamls: dict, val_dir: Path, area_rng, imgsz, batch, device) -> list[dict]:
    """Each model scored on each (filtered or unfiltered) dataset; the rows in the table's order (by model as given,
    then unfiltered, low-pass, high-pass, then radius)."""
    from ultralytics.utils import TQDM

    from ..sizeval import evaluate

    rows: list[dict] = []
    jobs = [(m, key) for m in yolos for key in yamls]
    bar = TQDM(jobs, desc="probe: evaluating")
    for m, key in bar:
        bar.set_description(f"probe: evaluating {m} on {key}")
        with _quiet():
            r = evaluate(
                yolos[m],
                yamls[key],
                imgsz=imgsz,
                batch=batch,
                device="" if device is None else device,
                project=val_dir,
                name=f"{m}_{key}",
                area_rng=area_rng,
                exist_ok=True,
            )
        kind, _, rad = key.partition("_r")
        rows.append({"model": m, "weights": str(models[m]), "filter": kind, "radius": float(rad) if rad else None, **r})
    order = {"none": 0, "low": 1, "high": 2}
    rows.sort(key=lambda r: (list(models).index(r["model"]), order[r["filter"]], r["radius"] or 0))
    return rows


def _save_tables(rows: list[dict], save_dir: Path, filter: str, example) -> None:
    """probe.csv, probe.png and probe_examples.jpg in ``save_dir``."""
    with open(save_dir / "probe.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows({**r, "radius": "" if r["radius"] is None else r["radius"]} for r in rows)
    plot(rows, save_dir / "probe.png", filter)
    if example is not None:
        from ultralytics.utils.patches import imwrite

        imwrite(str(save_dir / "probe_examples.jpg"), example)


def _load_model(key: str, weights) -> Any:
    """``YOLO(weights)``; a file that is missing (Ultralytics would look it up on GitHub, even offline) or not a
    checkpoint is refused in one line."""
    from ultralytics import YOLO
    from ultralytics.utils import ONLINE
    from ultralytics.utils.downloads import GITHUB_ASSETS_NAMES

    path = Path(str(weights))
    if not path.is_file() and not (path.name in GITHUB_ASSETS_NAMES and path.parent == Path(".") and ONLINE):
        raise UserError(f"probe: {key}={weights}: no such file; give a trained .pt checkpoint")
    with reading(f"probe: {key}={weights}", "give a checkpoint saved by Ultralytics"):
        return YOLO(str(weights))


def help_text() -> str:
    """The module docstring as plain text for a terminal (markdown emphasis and code quotes removed)."""
    return re.sub(
        r"\*\*(.+?)\*\*|\*(.+?)\*|``(.+?)``|:func:`(.+?)`", lambda m: next(g for g in m.groups() if g), __doc__
    )


def main(argv: list[str] | None = None) -> int:
    """``ikd-yolo probe key=value ...``: the probe's keys parsed by the CLI's parser; returns the exit status.

    A bad input raises :class:`~ikd_yolo.errors.UserError`, which ``run.py`` prints as one line with exit code 2.
    """
    from ...args import parse_args

    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a in {"-h", "--help", "help"} for a in argv):
        print(help_text())
        return 0
    kwargs = parse_args(argv, known=DEFAULTS, command="probe")
    missing = [k for k in ("model", "data") if kwargs.get(k) is None]
    if missing:
        raise UserError(f"probe: missing {' and '.join(f'{k}=' for k in missing)} (python run.py probe --help)")
    run_probe(**kwargs)
    return 0
