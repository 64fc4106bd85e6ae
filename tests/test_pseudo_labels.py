"""Teacher-refined labels (kd_labels): the refinement rule on fixed detections, the model's use of it, and the
annotation noise of the generated data that the benchmark trains on."""

import numpy as np
import pytest
import torch

from ikd_yolo.pseudo_labels import refine_labels, teacher_detections

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
    refined = make_model(kd_balance=0.0, adv_aug=False, kd_labels=1.0, kd_label_conf=1e-3)
    for model in (plain, refined):
        model.set_iteration(0.0, False)  # KD terms off, as in the close_mosaic epochs
    calls = []
    refined.teacher_model.register_forward_hook(lambda *a: calls.append(1))
    plain_loss, _ = plain(batch)
    loss, items = refined(batch)
    # the untrained teacher's many low-score detections become labels: a different detection loss, no KD term
    assert calls and torch.isfinite(loss).all() and loss[3:].abs().sum() == 0
    assert not torch.allclose(loss[:3], plain_loss[:3])
    loss.sum().backward()
    assert all(p.grad is None for p in refined.teacher_model.parameters())


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
