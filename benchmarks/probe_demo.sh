#!/usr/bin/env bash
# The frequency probe example in docs/probe.md (docs/probe_demo.png): the shipped demo teacher (yolov8n) against an IKD
# demo student (cfg/yolov8-pico.yaml, 30 epochs, the demo's settings) on the demo's generated data, CPU only.
#
#   bash benchmarks/probe_demo.sh [WORKDIR]      # default /tmp/probe_demo; ~15 min on 2 CPU cores, mostly the student
#
# The student is trained once and reused; the probe itself takes about a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
export YOLO_OFFLINE=1
WORK=$(python -c "import pathlib, sys; print(pathlib.Path(sys.argv[1]).resolve())" "${1:-/tmp/probe_demo}")
TEACHER=ikd_yolo/assets/demo_teacher.pt
DATA=$(python -c "
from ikd_yolo.demo.shapes import make_shapes_dataset
from ikd_yolo.demo import DEMO_DATA
print(make_shapes_dataset('$WORK/data', **DEMO_DATA))")
STUDENT=$WORK/student/weights/best.pt
if [ ! -f "$STUDENT" ]; then
  python run.py data="$DATA" teacher=$TEACHER model=cfg/yolov8-pico.yaml imgsz=128 epochs=30 batch=16 workers=2 \
    warmup_epochs=0 close_mosaic=5 seed=0 deterministic=False project="$WORK" name=student exist_ok=True
fi
rm -rf "$WORK/probe"
python run.py probe model="$STUDENT" teacher=$TEACHER data="$DATA" radii=4,8,16,32,48 filter=ideal imgsz=128 \
  batch=16 device=cpu project="$WORK" name=probe
mkdir -p docs
cp "$WORK/probe/probe.png" docs/probe_demo.png
echo "docs/probe_demo.png updated from $WORK/probe"
