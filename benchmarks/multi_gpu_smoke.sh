#!/usr/bin/env bash
# Multi-GPU smoke run of ikd_yolo on one machine with at least 2 NVIDIA GPUs, offline, a few minutes:
#
#   bash benchmarks/multi_gpu_smoke.sh [OUT_DIR]          (default OUT_DIR: runs/multi_gpu_smoke; NGPU=2)
#
# 1. Ultralytics' own launcher: python run.py ... device=0,1 (the trainer is rebuilt in each worker from its args);
# 2. an external torchrun: torchrun --nproc_per_node 2 run.py ... device=0,1 (the form used on clusters; add
#    --nnodes N --node_rank R --rdzv-endpoint HOST:PORT on each node for several machines: the world size is taken
#    from torchrun, batch= is the global batch over every GPU of every node).
# Both train the demo teacher's student for 2 epochs with both IKD mechanisms on; each must write results.csv with
# a finite, non-zero train/adv_loss in epoch 1 and the IKD settings in ikd.yaml.
set -euo pipefail
OUT=$(realpath -m "${1:-runs/multi_gpu_smoke}")
NGPU=${NGPU:-2}
PY=${PYTHON:-python}
DEVICES=$(seq -s, 0 $((NGPU - 1)))
export YOLO_OFFLINE=1 PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
DATA=$($PY -c "from ikd_yolo.demo.shapes import make_shapes_dataset as m; print(m('$OUT/data', n_train=256, n_val=64, imgsz=320, seed=0))")
ARGS=(data="$DATA" teacher=ikd_yolo/assets/demo_teacher.pt model=yolov8n.yaml imgsz=320 epochs=2 batch=$((16 * NGPU))
      device=$DEVICES adv_epochs=0.5 workers=4 plots=False project="$OUT" exist_ok=True)

$PY run.py "${ARGS[@]}" name=launcher 2>&1 | tail -5
$PY -m torch.distributed.run --nproc_per_node "$NGPU" run.py "${ARGS[@]}" name=torchrun 2>&1 | tail -5

for run in launcher torchrun; do
  $PY - "$OUT/$run" <<'EOF'
import csv, math, sys, yaml
run = sys.argv[1]
rows = list(csv.DictReader(open(f"{run}/results.csv")))
adv = [float(r["train/adv_loss"]) for r in rows]
assert len(rows) == 2 and math.isfinite(adv[0]) and adv[0] > 0 and adv[1] == 0, adv
print(run, "ok: adv_loss", adv, "IKD settings", yaml.safe_load(open(f"{run}/ikd.yaml")))
EOF
done
