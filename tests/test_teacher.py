"""A bad teacher is refused with an error that names the problem and the fix, before any training happens; a good
one is folded (BatchNorm into its convolutions) without changing its outputs."""

from pathlib import Path

import pytest
import torch
from ultralytics.nn.tasks import DetectionModel, SegmentationModel

from ikd_yolo.demo.shapes import CLASS_NAMES
from ikd_yolo.teacher import TeacherError

from . import helpers


def save_checkpoint(model: torch.nn.Module, path: Path, names=CLASS_NAMES) -> Path:
    """Write ``model`` the way Ultralytics stores checkpoints (fp16 EMA-less model plus train_args)."""
    model.names = dict(enumerate(names))
    torch.save({"model": model.half(), "train_args": {}, "epoch": -1}, path)
    return path


def make_trainer(data, teacher, project, **kw):
    return helpers.trainer(project, data=data, teacher=teacher, model="yolov8n.yaml", **kw)


def refused(data, teacher, tmp_path, *words, **kw):
    project = tmp_path / "runs"
    with pytest.raises(TeacherError) as e:
        make_trainer(data, teacher, project, **kw)
    for w in words:
        assert w in str(e.value), str(e.value)
    assert not project.exists(), "a refused teacher must not leave a run folder behind"
    return str(e.value)


def test_missing_file(shapes_data, tmp_path):
    refused(shapes_data, tmp_path / "nope.pt", tmp_path, "no such file", "nope.pt")


def test_no_teacher(shapes_data, tmp_path):
    with pytest.raises(TeacherError, match="No teacher given"):
        helpers.trainer(tmp_path, data=shapes_data, model="yolov8n.yaml", teacher=None)


def test_yaml_teacher(shapes_data, tmp_path):
    refused(shapes_data, "yolov8s.yaml", tmp_path, "not trained weights")
    refused(shapes_data, shapes_data, tmp_path, "a yaml file", "not trained weights")  # a data yaml given as teacher


def test_unreadable_file(shapes_data, tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"definitely not a checkpoint")
    refused(shapes_data, bad, tmp_path, "could not be read", "broken.pt")


def test_segmentation_teacher(shapes_data, tmp_path):
    seg = save_checkpoint(SegmentationModel("yolov8n-seg.yaml", nc=4, verbose=False), tmp_path / "seg.pt")
    refused(shapes_data, seg, tmp_path, "'segment' model", "detection teacher")


def test_class_count(shapes_data, tmp_path):
    t = save_checkpoint(DetectionModel("yolov8n.yaml", nc=3, verbose=False), tmp_path / "nc3.pt", CLASS_NAMES[:3])
    refused(shapes_data, t, tmp_path, "3 classes", "data yaml has 4")


def test_class_names(shapes_data, tmp_path):
    names = ("disc", "box", "cross", "triangle")
    t = save_checkpoint(DetectionModel("yolov8n.yaml", nc=4, verbose=False), tmp_path / "names.pt", names)
    refused(shapes_data, t, tmp_path, "class names differ", "'cross'")


def test_input_channels(shapes_data, tmp_path):
    t = save_checkpoint(DetectionModel("yolov8n.yaml", nc=4, ch=1, verbose=False), tmp_path / "gray.pt")
    refused(shapes_data, t, tmp_path, "1-channel", "3 channel")


def test_levels_and_strides(shapes_data, tmp_path):
    """A P2-P5 teacher (4 levels, strides 4..32) cannot teach a P3-P5 student; refused before the first epoch."""
    t = save_checkpoint(DetectionModel("yolov8n-p2.yaml", nc=4, verbose=False), tmp_path / "p2.pt")
    with pytest.raises(TeacherError, match=r"strides \[4, 8, 16, 32\].*strides \[8, 16, 32\]"):
        make_trainer(shapes_data, t, tmp_path / "runs")  # refused by the pre-flight checks: no run folder
    assert not (tmp_path / "runs").exists()


def test_two_different_teachers(shapes_data, teacher_pt, tmp_path):
    refused(shapes_data, teacher_pt, tmp_path, "disagree", distill_model=str(tmp_path / "other.pt"))


def test_autobatch_refused(shapes_data, tmp_path):
    with pytest.raises(ValueError, match="AutoBatch"):
        helpers.trainer(tmp_path, data=shapes_data, model="yolov8n.yaml", batch=-1)


def test_folded_teacher_gives_the_same_outputs_without_batchnorm():
    import copy

    from ultralytics.nn.tasks import DetectionModel

    from ikd_yolo.teacher import fold_batchnorm

    torch.manual_seed(0)
    teacher = DetectionModel("yolov8n.yaml", nc=4, verbose=False)
    for m in teacher.modules():  # non-trivial statistics, so that folding them is tested
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    teacher.eval()
    folded = copy.deepcopy(teacher)
    assert fold_batchnorm(folded) > 50
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        (a, da), (b, db) = teacher(x), folded(x)
    assert torch.allclose(a, b, atol=1e-3, rtol=1e-4)
    assert all(torch.allclose(da[k], db[k], atol=1e-3, rtol=1e-4) for k in ("boxes", "scores"))
