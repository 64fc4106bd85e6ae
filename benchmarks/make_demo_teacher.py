"""Train the teacher that ships as ikd_yolo/assets/demo_teacher.pt (the embedded demo's teacher).

    python benchmarks/make_demo_teacher.py [--epochs 150] [--workdir benchmarks/cache/demo_teacher]

It generates the demo data exactly as the demo does (same seed), trains yolov8n from scratch on it and copies the
stripped best.pt to ikd_yolo/assets/demo_teacher.pt, printing its validation mAP.
"""

import argparse
import shutil
from pathlib import Path

import common  # noqa: F401  (this checkout's ikd_yolo, offline)

from ikd_yolo.demo import DEMO_DATA, TEACHER_ASSET, TEACHER_EPOCHS, train_demo_teacher
from ikd_yolo.demo.shapes import make_shapes_dataset

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=TEACHER_EPOCHS)
    parser.add_argument("--workdir", default="benchmarks/cache/demo_teacher")
    args = parser.parse_args()
    work = Path(args.workdir).resolve()
    data = make_shapes_dataset(work / "data", **DEMO_DATA)
    best = train_demo_teacher(data, work, epochs=args.epochs)
    TEACHER_ASSET.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(best, TEACHER_ASSET)
    print(f"demo teacher: {TEACHER_ASSET} ({TEACHER_ASSET.stat().st_size / 1e6:.1f} MB) from {best}")
