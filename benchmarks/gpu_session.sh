#!/usr/bin/env bash
# Every figure this project needs from a GPU, in one command (one NVIDIA GPU, device 0, offline), in the order of
# what matters most if the time runs out:
#
#   bash benchmarks/gpu_session.sh [OUT_DIR]        (default OUT_DIR: runs/gpu_session)
#
# 1. the cost of one training step, as ratios to the plain student (bench_adversarial.py, fp16 AMP, yolov8n student,
#    yolov8l teacher, 640 px, batch 16): native, kd, ikd and ikd's cheaper options;
# 2. the textured-gpu scale of run_benchmark.py, headline regime (annotator labels, typical teacher): the teacher and
#    the pretrained student (--prepare-only, timed apart), the typical teacher chosen on val (teacher_strengths.py),
#    then none, native, kd and ikd x 3 seeds, four runs at a time on the GPU, scored on test.
# OUT_DIR receives: summary.txt (GPU, commit, step costs, timings), bench_adversarial.json, profile.txt (where each
# method's step time goes), prepare.log, teachers.log, benchmark.log, the results json, compare.md and runs.tar.gz
# (every run's record, log and results.csv), the last refreshed every 15 s, so that a run cut short still leaves what
# it finished. SKIP_SCALE=1: step 1 only.
# A dry run on a CPU, tiny: DEVICE=cpu SMOKE=1 BENCH_IMGSZ=64 BENCH_TEACHER=yolov8s.yaml BENCH_STEPS=2 BENCH_WARMUP=1 \
#   BENCH_ROUNDS=1 bash ...
set -euo pipefail
OUT=$(realpath -m "${1:-runs/gpu_session}")
DEVICE=${DEVICE:-0}
mkdir -p "$OUT"
export YOLO_OFFLINE=1 PYTHONUNBUFFERED=1 YOLO_AUTOINSTALL=${YOLO_AUTOINSTALL:-false}
PY=${PYTHON:-python}
cd "$(dirname "$0")/.."
SCALE_ARGS=(--scale textured-gpu)
[ -n "${SMOKE:-}" ] && SCALE_ARGS+=(--smoke)
SLOTS=$([ "$DEVICE" = cpu ] && echo cpu || echo "$DEVICE,$DEVICE,$DEVICE,$DEVICE")  # four runs share the GPU
CACHE=benchmarks/cache/bench/textured-gpu${SMOKE:+-smoke}
SUMMARY="$OUT/summary.txt"
# every package a step below imports, checked before any GPU time is spent (a lent machine may lack some: on
# 2026-11-26 pycocotools was missing and every scoring step of the benchmark failed after its training)
$PY -c "import albumentations, cv2, pycocotools.cocoeval, skimage, torch, ultralytics, yaml" || {
  echo "a package is missing: install the project's dependencies (pyproject.toml) first"; exit 1; }
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -u +%F), $(nproc) CPU cores"
  $PY -c "import torch, ultralytics; print('torch', torch.__version__, 'ultralytics', ultralytics.__version__)"
} | tee "$SUMMARY"

pack_runs() {  # every training's result json, log and results.csv, as one archive (OUT takes few files)
  mkdir -p "$CACHE"
  (cd "$CACHE" && find . -maxdepth 4 \( -name '*.json' -o -name '*.log' -o -name results.csv -o -name '*.md' \) -print0 |
    tar -czf /tmp/gpu_session_runs.tar.gz --null -T -) 2>/dev/null && mv /tmp/gpu_session_runs.tar.gz "$OUT/runs.tar.gz"
  return 0
}
(while sleep 15; do pack_runs; done) &
PACKER=$!
trap 'kill $PACKER 2>/dev/null || true; pack_runs' EXIT

$PY benchmarks/bench_adversarial.py --device "$DEVICE" --imgsz "${BENCH_IMGSZ:-640}" --batch 16 --student yolov8n.yaml \
  --teacher "${BENCH_TEACHER:-yolov8l.yaml}" --steps "${BENCH_STEPS:-20}" --warmup "${BENCH_WARMUP:-10}" \
  --rounds "${BENCH_ROUNDS:-2}" --profile "$OUT/profile.txt" \
  ${BENCH_METHODS:+--methods "$BENCH_METHODS"} --json "$OUT/bench_adversarial.json" | tee -a "$SUMMARY"
[ -n "${SKIP_SCALE:-}" ] && exit 0  # the step costs only

t0=$(date +%s)
$PY benchmarks/run_benchmark.py "${SCALE_ARGS[@]}" --device "$DEVICE" --prepare-only > "$OUT/prepare.log" 2>&1 || { tail -40 "$OUT/prepare.log"; exit 1; }
t1=$(date +%s)
echo "prepare (data, teachers, pretrained student): $((t1 - t0)) s" | tee -a "$SUMMARY"
$PY benchmarks/teacher_strengths.py --scale textured-gpu ${SMOKE:+--smoke} --device "$DEVICE" --labels annotator \
  > "$OUT/teachers.log" 2>&1 || { tail -40 "$OUT/teachers.log"; exit 1; }
t2=$(date +%s)
echo "teacher snapshots scored on val: $((t2 - t1)) s" | tee -a "$SUMMARY"
$PY benchmarks/run_benchmark.py "${SCALE_ARGS[@]}" --device "$SLOTS" --regime annotator-typical \
  arms=none,native,kd,ikd seeds=3 split=test > "$OUT/benchmark.log" 2>&1 || { tail -40 "$OUT/benchmark.log"; exit 1; }
echo "benchmark (4 arms x 3 seeds, teacher and student cached): $(($(date +%s) - t2)) s" | tee -a "$SUMMARY"
cp benchmarks/results/textured-gpu*.json "$OUT/" 2>/dev/null || true
find "$CACHE" -name compare.md -exec cp {} "$OUT/" \;
sed -n '/^| arm/,/^$/p' "$OUT/benchmark.log" | tee -a "$SUMMARY"
