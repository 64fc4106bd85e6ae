"""Test environment: offline, no auto-install, a private Ultralytics config dir with a font in place."""

import os
import tempfile
from pathlib import Path

_CFG = Path(tempfile.mkdtemp(prefix="ikd_yolo_cfg_"))
os.environ["YOLO_OFFLINE"] = "1"
os.environ["YOLO_AUTOINSTALL"] = "false"
os.environ["YOLO_CONFIG_DIR"] = str(_CFG)
os.environ.setdefault("OMP_NUM_THREADS", "2")

import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import matplotlib  # noqa: E402
import pytest  # noqa: E402

# Ultralytics looks up Arial.ttf on every dataset check and plot, online if missing: give it a local font.
(_CFG / "Ultralytics").mkdir(parents=True, exist_ok=True)
_FONT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
for _name in ("Arial.ttf", "Arial.Unicode.ttf"):
    shutil.copy(_FONT, _CFG / "Ultralytics" / _name)

ROOT = Path(__file__).resolve().parents[1]
IMGSZ = 64
# Small and quick, but real: every training test runs Ultralytics' own trainer on generated images.
FAST = dict(imgsz=IMGSZ, batch=8, workers=0, plots=False, warmup_epochs=0, exist_ok=False, seed=0, deterministic=False)
# IKD runs: the kd_balance calibration takes one batch (of the 2 per epoch), so every epoch has KD-active batches
IKD_FAST = {**FAST, "kd_balance_batches": 1}


def run_python(code: str, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh Python process with the test environment; fail the test with its output if it fails."""
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd or ROOT, capture_output=True, text=True, timeout=timeout, env=os.environ
    )
    assert proc.returncode == 0, f"subprocess failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="session")
def shapes_data(tmp_path_factory) -> Path:
    """data.yaml of a small generated dataset: 16 train and 8 val images of 64 px, four classes, three sizes."""
    from ikd_yolo.demo.shapes import make_shapes_dataset

    return make_shapes_dataset(tmp_path_factory.mktemp("shapes"), n_train=16, n_val=8, imgsz=IMGSZ, seed=0)


@pytest.fixture(scope="session")
def teacher_pt(shapes_data, tmp_path_factory) -> Path:
    """A real teacher checkpoint: yolov8s trained for one epoch on the generated data (wider than the student)."""
    from ultralytics import YOLO

    project = tmp_path_factory.mktemp("teacher")
    YOLO("yolov8s.yaml").train(data=str(shapes_data), epochs=1, project=str(project), name="t", **FAST)
    path = project / "t" / "weights" / "best.pt"
    assert path.exists()
    return path
