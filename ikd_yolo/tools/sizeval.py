"""COCO AP by object size (small, medium, large) for any YOLO dataset, on top of Ultralytics' own validation.

    from ikd_yolo.tools.sizeval import evaluate
    r = evaluate("best.pt", "my_data.yaml", imgsz=640)   # {"map50_95", "map50", "ap_small", "ap_medium", ...}

:func:`evaluate` runs ``YOLO(model).val(save_json=True)`` (Ultralytics' validator: its mAP50-95 and mAP50 are
returned unchanged), writes the ground truth of the same images in COCO format next to Ultralytics'
``predictions.json`` and scores the predictions with pycocotools' ``COCOeval``, which splits AP by object area.

Conventions:

- Size buckets are COCO's: *small* below ``32**2`` px, *medium* ``32**2`` to ``96**2``, *large* above, in pixels of
  the **original** image (box width x height; COCOeval treats both bounds as inclusive, as in COCO). Generated or
  low-resolution images are often far smaller than COCO's, so ``area_rng=(small_max, medium_max)`` overrides the two
  thresholds.
- A bucket with no ground-truth box has no AP: COCOeval reports -1 there, which is returned as ``float("nan")``.
- Image ids are the ones Ultralytics writes in ``predictions.json`` for a non-COCO dataset
  (``DetectionValidator.pred_to_json``): the file stem, as an int when it is numeric. Two images with the same stem
  in one split would share an id, so they are refused.
- At most 100 detections per image are scored (COCO's ``maxDets``), after Ultralytics' NMS (``max_det=300``).

:func:`coco_size_ap` is the COCO part alone: ground truth and predictions (dicts, lists or json paths) in, AP out.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

COCO_AREA_RNG = (32**2, 96**2)  # COCO's small/medium and medium/large area thresholds, in px^2
_MAX_AREA = 1e5**2  # COCO's upper bound of the "all" and "large" ranges


def image_id(path: str | Path) -> int | str:
    """The image id Ultralytics gives ``path`` in ``predictions.json`` of a non-COCO dataset: stem, int if numeric."""
    stem = Path(path).stem
    return int(stem) if stem.isnumeric() else stem


def _read_label_file(path: Path) -> np.ndarray:
    """(n, 5) array of ``cls xc yc w h`` (normalised) from a YOLO label file; polygons become their bounding box.

    Mirrors Ultralytics' label check: missing file means no objects, polygon rows are reduced to boxes, exact
    duplicate rows are dropped.
    """
    if not path.is_file():
        return np.zeros((0, 5), np.float64)
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        return np.zeros((0, 5), np.float64)
    if any(len(r) > 6 for r in rows):  # segments: cls x1 y1 x2 y2 ... -> box
        out = []
        for r in rows:
            xy = np.asarray(r[1:], np.float64).reshape(-1, 2)
            (x0, y0), (x1, y1) = xy.min(0), xy.max(0)
            out.append([float(r[0]), (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0])
        labels = np.asarray(out, np.float64)
    else:
        labels = np.asarray([r[:5] for r in rows], np.float64)
    _, keep = np.unique(labels, axis=0, return_index=True)
    return labels[np.sort(keep)]


def coco_ground_truth(im_files: list[str | Path], class_map: list[int] | None = None, single_cls: bool = False) -> dict:
    """COCO-format ground truth for ``im_files`` from their YOLO label files.

    Args:
        im_files: Image paths; labels are found the way Ultralytics finds them (``/images/`` -> ``/labels/``).
        class_map: Category id of each YOLO class index (Ultralytics' ``validator.class_map``); default ``cls + 1``.
        single_cls: Every label is class 0 (as Ultralytics validates a ``single_cls=True`` model).

    Returns:
        A COCO dict: ``images`` (id, file_name, width, height read from the image), ``annotations`` (bbox
        ``[x, y, w, h]`` and ``area = w * h`` in original pixels, ``iscrowd`` 0, ids from 1) and ``categories``.
    """
    from PIL import Image
    from ultralytics.data.utils import exif_size, img2label_paths

    images, annotations, seen, max_cls = [], [], {}, -1
    for im_file, label_file in zip(im_files, img2label_paths([str(f) for f in im_files]), strict=True):
        iid = image_id(im_file)
        if iid in seen:
            raise ValueError(
                f"images {seen[iid]} and {im_file} share the id {iid!r} (Ultralytics' predictions.json keys images by "
                "file stem): rename one of them"
            )
        seen[iid] = im_file
        with Image.open(im_file) as im:
            width, height = exif_size(im)
        images.append({"id": iid, "file_name": Path(im_file).name, "width": width, "height": height})
        for c, xc, yc, w, h in _read_label_file(Path(label_file)):
            bw, bh = w * width, h * height
            cls = 0 if single_cls else int(c)
            max_cls = max(max_cls, cls)
            annotations.append(
                {
                    "id": len(annotations) + 1,  # COCOeval uses id 0 for "unmatched": ids start at 1
                    "image_id": iid,
                    "category_id": class_map[cls] if class_map is not None else cls + 1,
                    "bbox": [(xc - w / 2) * width, (yc - h / 2) * height, bw, bh],
                    "area": bw * bh,
                    "iscrowd": 0,
                }
            )
    cat_ids = list(class_map) if class_map is not None else list(range(1, max_cls + 2))
    return {"images": images, "annotations": annotations, "categories": [{"id": i, "name": str(i)} for i in cat_ids]}


def _load(obj: Any) -> Any:
    if isinstance(obj, (str, Path)):
        return json.loads(Path(obj).read_text())
    return copy.deepcopy(obj)


def _nan_if_missing(x: float) -> float:
    return float("nan") if x < 0 else float(x)


def _renumber_images(gt: dict, predictions: list) -> None:
    """Give the images of ``gt`` and ``predictions`` (copies, changed in place) sequential int ids, and the ground
    truth the fields pycocotools needs: it sorts image ids, which fails for a mix of int and str stems."""
    ids = {img["id"]: k + 1 for k, img in enumerate(gt["images"])}
    for img in gt["images"]:
        img["id"] = ids[img["id"]]
    for ann in gt["annotations"]:
        ann["image_id"] = ids[ann["image_id"]]
        ann.setdefault("iscrowd", 0)
        ann.setdefault("area", ann["bbox"][2] * ann["bbox"][3])
    gt.setdefault("categories", [{"id": c} for c in sorted({a["category_id"] for a in gt["annotations"]})])
    unknown = {p["image_id"] for p in predictions} - ids.keys()
    if unknown:
        raise ValueError(f"predictions for images missing from the ground truth: {sorted(map(str, unknown))[:5]}")
    for p in predictions:
        p["image_id"] = ids[p["image_id"]]


def coco_size_ap(
    gt: dict | str | Path, predictions: list | str | Path, area_rng: tuple[float, float] = COCO_AREA_RNG
) -> dict[str, float]:
    """Score COCO-format predictions against COCO-format ground truth with pycocotools, AP split by object area.

    Args:
        gt: Ground truth (a COCO dict or the path of its json), e.g. from :func:`coco_ground_truth`.
        predictions: Detections (a list or a json path): ``image_id``, ``category_id``, ``bbox`` (x, y, w, h) and
            ``score``, as in Ultralytics' ``predictions.json``. An empty list scores 0 in every non-empty bucket.
        area_rng: ``(small_max, medium_max)`` in px^2 of the original image: small is ``[0, small_max]``, medium
            ``[small_max, medium_max]``, large ``[medium_max, 1e10]`` (COCO's inclusive bounds).

    Returns:
        ``coco_map50_95``, ``coco_map50`` (all sizes), ``ap_small``, ``ap_medium``, ``ap_large`` (AP50-95 per bucket)
        as floats; ``nan`` for a bucket without ground-truth boxes.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    small_max, medium_max = (float(a) for a in area_rng)
    if not 0 < small_max <= medium_max:
        raise ValueError(f"area_rng must be (small_max, medium_max) with 0 < small_max <= medium_max, got {area_rng}")
    gt, predictions = _load(gt), _load(predictions)
    _renumber_images(gt, predictions)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints every step
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        if predictions:
            coco_dt = coco_gt.loadRes(predictions)
        else:  # loadRes cannot take an empty list; an empty result set scores 0 AP
            coco_dt = COCO()
            coco_dt.dataset = {"images": gt["images"], "categories": gt["categories"], "annotations": []}
            coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        ev.params.areaRng = [[0.0, _MAX_AREA], [0.0, small_max], [small_max, medium_max], [medium_max, _MAX_AREA]]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    s = ev.stats  # AP: all, @.5, @.75, small, medium, large; then AR
    return {
        "coco_map50_95": _nan_if_missing(s[0]),
        "coco_map50": _nan_if_missing(s[1]),
        "ap_small": _nan_if_missing(s[3]),
        "ap_medium": _nan_if_missing(s[4]),
        "ap_large": _nan_if_missing(s[5]),
    }


def evaluate(
    model: Any,
    data: str | Path,
    imgsz: int = 640,
    batch: int = 16,
    device: str | int = "cpu",
    split: str = "val",
    project: str | Path | None = None,
    name: str | None = None,
    area_rng: tuple[float, float] = COCO_AREA_RNG,
    **val_kwargs: Any,
) -> dict[str, float]:
    """Validate ``model`` on ``split`` of ``data`` with Ultralytics and add COCO AP per object size.

    Args:
        model: A detection checkpoint path or an ``ultralytics.YOLO`` object.
        data: The dataset yaml.
        imgsz, batch, device, split, project, name: As for ``yolo val``; with ``project`` given, everything is
            written under ``project/name`` (no ``runs/`` in the working directory).
        area_rng: ``(small_max, medium_max)`` in px^2 of the original images (default COCO's ``(32**2, 96**2)``).
        **val_kwargs: Any other Ultralytics val argument (``conf``, ``iou``, ``half``, ``exist_ok``, ...).

    Returns:
        ``map50_95`` and ``map50`` (Ultralytics' ``metrics.box``), ``ap_small``, ``ap_medium``, ``ap_large`` and
        ``coco_map50_95`` (pycocotools, all sizes) as floats; ``nan`` for a size bucket with no ground-truth box.
        The run folder holds Ultralytics' ``predictions.json`` and the matching ``ground_truth.json``.
    """
    from ultralytics import YOLO
    from ultralytics.models.yolo.detect import DetectionValidator

    yolo = model if isinstance(model, YOLO) else YOLO(str(model))
    if yolo.task != "detect":
        raise ValueError(f"sizeval needs a detection model, got task '{yolo.task}'")
    made: list[DetectionValidator] = []

    class _SizeValidator(DetectionValidator):
        """Ultralytics' DetectionValidator, remembered, without its own faster-coco-eval pass on custom json."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

        def eval_json(self, stats: dict) -> dict:  # scored below with pycocotools; avoids a faster-coco-eval install
            return stats

    args = dict(val_kwargs)
    args.update(data=str(data), imgsz=imgsz, batch=batch, device=device, split=split, save_json=True)
    args.setdefault("plots", False)
    args.setdefault("verbose", False)
    if project is not None:
        args["project"] = str(project)
    if name is not None:
        args["name"] = name
    metrics = yolo.val(validator=_SizeValidator, **args)
    return _score_by_size(made[-1], metrics, area_rng)


def _score_by_size(validator: Any, metrics: Any, area_rng: tuple[float, float]) -> dict[str, float]:
    """:func:`evaluate`'s result from its finished validator and metrics: Ultralytics' mAP and the predictions scored
    by object size (:func:`coco_size_ap`); ``ground_truth.json`` and ``size_ap.json`` are written in its run folder."""
    save_dir = Path(validator.save_dir)
    gt = coco_ground_truth(validator.dataloader.dataset.im_files, validator.class_map, bool(validator.args.single_cls))
    (save_dir / "ground_truth.json").write_text(json.dumps(gt))
    pred_file = save_dir / "predictions.json"
    predictions = json.loads(pred_file.read_text()) if validator.jdict and pred_file.is_file() else []
    coco = coco_size_ap(gt, predictions, area_rng)
    result = {
        "map50_95": float(metrics.box.map),
        "map50": float(metrics.box.map50),
        "ap_small": coco["ap_small"],
        "ap_medium": coco["ap_medium"],
        "ap_large": coco["ap_large"],
        "coco_map50_95": coco["coco_map50_95"],
    }
    (save_dir / "size_ap.json").write_text(json.dumps({k: None if math.isnan(v) else v for k, v in result.items()}))
    return result
