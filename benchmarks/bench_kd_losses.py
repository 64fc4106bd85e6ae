# Feature bases (kd_loss=native|pkd|cwd|mgd|fgd): initial magnitude, cost per training step, short runs.
#
#   python benchmarks/bench_kd_losses.py            # all three parts (about 3 min on 2 idle CPU cores)
#   python benchmarks/bench_kd_losses.py --no-train # parts 1 and 2 only (about 1 min)
#
# Writes benchmarks/results/bench_kd_losses.json (command, machine, date, commit and every figure) and prints a table.
# Each base is measured alone, at fixed weights (kd_balance=0, no response terms, no adversarial term).
#
# Setting (the demo's): student cfg/yolov8-pico.yaml (4 classes), teacher ikd_yolo/assets/demo_teacher.pt (yolov8n),
# shapes data make_shapes_dataset(root, n_train=64, n_val=16, imgsz=128), batch 16.
# 1. dis_loss on one fixed batch of 16 real training images (no augmentation), freshly built wrapper (seed 0),
#    with the papers' unscaled weights and with our defaults (cfg/ikd.yaml);
# 2. median time (15 interleaved rounds) of a forward+backward step of the wrapper on that batch (adversarial term
#    off), per kd_loss,
#    relative to native;
# 3. 3-epoch IKDTrainer runs (adv_aug=False, freq_aug=False, workers 0): dis_loss of the first batch and
#    train/dis_loss of each epoch (results.csv).
from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")

import common  # noqa: E402
import torch  # noqa: E402

ROOT = common.ROOT

from ikd_yolo.config import IKDConfig  # noqa: E402
from ikd_yolo.demo import STUDENT_CFG, TEACHER_ASSET  # noqa: E402
from ikd_yolo.demo.shapes import make_shapes_dataset  # noqa: E402
from ikd_yolo.model import IKDDistillationModel  # noqa: E402

LOSSES = ("native", "pkd", "cwd", "mgd", "fgd")
PAPER = {  # the papers' (authors' one-stage / RetinaNet) weights, before our rescale
    "native": {},
    "pkd": {"kd_pkd_weight": 1.0},
    "cwd": {"kd_cwd_tau": 1.0, "kd_cwd_weight": 5.0},
    "mgd": {"kd_mgd_alpha": 2e-5, "kd_mgd_lambda": 0.65},
    "fgd": {"kd_fgd_temp": 0.5, "kd_fgd_alpha": 1e-3, "kd_fgd_beta": 5e-4, "kd_fgd_gamma": 5e-4, "kd_fgd_lambda": 5e-6},
}


def build(kd_loss: str, **weights) -> IKDDistillationModel:
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel, load_checkpoint

    torch.manual_seed(0)
    args = get_cfg(overrides={"imgsz": 128})
    student = DetectionModel(STUDENT_CFG, nc=4, verbose=False)
    student.args = args
    teacher = load_checkpoint(TEACHER_ASSET)[0].float()
    alone = {"adv_aug": False, "kd_balance": 0.0, "kd_cls_weight": 0.0, "kd_dfl_weight": 0.0}
    ikd = IKDConfig.from_mapping({"kd_loss": kd_loss, **alone, **weights})
    model = IKDDistillationModel(teacher_model=teacher, student_model=student, ikd=ikd)
    model.args = args
    return model.train()


def initial_and_timing(batch: dict, rounds: int) -> dict:
    out, models = {}, {}
    for name in LOSSES:
        torch.manual_seed(0)
        paper = build(name, **PAPER[name])(batch)[1]["dis_loss"].item()
        models[name] = build(name)
        torch.manual_seed(0)
        out[name] = {"paper": paper, "ours": models[name](batch)[1]["dis_loss"].item(), "times": []}
    for r in range(rounds + 1):  # interleaved rounds, so that load from other processes hits every loss alike
        for name, model in models.items():
            t0 = time.perf_counter()
            loss, _ = model(batch)
            loss.sum().backward()
            model.zero_grad(set_to_none=True)
            if r:  # the first round warms up
                out[name]["times"].append(time.perf_counter() - t0)
    for r in out.values():
        r["step_s"] = statistics.median(r.pop("times"))
    return out


def short_run(name: str, data_yaml: Path, project: Path, epochs: int) -> dict:
    from ikd_yolo.trainer import IKDTrainer

    trainer = IKDTrainer(
        overrides=dict(
            data=str(data_yaml),
            model=STUDENT_CFG,
            teacher=str(TEACHER_ASSET),
            epochs=epochs,
            imgsz=128,
            batch=16,
            workers=0,
            adv_aug=False,
            freq_aug=False,
            kd_loss=name,
            kd_balance=0.0,
            kd_cls_weight=0.0,
            kd_dfl_weight=0.0,
            kd_warmup_epochs=0.0,
            project=str(project),
            name=name,
            plots=False,
            warmup_epochs=0,
            seed=0,
            deterministic=False,
            val=True,
        )
    )
    first = {}

    def grab(tr):
        if not first:
            first["dis"] = tr.label_loss_items(tr.loss_items, prefix="train")["train/dis_loss"]

    trainer.add_callback("on_train_batch_end", grab)
    t0 = time.time()
    trainer.train()
    with open(project / name / "results.csv") as f:
        rows = [{k.strip(): float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    return {"first": first["dis"], "epochs": [r["train/dis_loss"] for r in rows], "s": time.time() - t0}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-train", action="store_true")
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--workdir", default=None)
    a = ap.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    work = Path(a.workdir or tempfile.mkdtemp(prefix="bench_kd_"))
    data = make_shapes_dataset(work / "data", n_train=64, n_val=16, imgsz=128, seed=0)
    batch = common.fixed_batch(data)
    res = initial_and_timing(batch, a.steps)
    base = res["native"]["step_s"]
    print(f"\n1-2. fixed batch of 16 ({len(batch['cls'])} boxes), imgsz 128, {torch.get_num_threads()} CPU threads")
    print(
        f"{'kd_loss':<8} {'dis_loss paper w.':>17} {'dis_loss ours':>13} {'factor':>8} {'step s':>8} {'vs native':>9}"
    )
    for name, r in res.items():
        factor = r["ours"] / r["paper"] if r["paper"] else float("nan")
        print(
            f"{name:<8} {r['paper']:>17.4f} {r['ours']:>13.4f} {factor:>8.3g} {r['step_s']:>8.3f} "
            f"{r['step_s'] / base:>8.2f}x"
        )
    out = {
        "command": "python benchmarks/bench_kd_losses.py " + " ".join(sys.argv[1:]),
        "machine": common.machine(),
        "date": datetime.date.today().isoformat(),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "cpu_threads": torch.get_num_threads(),
        "fixed_batch": res,
    }
    if not a.no_train:
        out["short_runs"] = short_runs(a, data, work)
    (common.RESULTS / "bench_kd_losses.json").write_text(json.dumps(out, indent=1))
    print(f"\nresults: {common.RESULTS / 'bench_kd_losses.json'}")


def short_runs(a, data: Path, work: Path) -> dict:
    print(f"\n3. {a.epochs}-epoch IKDTrainer runs, 64 train images, batch 16 (adv_aug=False, freq_aug=False)")
    runs = {name: short_run(name, data, work / "runs", a.epochs) for name in LOSSES}
    print(
        f"{'kd_loss':<8} {'first batch':>11} "
        + " ".join(f"{'epoch ' + str(i + 1):>8}" for i in range(a.epochs))
        + f" {'wall s':>7}"
    )
    for name, r in runs.items():
        print(f"{name:<8} {r['first']:>11.4f} " + " ".join(f"{v:>8.4f}" for v in r["epochs"]) + f" {r['s']:>7.0f}")
    return runs


if __name__ == "__main__":
    main()
