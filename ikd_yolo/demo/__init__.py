"""The embedded demo behind ``python run.py`` with no arguments, and the data generator it, the tests and the
benchmarks use (:mod:`ikd_yolo.demo.shapes`). Nothing here is used by training on a user's data.

It generates the shapes dataset (:mod:`ikd_yolo.demo.shapes`), takes the teacher shipped in ``ikd_yolo/assets`` (a
yolov8n trained on exactly that data by ``benchmarks/make_demo_teacher.py``; trained on the spot if missing),
then trains the same tiny student (``cfg/yolov8-pico.yaml``) twice for the same epochs and seed, without and with
IKD, validates all three with Ultralytics' validator and prints their mAP side by side.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..config import cfg_file
from .shapes import make_shapes_dataset

DEMO_DATA = dict(n_train=256, n_val=64, imgsz=128, seed=0)
TEACHER_ASSET = Path(__file__).parents[1] / "assets" / "demo_teacher.pt"
STUDENT_CFG = str(cfg_file("yolov8-pico.yaml"))
# Shared by the teacher, the plain student and the IKD student: short, CPU-sized, from scratch.
# deterministic: Ultralytics' deterministic algorithms, for a run on a GPU to repeat too (two CPU runs print the same
# table either way: measured)
COMMON = dict(imgsz=128, batch=16, workers=2, warmup_epochs=0, close_mosaic=5, seed=0, deterministic=True)
TEACHER_EPOCHS = 150
STUDENT_EPOCHS = 30


def train_demo_teacher(data: Path, project: Path, epochs: int = TEACHER_EPOCHS) -> Path:
    """Train the demo teacher (yolov8n from scratch) on the demo data; return its best.pt."""
    from ultralytics import YOLO

    model = YOLO("yolov8n.yaml")
    model.train(data=str(data), epochs=epochs, project=str(project), name="teacher", **COMMON)
    return Path(model.trainer.best)


def _map(weights: Path, data: Path) -> tuple[float, float]:
    from ultralytics import YOLO

    m = YOLO(weights).val(data=str(data), imgsz=COMMON["imgsz"], batch=16, plots=False, verbose=False)
    return float(m.box.map), float(m.box.map50)


def run_demo(workdir: str | Path = "runs/ikd_demo", epochs: int = STUDENT_EPOCHS) -> dict[str, Path]:
    """Run the whole demo under ``workdir``; print the mAP table and return the weights of each model."""
    from ultralytics import YOLO

    from ..trainer import IKDTrainer

    start = time.time()
    workdir = Path(workdir).resolve()
    data = make_shapes_dataset(workdir / "data", **DEMO_DATA)
    teacher = TEACHER_ASSET
    if not teacher.exists():
        print(f"demo teacher {TEACHER_ASSET} missing: training it ({TEACHER_EPOCHS} epochs, slow on a CPU)")
        teacher = train_demo_teacher(data, workdir)

    plain = YOLO(STUDENT_CFG)
    plain.train(data=str(data), epochs=epochs, project=str(workdir), name="student_plain", **COMMON)
    ikd = IKDTrainer(
        overrides=dict(
            data=str(data),
            model=STUDENT_CFG,
            teacher=str(teacher),
            epochs=epochs,
            project=str(workdir),
            name="student_ikd",
            **COMMON,
        )
    )
    ikd.train()
    weights = {"teacher (yolov8n)": teacher, "student, no KD": Path(plain.trainer.best), "student, IKD": Path(ikd.best)}
    scores = {name: _map(w, data) for name, w in weights.items()}
    print(f"\nikd_yolo demo: {epochs} student epochs at imgsz {COMMON['imgsz']}")
    print(f"{'model':<20} {'mAP50-95':>9} {'mAP50':>7}  weights")
    for name, (m, m50) in scores.items():
        print(f"{name:<20} {m:>9.4f} {m50:>7.4f}  {_shown(weights[name])}")
    (ikd_m, ikd_m50), (plain_m, plain_m50) = scores["student, IKD"], scores["student, no KD"]
    verdict = "above" if ikd_m > plain_m else "not above"
    print(
        f"IKD student {verdict} the plain one in this run: {ikd_m - plain_m:+.4f} mAP50-95, {ikd_m50 - plain_m50:+.4f} "
        f"mAP50 ({time.time() - start:.0f} s in all; BENCHMARKS.md gives the range over seeds)"
    )
    return weights


def _shown(path: Path) -> str:
    """``path`` relative to the working folder when it lies under it (the same table in any fresh folder)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
