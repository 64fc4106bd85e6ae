"""What the tests share: sizes, training arguments, a trainer, a model wrapper and batch builders, small run helpers.

Tests import from here, never from ``conftest`` (which only sets the environment up and holds the fixtures).
"""

from __future__ import annotations

import contextlib
import csv
import os
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
PICO = str(ROOT / "cfg" / "yolov8-pico.yaml")
IMGSZ = 64
# Small and quick, but real: every training test runs Ultralytics' own trainer on generated images.
FAST = dict(imgsz=IMGSZ, batch=8, workers=0, plots=False, warmup_epochs=0, exist_ok=False, seed=0, deterministic=False)
# IKD runs: the kd_balance calibration takes one batch (of the 2 per epoch), so every epoch has KD-active batches
IKD_FAST = {**FAST, "kd_balance_batches": 1}
# The soft KD terms (feature base, BCKD, LD): off by default (the labels-only recipe won the benchmark); tests of the
# terms turn them on
SOFT = dict(kd_loss="pkd", kd_cls_weight=1.0, kd_dfl_weight=1.0)


def trainer(tmp_path: Path, *, data: str | Path, **ikd):
    """An ``IKDTrainer`` with the tests' tiny run: the student ``PICO``, the shipped demo teacher, one epoch, the run
    folder under ``tmp_path`` and ``IKD_FAST``.

    ``data``: the ``shapes_data`` fixture's data.yaml. ``ikd``: what the test sets or changes (any Ultralytics or IKD
    key, e.g. ``model="yolov8n.yaml"``, ``name``, ``epochs``, ``workers``); a key given as ``None`` is left out
    (``teacher=None``: no teacher). Paths are passed as strings, as a user's overrides would be.
    """
    from ikd_yolo.demo import TEACHER_ASSET
    from ikd_yolo.trainer import IKDTrainer

    overrides = {**dict(data=data, model=PICO, teacher=TEACHER_ASSET, epochs=1, project=tmp_path, **IKD_FAST), **ikd}
    return IKDTrainer(
        overrides={k: str(v) if isinstance(v, Path) else v for k, v in overrides.items() if v is not None}
    )


class Interrupt(Exception):
    """Raised from a callback to stop a training run as a crash would."""


def run_python(code: str, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh Python process with the test environment; fail the test with its output if it fails."""
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd or ROOT, capture_output=True, text=True, timeout=timeout, env=os.environ
    )
    assert proc.returncode == 0, f"subprocess failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def read_results(run: Path) -> list[dict[str, float]]:
    """The rows of a run folder's results.csv, as floats."""
    with open(run / "results.csv") as f:
        return [{k.strip(): float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def make_model(teacher: str = "yolov8s.yaml", student: str = "yolov8n.yaml", **ikd):
    """The IKD wrapper around freshly built (untrained) teacher and student with 4 classes, at imgsz 64.

    ``ikd``: the IKD settings of the test (anything else keeps its default).
    """
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel

    from ikd_yolo.config import IKDConfig
    from ikd_yolo.model import IKDDistillationModel

    torch.manual_seed(0)
    args = get_cfg(overrides={"imgsz": IMGSZ})
    t = DetectionModel(teacher, nc=4, verbose=False).eval()
    s = DetectionModel(student, nc=4, verbose=False)
    s.args = args
    model = IKDDistillationModel(teacher_model=t, student_model=s, ikd=IKDConfig.from_mapping(ikd))
    model.args = args
    return model.train()


def det_batch(n: int = 4, boxes=((0, 0.3, 0.3, 0.2, 0.2), (1, 0.6, 0.6, 0.5, 0.4)), size=IMGSZ, seed: int = 0):
    """An Ultralytics training batch of ``n`` random images, each holding ``boxes`` (cls, x, y, w, h normalised)."""
    b = torch.tensor(boxes, dtype=torch.float32).view(-1, 5)
    width = size if isinstance(size, int) else size[1]
    height = size if isinstance(size, int) else size[0]
    return {
        "img": torch.rand(n, 3, height, width, generator=torch.Generator().manual_seed(seed)),
        "batch_idx": torch.arange(n).repeat_interleave(len(b)).float(),
        "cls": b[:, :1].repeat(n, 1),
        "bboxes": b[:, 1:].repeat(n, 1),
    }


@contextlib.contextmanager
def frozen_bn_statistics(model: nn.Module):
    """Run ``model`` in train mode without updating its BatchNorm running statistics: the adversarial group's
    forward of ``adv_bn=split`` done apart (the reference its one-forward numbers are checked against)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in bns]
    for m in bns:
        m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch: unchanged
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(bns, saved, strict=True):
            m.momentum = momentum
            m.num_batches_tracked.copy_(tracked)
