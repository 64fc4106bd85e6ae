"""Checkpoints that plain Ultralytics loads, at every moment of a run.

Ultralytics' ``save_model`` pickles the EMA of the model it trains, here the IKD wrapper
(:class:`~ikd_yolo.model.IKDDistillationModel`): the last.pt, best.pt and epochN.pt of a running or interrupted run
would need ikd_yolo to load. In the files this run writes, ``"ema"`` is the EMA's student alone (a plain
``DetectionModel``, what ``strip_optimizer`` keeps of a distillation run at its end) and the wrapper's other trained
state (the projector, ``kd_module``, the calibrated ``kd_gain`` and ``kd_calibrated``) sits next to it under
``"ikd_state"``, as tensors by state_dict key, in the precision Ultralytics saves the EMA in. The IKD settings are in
``"train_args"`` and the phase follows from ``"epoch"``, as before.

Ultralytics builds that dict and reads it back inline (``save_model``, ``_handle_nan_recovery``); the context
managers here change it at the one call where it is written or read, and leave the rest of those methods to
Ultralytics. A resume puts the two parts back together with :func:`wrapper_checkpoint`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path

import torch
from torch import nn
from ultralytics.nn.distill_model import DistillationModel
from ultralytics.utils.patches import torch_load
from ultralytics.utils.torch_utils import ModelEMA, strip_optimizer

from .errors import UserError

IKD_STATE = "ikd_state"
STUDENT = "student_model."


def split_wrapper(wrapper: DistillationModel) -> tuple[nn.Module, dict]:
    """The student of a wrapper about to be serialised (Ultralytics' own copy), without the wrapper's feature hooks,
    and the wrapper's other state by state_dict key (its teacher is not in the EMA)."""
    state = {k: v for k, v in wrapper.state_dict().items() if not k.startswith((STUDENT, "teacher_model."))}
    wrapper._remove_feature_hooks()
    return wrapper.student_model, state


@contextlib.contextmanager
def plain_checkpoints():
    """While Ultralytics' ``save_model`` runs: the checkpoint dict it saves holds the student as ``"ema"`` and the IKD
    state under ``"ikd_state"`` (its one ``torch.save`` call is wrapped; any other object is saved as given)."""
    real = torch.save

    def save(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and isinstance(obj.get("ema"), DistillationModel):
            student, state = split_wrapper(obj["ema"])
            obj = {**obj, "ema": student, IKD_STATE: state}
        return real(obj, f, *args, **kwargs)

    torch.save = save
    try:
        yield
    finally:
        torch.save = real


@contextlib.contextmanager
def saving():
    """Around Ultralytics' ``save_model``: plain checkpoints (:func:`plain_checkpoints`), written whole even when
    Ctrl-C comes meanwhile (:func:`deferred_interrupt`) or the process is killed (:func:`whole_files`)."""
    with deferred_interrupt(), whole_files(), plain_checkpoints():
        yield


def replace_whole(path: str | os.PathLike, write) -> None:
    """``write(tmp)`` to a sibling of ``path``, then renamed over it in one step: a process killed in the middle of
    the write leaves ``path`` as it was (only the hidden ``.NAME.partial`` is cut short)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    write(tmp)
    os.replace(tmp, path)


@contextlib.contextmanager
def whole_files():
    """While Ultralytics writes or rewrites checkpoints (``save_model``'s ``Path.write_bytes`` of last.pt, best.pt
    and epochN.pt; ``strip_optimizer``'s ``torch.save`` to a path): each .pt file is replaced whole
    (:func:`replace_whole`), never truncated by a kill that lands in the middle of the write."""
    real_save, real_write = torch.save, Path.write_bytes

    def save(obj, f, *args, **kwargs):
        if not isinstance(f, (str, os.PathLike)):
            return real_save(obj, f, *args, **kwargs)
        return replace_whole(f, lambda tmp: real_save(obj, tmp, *args, **kwargs))

    def write_bytes(self: Path, data) -> int:
        if self.suffix != ".pt":
            return real_write(self, data)
        replace_whole(self, lambda tmp: real_write(tmp, data))
        return len(data)

    torch.save, Path.write_bytes = save, write_bytes
    try:
        yield
    finally:
        torch.save, Path.write_bytes = real_save, real_write


@contextlib.contextmanager
def deferred_interrupt():
    """Ctrl-C while checkpoints are written takes effect once they are written: a KeyboardInterrupt in the middle of
    a write would leave a truncated last.pt, the run's only checkpoint."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda *sig: caught.append(sig))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught and callable(previous):
            previous(*caught[0])  # Python's default handler raises KeyboardInterrupt


def wrapper_state(ckpt: dict) -> dict | None:
    """The trained state of an IKD run's checkpoint by the wrapper's state_dict keys, in fp32: from the student and
    ``"ikd_state"``, or from the pickled wrapper that ikd_yolo wrote before; None for a plain model's checkpoint."""
    model = ckpt.get("ema") or ckpt.get("model")
    if isinstance(model, DistillationModel):
        return model.float().state_dict()
    if ckpt.get(IKD_STATE) is None or model is None:
        return None
    state = {STUDENT + k: v for k, v in model.float().state_dict().items()}
    state.update({k: v.float() if v.is_floating_point() else v for k, v in ckpt[IKD_STATE].items()})
    return state


def restore(model: nn.Module, ckpt: dict | None, resume: bool, source) -> dict | None:
    """Load the trained state of an IKD run's checkpoint (student, projector, gains, ...) into the IKD wrapper
    ``model``; return ``ckpt``, for a resume with its ``"ema"`` as Ultralytics' resume reads it. A checkpoint of a
    plain model (no IKD state) is returned as it is."""
    saved = wrapper_state(ckpt) if ckpt is not None else None
    if saved is None:
        return ckpt
    missing = [k for k in model.state_dict() if not k.startswith("teacher_model.") and k not in saved]
    if missing:
        raise UserError(f"{source} lacks IKD state {missing[:5]}: it was not saved by this version of ikd_yolo")
    model.load_state_dict(saved, strict=False)
    return wrapper_checkpoint(ckpt, model) if resume else ckpt


def restore_kd_module(model: nn.Module, path: Path) -> None:
    """Reload the kd_loss module (MGD's, FGD's blocks) of the IKD wrapper ``model`` from the checkpoint ``path``."""
    saved = wrapper_state(torch_load(path, map_location="cpu", weights_only=False)) or {}
    model.kd_module.load_state_dict({k[10:]: v for k, v in saved.items() if k.startswith("kd_module.")})


def wrapper_checkpoint(ckpt: dict, model: nn.Module) -> dict:
    """``ckpt`` with ``"ema"`` the IKD wrapper again, as Ultralytics' resume and NaN recovery read it: Ultralytics'
    EMA copy of ``model`` (the live wrapper; the copy drops the teacher) holding the saved state."""
    state = wrapper_state(ckpt)
    if state is None or isinstance(ckpt.get("ema"), DistillationModel):
        return ckpt
    ema = ModelEMA(model).ema
    ema.load_state_dict(state)
    return {**ckpt, "ema": ema}


@contextlib.contextmanager
def wrapper_checkpoints(model: nn.Module):
    """While Ultralytics' trainer reads a checkpoint of this run (``load_checkpoint`` of
    ``ultralytics.engine.trainer``): its ``"ema"`` is the IKD wrapper (:func:`wrapper_checkpoint`)."""
    import ultralytics.engine.trainer as engine

    real = engine.load_checkpoint

    def load(*args, **kwargs):
        weights, ckpt = real(*args, **kwargs)
        return weights, wrapper_checkpoint(ckpt, model)

    engine.load_checkpoint = load
    try:
        yield
    finally:
        engine.load_checkpoint = real


def strip_to_student(path: Path, updates: dict | None = None) -> None:
    """Ultralytics' ``strip_optimizer`` (the student alone, no training state), then the IKD state dropped."""
    strip_optimizer(path, updates=updates)
    drop_ikd_state(path)


def drop_ikd_state(path: Path) -> None:
    """Remove the IKD state from a checkpoint that no longer resumes (stripped by ``strip_optimizer``: a finished run's
    best.pt and last.pt, an epochN.pt snapshot), so that it holds the student alone, as a plain training's."""
    from ultralytics.utils.patches import torch_save

    if not Path(path).is_file():
        return
    ckpt = torch_load(path, map_location="cpu", weights_only=False)
    if isinstance(ckpt, dict) and IKD_STATE in ckpt:
        del ckpt[IKD_STATE]
        replace_whole(path, lambda tmp: torch_save(ckpt, tmp))
