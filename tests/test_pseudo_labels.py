"""Teacher-refined labels (kd_labels): the refinement rule on fixed detections, the model's use of it, and the
annotation noise of the generated data that the benchmark trains on."""

import numpy as np
import pytest
import torch

from ikd_yolo.pseudo_labels import refine_dataset, refine_targets, teacher_detections

from .helpers import IMGSZ, det_batch, make_model


def test_refine_moves_matched_labels_adds_unseen_objects_and_keeps_the_rest():
    cls, boxes = torch.tensor([0.0, 1.0]), torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.6, 0.5, 0.4]])
    det = torch.tensor(
        [
            [0.22, 0.22, 0.42, 0.42, 0.9, 0.0],  # class 0, overlaps label 0: refines it
            [0.80, 0.05, 0.95, 0.20, 0.8, 3.0],  # overlaps nothing: a missed object, added
            [0.36, 0.41, 0.84, 0.79, 0.7, 2.0],  # overlaps label 1 but another class: neither
        ]
    )
    for mix, centre in ((1.0, 0.32), (0.5, 0.31)):
        out_cls, out = refine_targets(cls, boxes, det, mix)
        assert out_cls.tolist() == [0, 1, 3]
        assert out[0].tolist() == pytest.approx([centre, centre, 0.2, 0.2], abs=1e-5)
        assert torch.equal(out[1], boxes[1])  # other class: untouched, bit for bit
        assert out[2].tolist() == pytest.approx([0.875, 0.125, 0.15, 0.15], abs=1e-5)
    out_cls, out = refine_targets(cls, boxes, det, 1.0, match_iou=0.7, new_iou=0.0)  # IoU 0.68: no match, none added
    assert out_cls.tolist() == [0, 1] and torch.equal(out, boxes)
    out_cls, out = refine_targets(cls, boxes, torch.zeros(0, 6), 1.0)  # the teacher sees nothing: the labels stay
    assert torch.equal(out_cls, cls) and torch.equal(out, boxes)


def test_teacher_detections_thresholds_the_score():
    decoded = torch.zeros(1, 4 + 2, 3)
    decoded[0, :4] = torch.tensor([[10.0, 30.0, 50.0], [10.0, 30.0, 50.0], [8.0, 8.0, 8.0], [8.0, 8.0, 8.0]])
    decoded[0, 4:] = torch.tensor([[0.9, 0.2, 0.0], [0.0, 0.0, 0.6]])
    (det,) = teacher_detections(decoded, conf=0.5)
    assert sorted(det[:, 4].tolist()) == pytest.approx([0.6, 0.9]) and sorted(det[:, 5].tolist()) == [0.0, 1.0]


def test_the_loss_runs_no_teacher_for_the_labels_refined_before_training():
    """kd_labels refines the dataset once, before the first epoch: with the KD terms off (the close_mosaic epochs),
    a batch costs the student's detection loss alone, the same as without kd_labels."""
    batch = det_batch(2)
    plain = make_model(kd_balance=0.0, adv_aug=False, kd_labels=0.0)
    once = make_model(kd_balance=0.0, adv_aug=False, kd_labels=1.0)
    calls = []
    for model in (plain, once):
        model.set_iteration(0.0, False)
        model.teacher_model.register_forward_hook(lambda *a: calls.append(1))
    assert torch.equal(once(batch)[0], plain(batch)[0]) and not calls


def test_generated_label_noise_changes_the_train_labels_only(tmp_path):
    from ikd_yolo.demo.shapes import make_shapes_dataset

    exact = make_shapes_dataset(tmp_path / "exact", n_train=40, n_val=8, imgsz=64, seed=3).parent
    noisy = make_shapes_dataset(tmp_path / "noisy", n_train=40, n_val=8, imgsz=64, seed=3, box_noise=0.1, miss_rate=0.3)
    noisy = noisy.parent

    def labels(root, split):
        files = sorted((root / "labels" / split).glob("*.txt"))
        return [np.array([r.split() for r in f.read_text().splitlines()], float).reshape(-1, 5) for f in files]

    for a, b in zip(sorted((exact / "images").rglob("*.png")), sorted((noisy / "images").rglob("*.png")), strict=True):
        assert a.read_bytes() == b.read_bytes()  # the same images
    assert all(np.array_equal(a, b) for a, b in zip(labels(exact, "val"), labels(noisy, "val"), strict=True))
    n_exact = sum(len(a) for a in labels(exact, "train"))
    n_noisy = sum(len(a) for a in labels(noisy, "train"))
    assert 0.5 * n_exact < n_noisy < 0.9 * n_exact  # about 30 % missed
    boxes = np.concatenate([a for a in labels(noisy, "train") if len(a)])
    assert (boxes[:, 1:] >= 0).all() and (boxes[:, 1:] <= 1).all()


def test_dataset_refinement_brings_annotator_labels_closer_to_the_truth(tmp_path, teacher_pt):
    """The shipped demo teacher, once over a training split labelled with box noise and missed objects: more of the
    true objects get a label, the labels fit them better, and no label file changes."""
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset
    from ultralytics.utils.metrics import box_iou
    from ultralytics.utils.ops import xywh2xyxy

    from ikd_yolo.demo.shapes import make_shapes_dataset
    from ikd_yolo.teacher import load_teacher

    kw = dict(n_train=48, n_val=4, imgsz=128, seed=0, small_objects=False)
    exact = make_shapes_dataset(tmp_path / "exact", **kw)
    noisy = make_shapes_dataset(tmp_path / "noisy", **kw, box_noise=0.1, miss_rate=0.3)
    files = sorted((noisy.parent / "labels" / "train").glob("*.txt"))
    before = [f.read_bytes() for f in files]

    def dataset(yaml):
        data = check_det_dataset(str(yaml))
        return build_yolo_dataset(get_cfg(overrides={"imgsz": 128}), data["train"], 8, data, mode="train")

    truth, ds = dataset(exact), dataset(noisy)
    labels = [dict(lb) for lb in ds.labels]
    stats = refine_dataset(ds, load_teacher(teacher_pt), conf=0.5, mix=1.0, batch=16)
    assert stats["images"] == 48 and stats["refined"] > 0 and stats["added"] > 0

    def fit(labelled):  # per true object: the best IoU of a label of its class (0 when unlabelled)
        out = []
        for t, lb in zip(truth.labels, labelled, strict=True):
            iou = box_iou(xywh2xyxy(torch.tensor(t["bboxes"])), xywh2xyxy(torch.tensor(lb["bboxes"])))
            iou = iou * (torch.tensor(t["cls"]).view(-1, 1) == torch.tensor(lb["cls"]).view(1, -1))
            out += iou.max(1).values.tolist() if iou.numel() else [0.0] * len(t["bboxes"])
        return np.array(out)

    old, new = fit(labels), fit(ds.labels)
    assert (new >= 0.5).mean() > (old >= 0.5).mean() + 0.1  # missed objects found
    assert np.median(new[old >= 0.5]) > np.median(old[old >= 0.5])  # labelled objects fit better
    assert [f.read_bytes() for f in files] == before


def test_refinement_keeps_to_the_classes_the_training_keeps(shapes_data, tmp_path):
    """classes=[0]: Ultralytics drops the labels of the other classes, and the teacher's detections of those
    classes do not bring them back (dataset mode), nor in batch mode, where the wrapper reads the same argument."""
    from . import helpers
    from .helpers import Interrupt

    trainer = helpers.trainer(tmp_path, data=shapes_data, classes=[0], kd_label_conf=0.25)
    seen = {}

    def stop(tr):
        seen["cls"] = np.concatenate([lb["cls"].reshape(-1) for lb in tr.train_loader.dataset.labels])
        seen["model"] = tr.model.args.classes
        raise Interrupt

    trainer.add_callback("on_train_start", stop)
    with pytest.raises(Interrupt):
        trainer.train()
    assert len(seen["cls"]) and set(seen["cls"].tolist()) == {0.0} and seen["model"] == [0]
    decoded = torch.zeros(1, 4 + 2, 2)
    decoded[0, :4] = torch.tensor([[10.0, 40.0], [10.0, 40.0], [8.0, 8.0], [8.0, 8.0]])
    decoded[0, 4:] = torch.tensor([[0.9, 0.0], [0.0, 0.8]])
    (det,) = teacher_detections(decoded, conf=0.5, classes=[1])
    assert det[:, 5].tolist() == [1.0]


def test_the_match_rule_keys_reach_the_refinement(shapes_data, tmp_path):
    """At the defaults the teacher changes the training labels; with kd_label_iou=1 (no detection matches a label
    that closely) and kd_label_new_iou=0 (no detection is added) it leaves every label as loaded."""
    from . import helpers
    from .helpers import Interrupt

    def labels(tr):
        return [np.concatenate([lb["cls"].reshape(-1, 1), lb["bboxes"]], 1) for lb in tr.train_loader.dataset.labels]

    changed = {}
    for name, keys in (("defaults", {}), ("keys", dict(kd_label_iou=1.0, kd_label_new_iou=0.0))):
        trainer = helpers.trainer(tmp_path, data=shapes_data, kd_label_conf=0.25, name=name, **keys)
        seen = {}
        trainer.add_callback("on_pretrain_routine_end", lambda tr, seen=seen: seen.update(before=labels(tr)))

        def stop(tr, seen=seen):
            seen["after"] = labels(tr)
            raise Interrupt

        trainer.add_callback("on_train_start", stop)
        with pytest.raises(Interrupt):
            trainer.train()
        pairs = zip(seen["before"], seen["after"], strict=True)
        changed[name] = sum(a.shape != b.shape or not np.array_equal(a, b) for a, b in pairs)
    assert changed["defaults"] > 0 and changed["keys"] == 0


def test_labels_jpg_shows_the_labels_the_student_trains_on(shapes_data, tmp_path, monkeypatch):
    """labels.jpg (Ultralytics' plot of the training labels) is drawn after the teacher has refined them, once; it
    was drawn from the labels as annotated."""
    import ultralytics.models.yolo.detect.train as detect_train
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset

    from . import helpers
    from .helpers import Interrupt

    drawn = []
    monkeypatch.setattr(detect_train, "plot_labels", lambda boxes, cls, **kw: drawn.append(boxes.copy()))
    trainer = helpers.trainer(tmp_path, data=shapes_data, plots=True)
    trained = []

    def stop(tr):
        trained.append(np.concatenate([lb["bboxes"] for lb in tr.train_loader.dataset.labels]))
        raise Interrupt

    trainer.add_callback("on_train_start", stop)
    with pytest.raises(Interrupt):
        trainer.train()
    data = check_det_dataset(str(shapes_data))
    annotated = build_yolo_dataset(get_cfg(overrides={"imgsz": IMGSZ}), data["train"], 8, data, mode="train").labels
    annotated = np.concatenate([lb["bboxes"] for lb in annotated])
    assert len(drawn) == 1 and np.array_equal(drawn[0], trained[0])
    assert drawn[0].shape != annotated.shape or not np.allclose(drawn[0], annotated)  # the teacher changed them
