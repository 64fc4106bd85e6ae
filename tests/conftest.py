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

import matplotlib  # noqa: E402
import pytest  # noqa: E402

# Ultralytics looks up Arial.ttf on every dataset check and plot, online if missing: give it a local font.
(_CFG / "Ultralytics").mkdir(parents=True, exist_ok=True)
_FONT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
for _name in ("Arial.ttf", "Arial.Unicode.ttf"):
    shutil.copy(_FONT, _CFG / "Ultralytics" / _name)

from .helpers import IMGSZ  # noqa: E402


@pytest.fixture(scope="session")
def shapes_data(tmp_path_factory) -> Path:
    """data.yaml of a small generated dataset: 16 train and 8 val images of 64 px, four classes, three sizes."""
    from ikd_yolo.demo.shapes import make_shapes_dataset

    return make_shapes_dataset(tmp_path_factory.mktemp("shapes"), n_train=16, n_val=8, imgsz=IMGSZ, seed=0)


@pytest.fixture(scope="session")
def teacher_pt() -> Path:
    """A real teacher checkpoint: the shipped demo teacher (yolov8n trained on the same generated classes)."""
    from ikd_yolo.demo import TEACHER_ASSET

    assert TEACHER_ASSET.is_file()
    return TEACHER_ASSET
