"""Load the teacher checkpoint and check that it can teach this student on this data.

Every check raises :class:`TeacherError` with the problem and the fix, before any epoch starts. A teacher that
passes is a plain Ultralytics detection model; the feature taps are the Detect inputs, as in Ultralytics' own
``DistillationModel``, so teacher and student must agree on the number of levels and their strides.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from ultralytics.nn.distill_model import DistillationModel
from ultralytics.nn.modules.head import Detect
from ultralytics.nn.tasks import DetectionModel, guess_model_task, load_checkpoint
from ultralytics.utils import ONLINE
from ultralytics.utils.downloads import GITHUB_ASSETS_NAMES, attempt_download_asset

from .errors import UserError, reading


class TeacherError(UserError):
    """The teacher cannot be used; the message says why and how to fix it."""


def resolve_teacher_path(teacher: str | Path | None) -> Path:
    """Return the teacher checkpoint path, downloading an official Ultralytics asset only when online."""
    if teacher is None or str(teacher).strip() in {"", "None"}:
        raise TeacherError(
            "No teacher given: pass the trained teacher checkpoint, e.g. teacher=runs/detect/train/weights/best.pt "
            "(or teacher=yolo11x.pt for an official model)."
        )
    path = Path(str(teacher)).expanduser()
    if path.suffix in {".yaml", ".yml"}:
        raise TeacherError(
            f"teacher={teacher} is a yaml file (a model or data definition), not trained weights: a teacher must be a "
            "trained .pt checkpoint (train one with 'yolo train model=... data=...' and pass its weights/best.pt)."
        )
    if path.suffix != ".pt":
        raise TeacherError(f"teacher={teacher} is not a PyTorch checkpoint: pass the teacher's .pt file.")
    if not path.exists() and path.name in GITHUB_ASSETS_NAMES and path.parent == Path(".") and ONLINE:
        try:
            path = Path(attempt_download_asset(str(path)))
        except Exception as e:  # a failed download is reported as a missing file below
            raise TeacherError(f"teacher={teacher} was not found locally and could not be downloaded ({e}).") from e
    if not path.is_file():
        raise TeacherError(
            f"teacher={teacher}: no such file. Pass the path of an existing .pt checkpoint; on an offline machine "
            "download official weights elsewhere and copy them here first."
        )
    return path


def load_teacher(teacher: str | Path | None) -> nn.Module:
    """Load the teacher checkpoint as an eval-mode fp32 Ultralytics model, or raise TeacherError."""
    path = resolve_teacher_path(teacher)
    fix = "it could not be read as an Ultralytics checkpoint: copy it again if damaged, or give one Ultralytics saved"
    model = load_weights(path, f"teacher={teacher}", fix, TeacherError)
    return check_detection_model(model, f"teacher={teacher}", "teacher", "yolo11x.pt").float().eval()


def load_weights(path: str | Path, source: str, fix: str, error: type[UserError] = UserError) -> nn.Module:
    """The model of an Ultralytics checkpoint (of an interrupted distillation run: its student); a file that is not
    one is refused in one line naming ``source`` and ``fix``."""
    with reading(source, fix, error):
        model, _ = load_checkpoint(path)
    return model.student_model if isinstance(model, DistillationModel) else model


def check_detection_model(model, source: str, role: str, example: str):
    """Refuse a model (built, or the dict of a model yaml) that is not a plain detection model: IKD taps the Detect
    head, so a classify, segment, pose or obb model cannot take part (``role``: teacher or student)."""
    task = guess_model_task(getattr(model, "yaml", model))  # from the head in its yaml, not its stored args
    built = isinstance(model, nn.Module)
    head = next((m for m in model.model if isinstance(m, Detect)), None) if built else None
    if task != "detect" or (built and (not isinstance(model, DetectionModel) or type(head) is not Detect)):
        kind = type(model).__name__ if built else "model yaml"
        raise (TeacherError if role == "teacher" else UserError)(
            f"{source} is a '{task}' model ({kind}); IKD needs a detection {role}. Pass a detection model (e.g. "
            f"{example}, not a -seg / -pose / -obb / -cls one)."
        )
    return model


def _detect_head(model: nn.Module) -> Detect:
    return next(m for m in model.model if isinstance(m, Detect))


def check_teacher_data(teacher: nn.Module, data: dict, source: str = "teacher") -> None:
    """Check the teacher's task, classes and input channels against the dataset dict from the data yaml."""
    names = {int(k): str(v) for k, v in dict(getattr(teacher, "names", {})).items()}
    data_names = {int(k): str(v) for k, v in dict(data["names"]).items()}
    if len(names) != int(data["nc"]):
        raise TeacherError(
            f"{source} predicts {len(names)} classes but the data yaml has {data['nc']}: train (or fine-tune) "
            "the teacher on this dataset first, e.g. 'yolo train model=TEACHER.pt data=YOUR.yaml'."
        )
    if names != data_names:
        diff = {i: (names.get(i), data_names.get(i)) for i in data_names if names.get(i) != data_names.get(i)}
        raise TeacherError(
            f"{source} class names differ from the data yaml (index: (teacher, data)): {diff}. Use a teacher "
            "trained on this dataset, or fix the order of 'names' in the data yaml."
        )
    ch_t, ch_d = int(teacher.yaml.get("channels", 3)), int(data.get("channels", 3))
    if ch_t != ch_d:
        raise TeacherError(
            f"{source} takes {ch_t}-channel images but the data has {ch_d} channel(s): train the teacher on "
            f"{ch_d}-channel data (channels: {ch_d} in its data yaml)."
        )


def check_teacher_student(teacher: nn.Module, student: nn.Module) -> None:
    """Check that teacher and student have the same detection levels (count and strides) and input channels."""
    t_levels, s_levels = len(_detect_head(teacher).f), len(_detect_head(student).f)
    t_stride = [int(s) for s in torch.as_tensor(teacher.stride).tolist()]
    s_stride = [int(s) for s in torch.as_tensor(student.stride).tolist()]
    if t_levels != s_levels or t_stride != s_stride:
        raise TeacherError(
            f"teacher detects on {t_levels} levels with strides {t_stride}, the student on {s_levels} with strides "
            f"{s_stride}: features are matched level by level, so pick a teacher and a student of the same family "
            "(e.g. P3-P5 models such as yolo11x.pt with yolo11n.yaml, or both -p2 / -p6 variants)."
        )
    ch_t, ch_s = int(teacher.yaml.get("channels", 3)), int(student.yaml.get("channels", 3))
    if ch_t != ch_s:
        raise TeacherError(f"teacher takes {ch_t} input channels, the student {ch_s}: use the same 'channels'.")


def fold_batchnorm(teacher: nn.Module) -> int:
    """Fold each ``Conv``/``DWConv`` BatchNorm of the frozen, eval-mode teacher into its convolution, as Ultralytics'
    ``fuse()`` does for inference, but leaving the Detect head's branches alone (``fuse()`` would drop an end-to-end
    head's dense branch, which response KD reads). The teacher's outputs are unchanged up to float rounding and its
    forward skips the BatchNorm passes. Returns the number of folded layers."""
    from ultralytics.nn.modules import Conv, DWConv
    from ultralytics.utils.torch_utils import fuse_conv_and_bn

    n = 0
    for m in teacher.modules():
        if type(m) in (Conv, DWConv) and hasattr(m, "bn"):
            m.conv = fuse_conv_and_bn(m.conv, m.bn)
            delattr(m, "bn")
            m.forward = m.forward_fuse
            n += 1
    return n
