"""Teacher-refined labels (kd_labels): the refinement rule on fixed detections, the model's use of it, and the
annotation noise of the generated data that the benchmark trains on."""

import numpy as np
import pytest
import torch

from ikd_yolo.pseudo_labels import refine_dataset, refine_labels, teacher_detections

from .helpers import IMGSZ, det_batch, make_model

S = IMGSZ  # the batch's images are S x S; detections are in pixels


def px(*xyxy_norm):
    return [v * S for v in xyxy_norm]


def test_refine_moves_matched_labels_adds_unseen_objects_and_keeps_the_rest():
    batch = det_batch(2, ((0, 0.3, 0.3, 0.2, 0.2), (1, 0.6, 0.6, 0.5, 0.4)))  # image 0 and 1: the same two labels
    detections = [
        torch.tensor(
            [
                [*px(0.22, 0.22, 0.42, 0.42), 0.9, 0.0],  # class 0, overlaps label 0: refines it
                [*px(0.80, 0.05, 0.95, 0.20), 0.8, 3.0],  # overlaps nothing: a missed object, added
                [*px(0.36, 0.41, 0.84, 0.79), 0.7, 2.0],  # overlaps label 1 but another class: neither
            ]
        ),
        torch.zeros(0, 6),  # image 1: the teacher sees nothing, its labels stay
    ]
    for mix, centre in ((1.0, 0.32), (0.5, 0.31)):
        out = refine_labels(batch, detections, mix)
        assert out["batch_idx"].tolist() == [0, 0, 0, 1, 1]
        assert out["cls"].view(-1).tolist() == [0, 1, 3, 0, 1]
        b = out["bboxes"]
        assert b[0].tolist() == pytest.approx([centre, centre, 0.2, 0.2], abs=1e-5)
        assert b[1].tolist() == pytest.approx([0.6, 0.6, 0.5, 0.4], abs=1e-5)  # other class: untouched
        assert b[2].tolist() == pytest.approx([0.875, 0.125, 0.15, 0.15], abs=1e-5)
        assert torch.equal(b[3:], batch["bboxes"][2:])
        assert out["img"] is batch["img"] and batch["cls"].shape == (4, 1)  # the batch itself is not modified


def test_teacher_detections_thresholds_the_score():
    decoded = torch.zeros(1, 4 + 2, 3)
    decoded[0, :4] = torch.tensor([[10.0, 30.0, 50.0], [10.0, 30.0, 50.0], [8.0, 8.0, 8.0], [8.0, 8.0, 8.0]])
    decoded[0, 4:] = torch.tensor([[0.9, 0.2, 0.0], [0.0, 0.0, 0.6]])
    (det,) = teacher_detections(decoded, conf=0.5)
    assert sorted(det[:, 4].tolist()) == pytest.approx([0.6, 0.9]) and sorted(det[:, 5].tolist()) == [0.0, 1.0]


def test_model_trains_on_refined_labels_and_runs_the_teacher_when_the_kd_terms_are_off():
    batch = det_batch(2)
    plain = make_model(kd_balance=0.0, adv_aug=False, kd_labels=0.0)
    refined = make_model(kd_balance=0.0, adv_aug=False, kd_labels=1.0, kd_label_conf=1e-3, kd_labels_mode="batch")
    once = make_model(kd_balance=0.0, adv_aug=False, kd_labels=1.0, kd_labels_mode="dataset")
    for model in (plain, refined):
        model.set_iteration(0.0, False)  # KD terms off, as in the close_mosaic epochs
    calls = []
    refined.teacher_model.register_forward_hook(lambda *a: calls.append(1))
    plain_loss, _ = plain(batch)
    once.set_iteration(0.0, False)
    once.teacher_model.register_forward_hook(lambda *a: calls.append(0))
    assert torch.equal(once(batch)[0][:3], plain_loss[:3]) and not calls  # dataset mode: nothing per batch
    loss, items = refined(batch)
    # the untrained teacher's many low-score detections become labels: a different detection loss, no KD term
    assert calls and torch.isfinite(loss).all() and loss[3:].abs().sum() == 0
    assert not torch.allclose(loss[:3], plain_loss[:3])
    loss.sum().backward()
    assert all(p.grad is None for p in refined.teacher_model.parameters())


@pytest.mark.parametrize("adv_bn", ["split", "batch"])
def test_the_attack_reads_the_labels_refined_per_batch(adv_bn):
    """kd_labels_mode=batch with the adversarial term: the attack ascends the teacher's loss on the batch's refined
    labels, the ones the student's detection loss uses, not on the labels as loaded (one forward or its own)."""
    from ikd_yolo.adversarial import TeacherClsLoss
    from ikd_yolo.model import sub_batch

    batch = det_batch(4)
    model = make_model(kd_balance=0.0, kd_labels=1.0, kd_label_conf=1e-3, kd_labels_mode="batch", adv_bn=adv_bn)
    with torch.no_grad():
        out = model.teacher_model(batch["img"])
    model._teacher_feats.clear()
    decoded = out[0] if isinstance(out, (tuple, list)) else out
    refined = sub_batch(refine_labels(batch, teacher_detections(decoded, 1e-3), 1.0), 2)  # adv_batch_frac 0.5
    objective, seen = TeacherClsLoss(model.teacher_model), []

    def recording(x, part, scale):
        seen.append(part)
        return objective(x, part, scale)

    model._teacher_loss = recording
    loss, items = model(batch)
    assert torch.isfinite(loss).all() and items["adv_loss"].item() > 0 and seen
    assert len(refined["cls"]) > len(sub_batch(batch, 2)["cls"])  # the untrained teacher's detections were added
    for part in seen:
        for key in ("batch_idx", "cls", "bboxes"):
            assert torch.equal(part[key], refined[key]), key


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
