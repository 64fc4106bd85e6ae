"""The runs of a comparison: one Ultralytics run folder per (arm, seed) under the comparison's folder, each trained
in a process of its own and scored from its ``last.pt``.

A finished run leaves ``compare_run.json`` in its folder: the settings it was trained with (every train and IKD key,
resolved), its training time and peak memory, and its scores on each split it was scored on. A repeated command
reuses it when the settings are the same; a run folder without that file (an interrupted run) is trained again.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import UserError
from .arms import Arm

RUN_FILE = "compare_run.json"
NOT_FINGERPRINTED = {"device", "workers", "project", "name", "exist_ok", "verbose", "plots"}


@dataclass
class Setup:
    """What a comparison trains: its folder, arms, seeds, common train arguments and how it scores."""

    folder: Path
    arms: list[Arm]
    seeds: list[int]
    train: dict[str, Any]  # common Ultralytics train arguments: data, model, epochs, imgsz, batch, device, ...
    teacher: str | None
    ikd: dict[str, Any] = field(default_factory=dict)  # IKD keys for every IKD arm
    split: str = "val"
    area_rng: tuple[float, float] | None = None  # px^2; None: COCO's

    def arm(self, name: str) -> Arm:
        found = next((a for a in self.arms if a.name == name), None)
        if found is None:
            raise UserError(f"run={name}: no such arm in this comparison ({', '.join(a.name for a in self.arms)})")
        return found

    def run_dir(self, arm: Arm, seed: int) -> Path:
        return self.folder / f"{arm.folder}_s{seed}"

    def overrides(self, arm: Arm, seed: int) -> dict[str, Any]:
        """The train arguments of one run."""
        extra = self.ikd if arm.trainer == "ikd" else {}
        run = self.run_dir(arm, seed)
        out = {**self.train, **extra, **arm.overrides(self.teacher), "seed": seed}
        return {**out, "project": str(run.parent), "name": run.name, "exist_ok": True}

    def runs(self) -> list[tuple[Arm, int]]:
        """Every (arm, seed), seed-major so that a partial comparison holds whole seeds."""
        return [(a, s) for s in self.seeds for a in self.arms]


def fingerprint(overrides: dict[str, Any]) -> dict[str, Any]:
    """The settings that decide what a run trains (not where or on which device). An IKD run's every IKD key is
    resolved, so that a run made under other defaults (an older ikd_yolo) is not taken for this one."""
    out = {k: v for k, v in sorted(overrides.items()) if k not in NOT_FINGERPRINTED}
    if "teacher" in overrides:  # IKDTrainer's runs (Ultralytics' own take distill_model=)
        from ...config import IKDConfig

        out.update(IKDConfig.from_mapping(overrides).to_dict())
    return out


def load_run(run: Path) -> dict | None:
    """A finished run's record, or None."""
    f = run / RUN_FILE
    return json.loads(f.read_text()) if f.is_file() else None


def wanted(setup: Setup, arm: Arm, seed: int) -> dict:
    """The fingerprint of a run as its record stores it (JSON types)."""
    return json.loads(json.dumps(fingerprint(setup.overrides(arm, seed)), default=str))


def link_sibling(setup: Setup, arm: Arm, seed: int) -> dict | None:
    """A finished run of the same training in another comparison under the same project folder (the ``none`` arm of
    two comparisons with different teachers, say), linked here instead of trained again."""
    run = setup.run_dir(arm, seed)
    want = wanted(setup, arm, seed)
    for other in sorted(setup.folder.parent.glob(f"*/{run.name}")):
        record = load_run(other)
        if other.parent != setup.folder and record and record["fingerprint"] == want and not other.is_symlink():
            if run.is_symlink():
                run.unlink()
            elif run.exists():  # an interrupted run of this comparison
                shutil.rmtree(run)
            run.parent.mkdir(parents=True, exist_ok=True)
            run.symlink_to(other.resolve(), target_is_directory=True)
            return record
    return None


def check_reusable(setup: Setup, arm: Arm, seed: int) -> dict | None:
    """The record of a finished run with this run's settings (here, or linked from a sibling comparison); None if it
    must be trained; a run finished here with other settings is refused (it is not ours to overwrite)."""
    record = load_run(setup.run_dir(arm, seed))
    if record is None:
        return link_sibling(setup, arm, seed)
    want = wanted(setup, arm, seed)
    have = record["fingerprint"]
    if have != want:
        diff = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
        shown = ", ".join(f"{k}={have.get(k)} (now {want.get(k)})" for k in diff[:3])
        raise UserError(
            f"{setup.run_dir(arm, seed)} was trained with {shown}: compare into another folder (name=...), or remove it"
        )
    return record


def peak_memory_mb(device: str) -> float:
    """Peak CUDA memory allocated by this process on a GPU run, else its peak resident set (Linux), in MiB."""
    import torch

    if str(device) not in {"cpu", "mps"} and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def train_run(setup: Setup, arm: Arm, seed: int) -> dict:
    """Train one (arm, seed) in this process, score it, and write its record."""
    from ultralytics import YOLO

    from ...trainer import IKDTrainer

    args = setup.overrides(arm, seed)
    run = setup.run_dir(arm, seed)
    if run.exists():  # an interrupted run of this comparison: start it again
        shutil.rmtree(run)
    start = time.time()
    if arm.trainer == "ikd":
        trainer = IKDTrainer(overrides=args)
        trainer.train()
    else:
        model = YOLO(args.pop("model"))
        model.train(**args)
        trainer = model.trainer
    seconds = time.time() - start
    record = {
        "arm": arm.name,
        "seed": seed,
        "fingerprint": wanted(setup, arm, seed),
        "settings": {k: v for k, v in vars(trainer.args).items() if k not in {"save_dir"}},
        "epochs_trained": int(trainer.epoch) + 1,
        "started": start,  # seconds since the epoch: runs trained at once overlap
        "train_s": seconds,
        "epoch_time_s": seconds / (int(trainer.epoch) + 1),
        "peak_mem_mb": peak_memory_mb(str(args.get("device", "cpu"))),
        "scores": {},
        "ikd_yolo": provenance(),
    }
    (run / RUN_FILE).write_text(json.dumps(record, indent=1, default=str))
    return score_run(setup, arm, seed)


def score_run(setup: Setup, arm: Arm, seed: int) -> dict:
    """Score a finished run's ``last.pt`` on the comparison's split (once; kept in its record)."""
    run = setup.run_dir(arm, seed)
    record = load_run(run)
    if setup.split not in record["scores"]:
        record["scores"][setup.split] = score(run / "weights" / "last.pt", setup, run, f"score_{setup.split}")
        (run / RUN_FILE).write_text(json.dumps(record, indent=1, default=str))
    return record


def score(weights: Path | str, setup: Setup, where: Path, name: str) -> dict:
    """mAP50-95, mAP50 and COCO AP by size of ``weights`` on the comparison's split."""
    from ..sizeval import COCO_AREA_RNG, evaluate

    device = str(setup.train.get("device") or "cpu").split(",")[0]
    return evaluate(
        str(weights),
        str(setup.train["data"]),
        imgsz=setup.train.get("imgsz", 640),
        batch=setup.train.get("batch", 16),
        device=device,
        split=setup.split,
        project=str(where),
        name=name,
        exist_ok=True,
        area_rng=setup.area_rng or COCO_AREA_RNG,
    )


def score_teacher(setup: Setup) -> dict | None:
    """The teacher's scores on the split, kept in ``teacher.json`` of the comparison's folder."""
    if setup.teacher is None:
        return None
    f = setup.folder / "teacher.json"
    kept = json.loads(f.read_text()) if f.is_file() else {}
    if kept.get("weights") != str(setup.teacher) or setup.split not in kept.get("scores", {}):
        scores = {**kept.get("scores", {}), setup.split: score(setup.teacher, setup, setup.folder, "teacher")}
        kept = {"weights": str(setup.teacher), "scores": scores}
        f.write_text(json.dumps(kept, indent=1))
    return {"weights": kept["weights"], **kept["scores"][setup.split]}


def provenance() -> dict:
    """ikd_yolo's version and, in a git checkout, its commit (with ``+dirty`` for uncommitted changes)."""
    from ... import __version__

    root = Path(__file__).resolve().parents[3]
    out = {"version": __version__}
    if (root / ".git").exists():
        git = ["git", "-C", str(root)]
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "--", "ikd_yolo", "cfg"], capture_output=True, text=True)
        out["commit"] = commit + ("+dirty" if dirty.stdout.strip() else "")
    return out


def epochs_done(run: Path) -> tuple[int, float]:
    """(epochs finished, seconds since training started) of a running run, from its results.csv."""
    f = run / "results.csv"
    if not f.is_file():
        return 0, 0.0
    rows = list(csv.reader(f.read_text().splitlines()))
    if len(rows) < 2:
        return 0, 0.0
    return int(float(rows[-1][0])), float(rows[-1][1])


def child_command(setup: Setup, arm: Arm, seed: int, device: str | None = None) -> list[str]:
    """The command that trains and scores one run (what ``--plan`` prints for a cluster's scheduler)."""
    cmd = [sys.executable, "-m", "ikd_yolo", "compare", f"folder={setup.folder}", f"run={arm.name}:{seed}"]
    return cmd + ([f"device={device}"] if device is not None else [])


def launch(setup: Setup, arm: Arm, seed: int, device: str) -> subprocess.Popen:
    """Start one run in a child process, its output in ``<run folder>.log``."""
    log = Path(str(setup.run_dir(arm, seed)) + ".log")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as f:
        return subprocess.Popen(child_command(setup, arm, seed, device), stdout=f, stderr=subprocess.STDOUT, env=env)
