#!/usr/bin/env bash
# The frequency probe on the benchmark's CPU `full` scale (docs/probe_full.png): its teacher (yolov8n, 0.744) against
# the default `ikd` student of seed 0, on the scale's 256 val images of 128 px (medium and large objects only).
# Needs the benchmark's cache: run `python benchmarks/run_benchmark.py --scale full` first.
#
#   bash benchmarks/probe_full.sh [WORKDIR]      # default /tmp/probe_full; a few minutes on 2 CPU cores
set -euo pipefail
cd "$(dirname "$0")/.."
export YOLO_OFFLINE=1
WORK=$(python -c "import pathlib, sys; print(pathlib.Path(sys.argv[1]).resolve())" "${1:-/tmp/probe_full}")
CACHE=benchmarks/cache/bench/full
read -r DATA TEACHER < <(python - <<'EOF'
import sys
sys.path.insert(0, "benchmarks")
from common import CACHE, cache_key
from run_benchmark import SCALES
cfg = SCALES["full"]
print(CACHE / "full" / f"data-{cache_key(cfg['data'])}" / "data.yaml",
      CACHE / "full" / f"teacher-{cache_key(cfg['data'], cfg['teacher'])}" / "weights" / "last.pt")
EOF
)
STUDENT=$CACHE/runs/ikd_s0/weights/last.pt
for f in "$DATA" "$TEACHER" "$STUDENT"; do
  [ -f "$f" ] || { echo "$f is missing: run python benchmarks/run_benchmark.py --scale full first"; exit 1; }
done
rm -rf "$WORK/probe"
python run.py probe model="$STUDENT" teacher="$TEACHER" data="$DATA" radii=4,8,16,32,48 filter=ideal imgsz=128 \
  batch=16 device=cpu small_area=0.0025 medium_area=0.09 project="$WORK" name=probe
mkdir -p docs
cp "$WORK/probe/probe.png" docs/probe_full.png
cp "$WORK/probe/probe.txt" docs/probe_full.txt
echo "docs/probe_full.png and docs/probe_full.txt updated from $WORK/probe"
