"""Run folders: which folder a run writes to, what a run that stops early leaves, and how to go on after it.

A run that fails before its first epoch is saved removes the folders it created (:func:`folder_to_create`,
:func:`discard_folders`); one stopped by Ctrl-C says where it stopped and the exact ``resume=`` command
(:func:`interrupted_message`); ``resume=`` of a run that never saved a checkpoint says so
(:func:`check_has_checkpoint`); a resumed run's data pipeline goes on with random streams of its own
(:func:`reseed_data_pipeline`).
"""

from __future__ import annotations

import random
import shlex
import shutil
from pathlib import Path

import numpy as np
import torch
from ultralytics.cfg import get_cfg, get_save_dir

from .errors import UserError


def folder_to_create(cfg: dict, overrides: dict) -> Path | None:
    """The highest folder that Ultralytics will create for these arguments (the run folder, or the project folder
    above it when that is missing too); None for a resumed run or one whose folder exists (``save_dir=``)."""
    if overrides.get("resume"):
        return None
    try:
        folder = Path(get_save_dir(get_cfg(cfg, overrides)))
    except Exception:  # whatever Ultralytics refuses here it refuses again, with its own message, in __init__
        return None
    if folder.exists():
        return None
    while not folder.parent.exists() and folder.parent != folder:
        folder = folder.parent
    return folder


def discard_folders(save_dir: Path, created: Path | None) -> None:
    """Remove ``save_dir`` if this run created it (``created`` is at or above it) and it holds no result yet (no
    results.csv, no .pt), then the folders above it up to ``created`` that are left empty."""
    save_dir = Path(save_dir)
    if created is None or not save_dir.is_dir() or not (save_dir == created or created in save_dir.parents):
        return
    if (save_dir / "results.csv").exists() or any(save_dir.rglob("*.pt")):
        return
    shutil.rmtree(save_dir, ignore_errors=True)
    for folder in save_dir.parents:
        if created not in folder.parents and folder != created:
            break
        try:
            folder.rmdir()  # only if empty: another run may have started in it meanwhile
        except OSError:
            break


def resume_in_place(overrides: dict) -> dict:
    """``resume=RUN/weights/last.pt`` continues in RUN, the folder that holds the checkpoint: Ultralytics would write
    to the folder recorded in it, another run's when RUN is a copy or has moved."""
    resume = overrides.get("resume")
    path = Path(str(resume)) if isinstance(resume, (str, Path)) else None
    if path is None or not path.is_file() or path.parent.name != "weights" or overrides.get("save_dir"):
        return overrides
    return {**overrides, "save_dir": str(path.resolve().parent.parent)}


def check_has_checkpoint(path: Path) -> None:
    """``resume=`` names a file that does not exist: if it is the last.pt of a run folder (one with args.yaml), that
    run stopped before it saved its first epoch; say so instead of "no such file"."""
    run = path.parent.parent
    if path.name == "last.pt" and path.parent.name == "weights" and (run / "args.yaml").is_file():
        raise UserError(
            f"resume={path}: the run in {run} never saved a checkpoint (it was stopped before the end of its first "
            f"epoch), so there is nothing to resume: start it again with the same arguments (in {run / 'args.yaml'}"
            "), after deleting that folder to reuse its name"
        )
    raise UserError(f"resume={path} does not exist: give the run's weights/last.pt")


def interrupted_message(trainer) -> str:
    """One line for Ctrl-C during ``trainer.train()``: the epoch reached and the exact command that resumes the run,
    or, before the first epoch was saved, that there is nothing to resume."""
    from ultralytics.utils.patches import torch_load

    if trainer is None:  # Ctrl-C while the run was being set up: its folder, if any, is removed
        return "interrupted before training started: nothing to resume; start the run again"
    last, total = Path(trainer.last), trainer.epochs
    reached = f"in epoch {min(getattr(trainer, 'epoch', 0) + 1, total)} of {total}"  # set when training starts
    try:
        saved = torch_load(last, map_location="cpu", weights_only=False).get("epoch", -1) if last.is_file() else None
    except Exception:  # a checkpoint cut short by the interrupt itself
        saved = None
    if saved is None:
        return f"interrupted {reached}, before the first epoch was saved: nothing to resume; start the run again"
    if saved < 0:  # stripped: training had ended
        best = trainer.best if Path(trainer.best).is_file() else last
        return f"interrupted after the last epoch: the trained student is {best}"
    done = f"epochs 1-{saved + 1} are" if saved > 0 else "epoch 1 is"
    return f"interrupted {reached}; {done} saved in {last}. Resume with: python run.py resume={shlex.quote(str(last))}"


def reseed_data_pipeline(loader, seed: int, frequency=None) -> None:
    """Reseed the random streams of a training ``loader``'s pipeline from ``seed`` (Python's, NumPy's, torch's, the
    loader's generator and, through ``frequency`` (a :class:`~ikd_yolo.frequency_run.FrequencyAugmentation`), the
    source-stage frequency augmentation's own) and restart it: a resumed run's streams (Ultralytics seeds them alike
    in every run, so a resumed run would replay epoch 1's augmentations)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if getattr(loader, "generator", None) is not None:
        loader.generator.manual_seed(seed)
    if frequency is not None:  # its own stream, seeded from random's (new) state
        frequency.reseed(loader.dataset)
    if hasattr(loader, "reset"):
        loader.reset()
