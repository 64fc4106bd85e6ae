"""COCO AP by object size: the bucket logic on hand-made jsons, the ground truth from YOLO labels, and a real model."""

import json
import math

import cv2
import numpy as np
import pytest

from ikd_yolo.tools.sizeval import COCO_AREA_RNG, coco_ground_truth, coco_size_ap, evaluate, image_id

from .helpers import IMGSZ


def _gt(boxes_per_image: dict) -> dict:
    """COCO ground truth from {image_id: [(category, x, y, w, h), ...]} on 640x640 images."""
    images, anns = [], []
    for iid, boxes in boxes_per_image.items():
        images.append({"id": iid, "file_name": f"{iid}.jpg", "width": 640, "height": 640})
        for c, x, y, w, h in boxes:
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": iid,
                    "category_id": c,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    return {"images": images, "annotations": anns, "categories": [{"id": 1}, {"id": 2}]}


def _perfect(gt: dict, keep=lambda a: True) -> list:
    return [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": list(a["bbox"]), "score": 0.9}
        for a in gt["annotations"]
        if keep(a)
    ]


SMALL, MEDIUM, LARGE = (1, 10, 10, 20, 20), (2, 100, 100, 50, 50), (1, 300, 300, 200, 150)  # 400, 2500, 30000 px^2


def test_perfect_predictions_give_one_in_every_bucket():
    gt = _gt({1: [SMALL, MEDIUM], 2: [LARGE, SMALL], "img_b": [MEDIUM]})  # int and str ids together
    r = coco_size_ap(gt, _perfect(gt))
    assert r == pytest.approx(
        {"coco_map50_95": 1.0, "coco_map50": 1.0, "ap_small": 1.0, "ap_medium": 1.0, "ap_large": 1.0}
    )


def test_empty_bucket_is_nan_and_missing_predictions_score_zero():
    gt = _gt({1: [SMALL], 2: [LARGE]})  # no medium box
    r = coco_size_ap(gt, _perfect(gt, keep=lambda a: a["area"] > 96**2))  # only the large box is found
    assert math.isnan(r["ap_medium"])
    assert r["ap_large"] == pytest.approx(1.0) and r["ap_small"] == pytest.approx(0.0)
    assert 0.0 < r["coco_map50_95"] < 1.0
    empty = coco_size_ap(gt, [])  # no detections at all
    assert empty["ap_small"] == 0.0 and empty["ap_large"] == 0.0 and math.isnan(empty["ap_medium"])


def test_area_thresholds_move_boxes_between_buckets(tmp_path):
    gt = _gt({1: [SMALL, MEDIUM]})
    preds = _perfect(gt, keep=lambda a: a["area"] == 400)  # only the 20x20 box is found
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps(preds))
    coco = coco_size_ap(tmp_path / "gt.json", tmp_path / "pred.json")  # jsons on disk work too
    assert coco["ap_small"] == pytest.approx(1.0) and coco["ap_medium"] == pytest.approx(0.0)
    assert math.isnan(coco["ap_large"])
    # thresholds for 128 px images: 20x20 is medium, 50x50 large
    small_img = coco_size_ap(gt, preds, area_rng=(100, 1000))
    assert math.isnan(small_img["ap_small"]) and small_img["ap_medium"] == pytest.approx(1.0)
    assert small_img["ap_large"] == pytest.approx(0.0)
    with pytest.raises(ValueError):
        coco_size_ap(gt, preds, area_rng=(1000, 100))
    with pytest.raises(ValueError, match="missing from the ground truth"):
        coco_size_ap(gt, [{**preds[0], "image_id": 7}])


def test_ground_truth_from_yolo_labels(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "0042.png"), np.zeros((50, 100, 3), np.uint8))  # h 50, w 100
    cv2.imwrite(str(tmp_path / "images" / "cat_a.jpg"), np.zeros((40, 40, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "images" / "0043.png"), np.zeros((50, 100, 3), np.uint8))
    (tmp_path / "labels" / "0042.txt").write_text("1 0.5 0.5 0.2 0.4\n1 0.5 0.5 0.2 0.4\n")
    (tmp_path / "labels" / "0043.txt").write_text("0 0.1 0.2 0.3 0.4 0.3 0.2\n")  # a polygon
    files = sorted((tmp_path / "images").iterdir())  # cat_a.jpg has no label file: a background image
    gt = coco_ground_truth(files)
    sizes = [(im["id"], im["width"], im["height"]) for im in gt["images"]]
    assert sizes == [(42, 100, 50), (43, 100, 50), ("cat_a", 40, 40)]
    assert image_id("a/0042.png") == 42 and image_id("a/x1.png") == "x1"
    anns = gt["annotations"]
    assert len(anns) == 2  # the duplicate row is dropped, the polygon becomes its box
    assert anns[0]["category_id"] == 2 and anns[0]["bbox"] == pytest.approx([40, 15, 20, 20])
    assert anns[0]["area"] == pytest.approx(400)
    assert anns[1]["category_id"] == 1 and anns[1]["bbox"] == pytest.approx([10, 10, 20, 10])
    assert [a["id"] for a in anns] == [1, 2] and [a["image_id"] for a in anns] == [42, 43]
    one = coco_ground_truth(files, [1], single_cls=True)  # a single_cls model: every label is its one class
    assert [a["category_id"] for a in one["annotations"]] == [1, 1] and one["categories"] == [{"id": 1, "name": "1"}]
    with pytest.raises(ValueError, match="share the id"):
        coco_ground_truth([files[0], tmp_path / "other" / "images" / "0042.png"])


@pytest.mark.slow
def test_evaluate_real_model(teacher_pt, shapes_data, tmp_path, monkeypatch):
    from ultralytics import YOLO
    from ultralytics.models.yolo.detect import DetectionValidator

    monkeypatch.chdir(tmp_path)
    r = evaluate(
        teacher_pt,
        shapes_data,
        imgsz=IMGSZ,
        batch=8,
        project=tmp_path / "proj",
        name="sv",
        area_rng=(0.0025 * IMGSZ**2, 0.09 * IMGSZ**2),
    )
    assert set(r) == {"map50_95", "map50", "ap_small", "ap_medium", "ap_large", "coco_map50_95"}
    # pycocotools on the ground truth and predictions written agrees with Ultralytics' own mAP (0.039 and 0.038 as
    # written: wrong boxes or image ids in the ground truth would part them) ...
    assert abs(r["coco_map50_95"] - r["map50_95"]) < 0.25 * r["map50_95"], r
    # ... and the buckets are the right ones: the teacher finds the one 32x32 px object (0.90) far better than the
    # medium ones (0.15) and none of the 25 of 2x2 px (0.0)
    assert r["ap_small"] < r["ap_medium"] < r["ap_large"], r
    assert not (tmp_path / "runs").exists()
    run = tmp_path / "proj" / "sv"
    gt = json.loads((run / "ground_truth.json").read_text())
    assert len(gt["images"]) == 8 and all(isinstance(im["id"], int) for im in gt["images"])
    assert r["map50_95"] > 0  # a trained teacher finds objects, so there are predictions to check
    pred_ids = {p["image_id"] for p in json.loads((run / "predictions.json").read_text())}
    assert pred_ids and pred_ids <= {im["id"] for im in gt["images"]}  # Ultralytics' ids are the ground truth's
    assert json.loads((run / "size_ap.json").read_text())["map50_95"] == pytest.approx(r["map50_95"])
    # single_cls=True (also what a checkpoint trained single_cls validates with): the labels of every class are one
    one = evaluate(
        teacher_pt, shapes_data, imgsz=IMGSZ, batch=8, project=tmp_path / "proj", name="one", single_cls=True
    )
    gt_one = json.loads((tmp_path / "proj" / "one" / "ground_truth.json").read_text())
    assert {a["category_id"] for a in gt_one["annotations"]} == {1} and one["map50_95"] > 0

    # the ground truth matches the boxes Ultralytics' validator itself rescales to the original images
    seen = []

    class Spy(DetectionValidator):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.append(self)

        def eval_json(self, stats):
            return stats

    metrics = YOLO(teacher_pt).val(
        validator=Spy,
        data=str(shapes_data),
        imgsz=IMGSZ,
        batch=8,
        save_json=True,
        plots=False,
        verbose=False,
        project=str(tmp_path / "proj"),
        name="spy",
    )
    v = seen[-1]
    ours = coco_ground_truth(v.dataloader.dataset.im_files, v.class_map)
    theirs = np.array(sorted((a["category_id"], *a["bbox"]) for a in v.gdict["annotations"]))
    mine = np.array(sorted((a["category_id"], *a["bbox"]) for a in ours["annotations"]))
    assert mine.shape == theirs.shape and len(mine) > 0
    np.testing.assert_allclose(mine, theirs, atol=0.05)
    # and evaluate's Ultralytics figures are this validation's
    assert (r["map50_95"], r["map50"]) == pytest.approx((metrics.box.map, metrics.box.map50))


def test_default_thresholds_are_cocos_32_and_96_px_squared():
    """Boxes just under and over 32^2 and 96^2 px fall in COCO's buckets with the default area_rng."""
    below32, above32 = (1, 10, 10, 31, 31), (1, 100, 100, 33, 33)
    below96, above96 = (2, 10, 300, 95, 95), (2, 300, 300, 97, 97)
    gt = _gt({1: [below32, above32, below96, above96]})
    found = {31 * 31, 97 * 97}  # one box per COCO bucket boundary is found: small and large score 1, medium 0
    r = coco_size_ap(gt, _perfect(gt, keep=lambda a: a["area"] in found))
    assert COCO_AREA_RNG == (32**2, 96**2)
    assert r["ap_small"] == pytest.approx(1.0) and r["ap_large"] == pytest.approx(1.0)
    assert r["ap_medium"] == pytest.approx(0.0)
