#!/usr/bin/env bash
# The CUDA checks of ikd_yolo in one command, on a machine with an NVIDIA GPU (device 0), offline:
#
#   bash benchmarks/gpu_checks.sh [OUT_DIR]        (default OUT_DIR: runs/gpu_checks)
#
# 1. a short IKD training (both mechanisms on) under fp16 AMP, exporting best.pt to ONNX at the end (run.py export=),
#    then the same under bf16 autocast (amp=bf16): results.csv must show finite, non-zero train/adv_loss;
# 2. the adversarial term's cost per training step on the GPU (bench_adversarial.py, fp16 AMP): plain, native,
#    IKD with 1/2/5 attack steps, yolov8n student and yolov8l teacher at 640 px, batch 16;
# 3. export of the trained student (ONNX, and a TensorRT fp16 engine if the tensorrt package is installed), outputs
#    compared with PyTorch, and latency per 640 px image (bench_export.py).
# Every step writes its figures under OUT_DIR; the summary lines are printed at the end.
# Sizes can be shrunk for a dry run on a CPU: DEVICE=cpu IMGSZ=64 N=32 BENCH_IMGSZ=64 BENCH_TEACHER=yolov8s.yaml BENCH_STEPS=3 bash benchmarks/gpu_checks.sh
set -euo pipefail
OUT=$(realpath -m "${1:-runs/gpu_checks}")  # absolute: Ultralytics puts a relative project= under its runs_dir
DEVICE=${DEVICE:-0} IMGSZ=${IMGSZ:-320} N=${N:-512} BENCH_IMGSZ=${BENCH_IMGSZ:-640}
mkdir -p "$OUT"
export YOLO_OFFLINE=1 PYTHONUNBUFFERED=1 YOLO_AUTOINSTALL=${YOLO_AUTOINSTALL:-false}
PY=${PYTHON:-python}
cd "$(dirname "$0")/.."
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi") | tee "$OUT/gpu.txt"

DATA=$($PY -c "from ikd_yolo.demo.shapes import make_shapes_dataset as m; print(m('$OUT/data', n_train=$N, n_val=$((N / 4)), imgsz=$IMGSZ, seed=0))")
TEACHER=ikd_yolo/assets/demo_teacher.pt
for AMP in True $([ "$DEVICE" = cpu ] || echo bf16); do  # Ultralytics runs bf16 autocast on CUDA only
  $PY run.py data="$DATA" teacher=$TEACHER model=yolov8n.yaml imgsz=$IMGSZ epochs=3 batch=32 device=$DEVICE amp=$AMP \
    adv_epochs=0.67 workers=8 plots=False project="$OUT" name="amp_$AMP" exist_ok=True export=onnx \
    > "$OUT/train_amp_$AMP.log" 2>&1 || { tail -50 "$OUT/train_amp_$AMP.log"; exit 1; }
  $PY - "$OUT/amp_$AMP/results.csv" "$AMP" <<'EOF' | tee -a "$OUT/summary.txt"
import csv, math, sys
rows = list(csv.DictReader(open(sys.argv[1])))
adv = [float(r["train/adv_loss"]) for r in rows]
ok = all(math.isfinite(float(v)) for r in rows for k, v in r.items() if k.startswith(("train/", "metrics/")))
print(f"amp={sys.argv[2]}: train/adv_loss per epoch {adv}, dis_loss {[float(r['train/dis_loss']) for r in rows]}, "
      f"mAP50-95 {[float(r['metrics/mAP50-95(B)']) for r in rows]}, all finite: {ok}")
assert ok and adv[0] > 0 and adv[-1] == 0, "expected a finite non-zero adv_loss in the first epochs and none after"
EOF
done
ls "$OUT/amp_True/weights" | tee -a "$OUT/summary.txt"

$PY benchmarks/bench_adversarial.py --device $DEVICE --imgsz $BENCH_IMGSZ --batch 16 --student yolov8n.yaml \
  --teacher ${BENCH_TEACHER:-yolov8l.yaml} --steps ${BENCH_STEPS:-20} --warmup 5 --json "$OUT/bench_adversarial.json" | tee "$OUT/bench_adversarial.txt"
$PY benchmarks/bench_export.py "$OUT/amp_True/weights/best.pt" --imgsz $BENCH_IMGSZ --device $DEVICE --formats onnx,engine \
  --half --n 100 --json "$OUT/bench_export.json" 2>&1 | tee "$OUT/bench_export.txt" | tail -8
echo; cat "$OUT/summary.txt"
