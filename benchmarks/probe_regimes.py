"""Other regimes of the CPU ``full`` scale, at one seed: does distillation pay when the student has less to start
from, fewer labelled images, or no labels at all?

    python benchmarks/probe_regimes.py --init-epochs 10 --variants weak-init
    python benchmarks/probe_regimes.py --variants few-labels
    python benchmarks/probe_regimes.py --variants kd-only

Each variant trains the benchmark's student (seed 0) against the ``full`` scale's data and teacher, with the
pretraining of ``--init-epochs`` epochs (the scale's own is 40), and prints ``RESULT <init epochs> <name> <mAP50-95>``;
runs are cached under ``benchmarks/cache/bench/full/runs_init<N>/``. Variants:

- ``weak-init``: baseline, response KD only (kd_balance 0.1) and the recipe at kd_balance 0.1;
- ``few-labels``: the same student fine-tuned on a quarter of the train split (``fraction=0.25``, 64 images) for
  60 epochs: baseline, BCKD only (0.1), response KD (0.3), the recipe (0.1);
- ``kd-only``: the detection loss off (``box=cls=dfl=0``), BCKD and LD at fixed weights 1 through every epoch: how
  far the teacher's outputs alone move the student.
"""

from __future__ import annotations

import argparse
import copy

import run_benchmark as rb
from common import CACHE, cache_key

from ikd_yolo.config import default_settings

RECIPE = {"freq_aug": False, "adv_aug": False}
VARIANTS = {
    "weak-init": {
        "baseline": {},
        "kd-resp": {"ikd": {**RECIPE, "kd_pkd_weight": 0.0, "kd_balance": 0.1}},
        "kd-def": {"ikd": {**RECIPE, "kd_balance": 0.1}},
    },
    "few-labels": {
        "f25-base": {"train_args": {"fraction": 0.25}, "epochs": 60},
        "f25-cls": {"ikd": {**RECIPE, "kd_pkd_weight": 0.0, "kd_dfl_weight": 0.0, "kd_balance": 0.1},
                    "train_args": {"fraction": 0.25}, "epochs": 60},
        "f25-resp3": {"ikd": {**RECIPE, "kd_pkd_weight": 0.0, "kd_balance": 0.3},
                      "train_args": {"fraction": 0.25}, "epochs": 60},
        "f25-all1": {"ikd": {**RECIPE, "kd_balance": 0.1}, "train_args": {"fraction": 0.25}, "epochs": 60},
    },
    "kd-only": {
        "kdonly": {"ikd": {**RECIPE, "kd_pkd_weight": 0.0, "kd_balance": 0.0, "kd_close_mosaic_off": False,
                           "kd_final_scale": 1.0}, "train_args": {"box": 0.0, "cls": 0.0, "dfl": 0.0}},
    },
}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--init-epochs", type=int, default=40)
    p.add_argument("--variants", choices=sorted(VARIANTS), required=True)
    a = p.parse_args()
    cfg = copy.deepcopy(rb.SCALES["full"])
    cfg["student_init"]["epochs"] = a.init_epochs
    data, teacher = rb.prepare("full", cfg, "cpu")
    student = rb.pretrain_student("full", cfg, "cpu")
    init = rb.score(student, data, 128, "cpu", CACHE / "full", f"init{a.init_epochs}_eval")["map50_95"]
    print(f"student init ({a.init_epochs} epochs): mAP50-95 {init:.4f}", flush=True)
    for name, v in VARIANTS[a.variants].items():
        ikd = v.get("ikd")
        spec = dict(
            method=name, seed=0, ikd=ikd, ikd_defaults=cache_key(default_settings()) if ikd is not None else None,
            data=str(data), teacher=str(teacher), student=student, epochs=v.get("epochs", cfg["epochs"]),
            imgsz=128, batch=16, device="cpu", workers=2, close_mosaic=cfg["close_mosaic"],
            train_args=v.get("train_args", {}),
            run_dir=str(CACHE / "full" / f"runs_init{a.init_epochs}" / f"{name}_s0"),
        )  # fmt: skip
        r = rb.run_spec(spec, False)
        print("RESULT", a.init_epochs, name, round(r["map50_95"], 4), flush=True)


if __name__ == "__main__":
    main()
