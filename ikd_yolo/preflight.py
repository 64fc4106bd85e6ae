"""Every check that can refuse a run before Ultralytics creates its folder or spends any training time.

:func:`preflight` takes the user's overrides and returns what it loaded and checked (:class:`Checked`: the IKD
settings, the teacher, the data and the student it checked the teacher against), which the trainer uses instead of
doing it again; a resumed run's is empty (its settings and teacher path are read from its checkpoint later). Each
refusal is a :class:`~ikd_yolo.errors.UserError` (or one of its subclasses) whose one-line message names the input
and the fix.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from copy import copy
from dataclasses import dataclass
from pathlib import Path

from torch import nn
from ultralytics.cfg import get_cfg, get_save_dir
from ultralytics.data.utils import check_det_dataset
from ultralytics.nn.tasks import DetectionModel, yaml_model_load
from ultralytics.utils import DEFAULT_CFG_DICT, LOGGER, ONLINE
from ultralytics.utils.checks import check_imgsz
from ultralytics.utils.downloads import GITHUB_ASSETS_NAMES

from .config import ALIASES, KEYS, IKDConfig, default_settings, resolve_aliases
from .errors import UserError, problem, reading
from .teacher import (
    TeacherError,
    check_detection_model,
    check_teacher_data,
    check_teacher_student,
    load_teacher,
    load_weights,
)

DATA_FIX = "fix the data yaml (it needs train:, val: and names:; https://docs.ultralytics.com/datasets/detect/)"
DATA_MISSING = "check the path given in data= and the paths in the data yaml ('path', 'train', 'val')"


def normalize_overrides(overrides: dict | None) -> dict:
    """Map the ``teacher=`` alias onto Ultralytics' ``distill_model`` key (refusing two different teachers)."""
    overrides = resolve_aliases(overrides or {})
    teacher = overrides.pop("teacher", None)
    if teacher is not None:
        other = overrides.get("distill_model")
        if other is not None and str(other) != str(teacher):
            raise TeacherError(f"teacher={teacher} and distill_model={other} disagree: pass only one of them.")
        overrides["distill_model"] = str(teacher)
    return overrides


def check_amp(amp, device) -> None:
    """amp=bf16 needs a CUDA GPU with native bfloat16; Ultralytics finds out only when the first batch runs."""
    if amp != "bf16":  # Ultralytics' own test
        return
    import torch

    if not torch.cuda.is_available():
        where = "a machine without a CUDA GPU"
    elif str(device).lower() in {"cpu", "mps"}:
        where = f"device={device}"
    elif not torch.cuda.is_bf16_supported(including_emulation=False):
        where = f"this GPU ({torch.cuda.get_device_name(0)})"
    else:
        return
    raise UserError(
        f"amp=bf16 needs a CUDA GPU with native bfloat16 (Ampere or newer), not {where}: use amp=True (fp16 on a "
        "GPU) or amp=False"
    )


# The optimizers BaseTrainer.build_optimizer accepts (any case); it refuses another name with a traceback, and only once
# the run folder exists and the data are set up. A test checks this list against Ultralytics'.
OPTIMIZERS = ("auto", "SGD", "MuSGD", "Adam", "AdamW", "Adamax", "NAdam", "RAdam", "RMSprop")


def check_optimizer(name) -> None:
    if str(name).lower() not in {o.lower() for o in OPTIMIZERS}:
        raise UserError(f"optimizer={name} is not an Ultralytics optimizer: use one of {', '.join(OPTIMIZERS)}")


def check_batch(batch) -> None:
    if isinstance(batch, (int, float)) and not isinstance(batch, bool) and batch < 1:
        raise UserError(
            f"batch={batch} (AutoBatch) measures the student alone and would overflow memory with the teacher "
            "and the attack: give a fixed batch size, e.g. batch=16."
        )


def load_student(model, nc: int | None) -> nn.Module | None:
    """Build the student from ``model=`` (a yaml or a .pt) and check it as the teacher is checked: it loads and is a
    detection model (its strides are checked against the teacher's by the caller); None for an official checkpoint
    that Ultralytics will download."""
    if model is None or isinstance(model, nn.Module):
        return model
    path, source = Path(str(model)), f"model={model}"
    if path.suffix in {".yaml", ".yml"}:
        try:
            cfg = yaml_model_load(str(model))  # resolves yolov8n.yaml to yolov8.yaml at scale n, as Ultralytics does
        except FileNotFoundError:
            raise UserError(
                f"{source}: no such model yaml. Give a file or an Ultralytics model name such as "
                "model=yolo11n.yaml or model=yolov8n.yaml"
            ) from None
        check_detection_model(cfg, source, "student", "model=yolo11n.yaml")
        with reading(source, "fix the model yaml, or start from an Ultralytics one such as model=yolo11n.yaml"):
            return DetectionModel({**cfg, "nc": nc or cfg.get("nc", 80)}, verbose=False)
    if path.suffix == ".pt":
        if not path.is_file():
            if path.name in GITHUB_ASSETS_NAMES and path.parent == Path(".") and ONLINE:
                return None  # an official checkpoint Ultralytics will download
            raise UserError(
                f"{source}: no such file. Give trained student weights (.pt) that exist, or a model yaml "
                "(model=yolo11n.yaml) to start from scratch"
            )
        fix = "give the student's trained .pt (copy it again if damaged), or a model yaml such as model=yolo11n.yaml"
        return check_detection_model(load_weights(path, source, fix), source, "student", "model=yolo11n.yaml")
    raise UserError(f"{source} is neither a model yaml nor a .pt checkpoint: e.g. model=yolo11n.yaml")


def check_args(overrides: dict):
    """Ultralytics' own checks of the argument values (types and ranges, e.g. epochs=0 or lr0=abc, imgsz, optimizer),
    which it would make after the run folder exists or only when the model is set up; returns the train arguments."""
    try:
        args = get_cfg({**DEFAULT_CFG_DICT, **default_settings()}, overrides)
        disabled, LOGGER.disabled = LOGGER.disabled, True  # its notes on rounding come again when training starts
        try:
            args.imgsz = check_imgsz(args.imgsz, stride=32, floor=32, max_dim=1)
        finally:
            LOGGER.disabled = disabled
    except (ValueError, TypeError) as e:
        raise UserError(f"{problem(e)}: give a valid value (python run.py --help)") from e
    check_optimizer(args.optimizer)
    return args


def load_data(source, single_cls) -> dict:
    """The dataset dict of the data yaml, as the trainer will see it; a yaml Ultralytics refuses gets one line."""
    with reading(f"data={source}", DATA_FIX, missing=DATA_MISSING):
        data = check_det_dataset(source)
    return single_class(data) if single_cls else data


def check_images(args, data: dict, source) -> None:
    """Build the train and val datasets' labels as the trainer will (Ultralytics verifies each image and label and
    caches the result next to the labels, so the trainer then reads the cache): a split without one usable image is
    refused before the run folder exists."""
    from ultralytics.data.build import build_yolo_dataset

    check_train_images(data, source)
    args = copy(args)
    args.cache = False  # no image is loaded into memory or written to disk here
    for split in ("train", "val"):
        fix = f"check the {split} images and labels that 'path' and '{split}' in the data yaml point to"
        with reading(f"data={source}", fix):
            build_yolo_dataset(args, data[split], args.batch, data, mode="val", stride=32)


def check_train_images(data: dict, source) -> None:
    """Ultralytics checks that the val images exist; the train images are only looked for when training starts."""
    train = data.get("train")
    for p in train if isinstance(train, (list, tuple)) else [train]:
        if p is not None and not Path(str(p)).exists():
            raise UserError(
                f"data={source}: the training images {p} do not exist: fix 'path' and 'train' in the data yaml"
            )


def check_freeze(freeze, student: nn.Module | None) -> None:
    """``freeze=`` that covers every layer of the student leaves nothing to train; Ultralytics finds out only at the
    first backward pass, with a traceback."""
    layers = getattr(student, "model", None)
    if not freeze or layers is None:
        return
    try:
        frozen = {int(i) for i in freeze} if isinstance(freeze, (list, tuple)) else set(range(int(freeze)))
    except (TypeError, ValueError):
        return  # Ultralytics' own type check speaks for other values
    if set(range(len(layers))) <= frozen:
        raise UserError(
            f"freeze={freeze} freezes all {len(layers)} layers of the student, so nothing would train: freeze "
            f"fewer (at most freeze={len(layers) - 1}, which still trains the detection head)"
        )


def check_single_cls(teacher: nn.Module, single_cls) -> None:
    """single_cls=True makes the student predict one class; the teacher's classes must then be one too."""
    nc = len(getattr(teacher, "names", {}) or {})
    if single_cls and nc > 1:
        raise TeacherError(
            f"single_cls=True trains the student on one class, but the teacher predicts {nc}: drop single_cls, or "
            "use a teacher trained with single_cls=True on this dataset"
        )


def single_class(data: dict) -> dict:
    """The dataset dict as Ultralytics makes it for single_cls=True (``BaseTrainer.get_dataset``): one class."""
    return {**data, "names": {0: "item"}, "nc": 1}


def check_resumable(resume) -> None:
    """Refuse to resume a checkpoint without training state: a finished run's, or a save_period snapshot (Ultralytics
    would fail on it with an assertion, after loading it)."""
    path = Path(str(resume))
    if resume is True or not path.is_file():
        return  # resume=True: Ultralytics finds the newest run; a missing file: Ultralytics' own message
    from ultralytics.utils.patches import torch_load

    from .errors import first_line

    try:
        ckpt = torch_load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        problem = first_line(e)
        raise UserError(f"resume={path} is not a checkpoint ({problem}): give the run's weights/last.pt") from None
    if not isinstance(ckpt, dict) or ckpt.get("epoch", -1) == -1:
        raise UserError(
            f"resume={path} holds no training state (the last.pt or best.pt of a run that has ended, or a "
            "save_period snapshot): resume an interrupted run's weights/last.pt, or start a new run from these "
            f"weights (data=... teacher=... model={path})"
        )


def check_output_folder(args) -> None:
    """The run folder can be created (or, when it exists, written to): Ultralytics would fail in ``mkdir`` after
    loading everything, with a PermissionError traceback."""
    save_dir = Path(get_save_dir(args))
    existing = save_dir / "weights"
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.is_dir() and os.access(existing, os.W_OK | os.X_OK):
        return
    why = "is a file" if existing.exists() and not existing.is_dir() else "is not writable"
    raise UserError(
        f"cannot create the run folder {save_dir}: {existing} {why}. Write the run elsewhere with project=FOLDER "
        "(and name=), or fix that folder's permissions"
    )


def same(a: Mapping, b: Mapping, keys) -> bool:
    """Whether ``a`` and ``b`` hold the same values, of the same types, at ``keys``."""
    return all(type(a.get(k)) is type(b.get(k)) and a.get(k) == b.get(k) for k in keys)


@dataclass(frozen=True)
class Checked:
    """What :func:`preflight` loaded and checked for a new run, handed to the trainer so that it does not do it again.

    Attributes:
        ikd: The IKD settings of the overrides; ``values``: the value of each key they were validated from.
        teacher: The loaded teacher.
        data: The dataset dict the teacher was checked against.
        student: The ``model=`` whose student was checked against the teacher.
    """

    ikd: IKDConfig | None = None
    values: dict | None = None
    teacher: nn.Module | None = None
    data: dict | None = None
    student: object = None

    def config(self, args: Mapping) -> IKDConfig:
        """The IKD settings of the final train arguments ``args``: the checked ones when ``args`` holds the values
        they were validated from (a new run's; a resumed run's come from its checkpoint), else validated now."""
        if self.ikd is not None and self.values is not None and same(args, self.values, KEYS):
            return self.ikd
        return IKDConfig.from_mapping(args)

    def checked_data(self, data: dict) -> bool:
        """Whether the teacher was checked against a dataset with ``data``'s classes and channels (what the check
        reads)."""
        return self.data is not None and same(data, self.data, ("nc", "names", "channels"))

    def checked_student(self, model) -> bool:
        """Whether the student of ``model=`` (the run's ``args.model``) was checked against the teacher."""
        return self.student is not None and model == self.student


def preflight(overrides: dict) -> Checked:
    """Validate a new run's inputs (IKD keys, argument values, batch, output folder, data and its images, teacher,
    student, freeze) and return what was loaded and checked (nothing for a resumed run)."""
    ikd = IKDConfig.from_mapping(overrides)
    check_batch(overrides.get("batch", 16))
    args = check_args(overrides)
    if overrides.get("resume"):
        check_resumable(overrides["resume"])
        if overrides.get("save_dir"):
            check_output_folder(args)
        return Checked()
    check_output_folder(args)
    check_amp(overrides.get("amp"), overrides.get("device"))
    teacher = load_teacher(overrides.get("distill_model"))
    check_single_cls(teacher, overrides.get("single_cls"))
    data = load_data(overrides["data"], overrides.get("single_cls")) if overrides.get("data") else None
    if data is not None:
        check_teacher_data(teacher, data, f"teacher={overrides['distill_model']}")
    student = load_student(overrides.get("model"), int(data["nc"]) if data else None)
    if student is not None:
        check_teacher_student(teacher, student)
        check_freeze(args.freeze, student)
    if data is not None:
        check_images(args, data, overrides["data"])
    values = None  # the values ikd was validated from; unknown here when a deprecated key was renamed
    if not any(old in overrides for old in ALIASES):
        values = {**default_settings(), **{k: v for k, v in overrides.items() if k in KEYS}}
    model = overrides.get("model") if student is not None else None
    return Checked(ikd=ikd, values=values, teacher=teacher, data=data, student=model)
