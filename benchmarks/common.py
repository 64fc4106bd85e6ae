"""What the benchmark scripts share: paths, the machine's name, peak memory, a fixed batch of generated images,
and cached plain-Ultralytics trainings (teachers, pretrained students)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
# this checkout's package, in the script and in the runs compare starts, whichever checkout pip installed
sys.path.insert(0, str(ROOT))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)

from ikd_yolo.tools.compare.report import machine  # noqa: E402, F401  (one machine name for compare and the scripts)

CACHE = ROOT / "benchmarks" / "cache" / "bench"
RESULTS = ROOT / "benchmarks" / "results"


def shown(path: str | Path) -> str:
    """A path as the results show it: relative to the repository when inside it."""
    return str(Path(path).relative_to(ROOT)) if Path(path).is_relative_to(ROOT) else str(path)


def cache_key(*settings) -> str:
    """Short hash of the settings that shape a cached artefact (a teacher, a pretrained student, the defaults)."""
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]


def peak_rss_mb() -> float:
    """Peak resident set of this process (Linux), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_memory_mb(device: str) -> float:
    """Peak CUDA memory allocated on a GPU run, else the peak resident set."""
    import torch

    if device != "cpu" and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return peak_rss_mb()


def image_batch(files: list[Path], device="cpu") -> dict:
    """Images (RGB, 0..1, all of one size) with their YOLO box labels, found the way Ultralytics finds them (a
    missing label file: no objects), as an Ultralytics training batch."""
    import cv2
    import numpy as np
    import torch
    from ultralytics.data.utils import img2label_paths

    imgs, idx, cls, boxes = [], [], [], []
    for i, (f, label) in enumerate(zip(files, img2label_paths([str(f) for f in files]), strict=True)):
        imgs.append(torch.from_numpy(cv2.imread(str(f))[..., ::-1].copy()).permute(2, 0, 1).float() / 255)
        lines = Path(label).read_text().split() if Path(label).is_file() else []
        for c, x, y, w, h in np.array(lines, dtype=float).reshape(-1, 5):
            idx.append(i), cls.append([c]), boxes.append([x, y, w, h])
    return {
        "img": torch.stack(imgs).to(device),
        "batch_idx": torch.tensor(idx, dtype=torch.float32, device=device),
        "cls": torch.tensor(cls, dtype=torch.float32, device=device).view(-1, 1),
        "bboxes": torch.tensor(boxes, dtype=torch.float32, device=device).view(-1, 4),
    }


def fixed_batch(data_yaml: Path, n: int = 16, device="cpu") -> dict:
    """The first ``n`` training images of a generated dataset (RGB, 0..1) with their labels, as an Ultralytics
    training batch."""
    return image_batch(sorted((Path(data_yaml).parent / "images" / "train").glob("*.png"))[:n], device)


class SnapshotReached(Exception):
    """Raised in a training's ``on_model_save`` callback once the epoch a caller needs is saved."""


def stop_after(epoch: int):
    """An ``on_model_save`` callback that stops a training once ``epoch`` (0-based) is saved, leaving its last.pt
    resumable; not at the last epoch, whose end Ultralytics must reach to finish the training."""

    def callback(trainer) -> None:
        if trainer.epoch >= epoch and trainer.epoch < trainer.epochs - 1:
            raise SnapshotReached(f"epoch{trainer.epoch}.pt saved")

    return callback


def train_cached(scale: str, name: str, model: str, data: Path, device: str, until: int | None = None,
                 **train_args) -> Path:  # fmt: skip
    """Train ``model`` with plain Ultralytics into ``CACHE/scale/name`` unless that training has finished before; an
    interrupted one resumes from its last.pt (trained again from the start if that file cannot be loaded; one that
    finished before its marker was written is marked). ``until``: a caller that needs only the ``save_period``
    snapshot of that epoch (0-based) stops the training there; a later call without it resumes and finishes it."""
    weights = CACHE / scale / name / "weights" / "last.pt"
    done = CACHE / scale / name / "finished"
    if done.exists() or (until is not None and (weights.parent / f"epoch{until}.pt").is_file()):
        return weights
    from ultralytics import YOLO

    epoch = saved_epoch(weights)
    if epoch != -1:  # -1: it finished before its marker was written
        if epoch is not None:
            print(f"resuming {name} from {weights} (epoch {epoch + 1} saved)", flush=True)
            yolo, args = YOLO(str(weights)), dict(resume=True)
        else:
            print(f"training {name} ({model}) for {train_args['epochs']} epochs on {data}", flush=True)
            yolo = YOLO(model)
            args = dict(data=str(data), device=device, project=str(CACHE / scale), name=name, exist_ok=True,
                        plots=False, seed=0, deterministic=False, workers=min(8, os.cpu_count() or 1),
                        **train_args)  # fmt: skip
        if until is not None:
            yolo.add_callback("on_model_save", stop_after(until))
        try:
            yolo.train(**args)
        except SnapshotReached as e:
            print(f"{name}: stopped at {e}; a later call resumes it", flush=True)
            return weights
    done.write_text(json.dumps({"model": model, "data": str(data), **train_args}, default=str))
    return weights


def saved_epoch(weights: Path) -> int | None:
    """The epoch (0-based) saved in a training's last.pt, -1 once that training has finished (the file stripped), or
    None (no such file, or one cut short by a kill: a plain Ultralytics run writes last.pt in place)."""
    import torch

    try:
        return torch.load(weights, map_location="cpu", weights_only=False)["epoch"] if weights.is_file() else None
    except Exception:
        return None
