"""IKDTrainer: Ultralytics' DetectionTrainer running the distillation recipe and IKD.

The class reads top-down as the recipe: construction (inputs checked before any folder exists), the model, then
what happens at each epoch and batch. Each mechanism lives in its own module:

- settings (:mod:`ikd_yolo.config`) ride along as extra keys of ``self.args`` so that Ultralytics' multi-GPU
  launcher, which rebuilds the trainer from ``vars(args)`` in new processes, and ``resume`` both carry them;
- the teacher (``teacher=`` or Ultralytics' own ``distill_model=``) is loaded and checked (:mod:`ikd_yolo.teacher`)
  before anything is trained;
- the frequency augmentation (:mod:`ikd_yolo.frequency`) is hooked into the training dataset's image loading,
  before mosaic; the trainer drives it through one object (:class:`ikd_yolo.frequency_run.FrequencyAugmentation`),
  one call per event;
- the model is :class:`ikd_yolo.model.IKDDistillationModel`, also when resuming (Ultralytics would rebuild its base
  class there and silently drop the IKD loss); the trainer drives it through its per-batch ``set_iteration``,
  per-epoch ``start_epoch`` and ``pop_epoch_stats``;
- the schedule and the weight calibration are :mod:`ikd_yolo.schedule`; what the run logs is :mod:`ikd_yolo.run_log`.

The few overrides of Ultralytics' private methods sit together at the end of the class.
"""

from __future__ import annotations

import os
import time

import torch
from ultralytics.cfg import cfg2dict
from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.nn.distill_model import DistillationModel
from ultralytics.utils import DEFAULT_CFG, LOCAL_RANK, LOGGER, RANK, IterableSimpleNamespace
from ultralytics.utils.checks import check_imgsz
from ultralytics.utils.torch_utils import unwrap_model

from .checkpoint import (
    drop_ikd_state,
    restore,
    restore_kd_module,
    saving,
    strip_to_student,
    whole_files,
    wrapper_checkpoints,
)
from .config import KEYS, RETIRED_KEYS, default_settings
from .frequency_run import FrequencyAugmentation
from .model import KD_TERMS, IKDDistillationModel
from .preflight import Checked, normalize_overrides, preflight
from .run_log import (
    PREFIX,
    log_adversarial_switch,
    log_branch_fractions,
    log_frequency_off,
    log_settings,
    save_gains,
    teacher_freezing_held,
    warn_attack_stats,
    warn_dominant_terms,
    warn_idle_adversarial_term,
)
from .runs import discard_folders, folder_to_create, reseed_data_pipeline, resume_in_place
from .schedule import in_projector_warmup, kd_scale, kd_stop_epoch
from .teacher import check_teacher_data, check_teacher_student, load_teacher


class IKDTrainer(DetectionTrainer):
    """DetectionTrainer that distils a student from a teacher with IKD.

    Use it like any Ultralytics trainer; every Ultralytics train argument works unchanged, and the IKD keys of
    ``cfg/ikd.yaml`` are accepted too:

        >>> IKDTrainer(overrides={"data": "data.yaml", "model": "yolo11n.yaml", "teacher": "teacher.pt"}).train()
        >>> YOLO("yolo11n.yaml").train(trainer=IKDTrainer, data="data.yaml", teacher="teacher.pt", adv_steps=2)
    """

    def __init__(self, cfg=DEFAULT_CFG, overrides: dict | None = None, _callbacks=None):
        """Validate IKD keys and the teacher before Ultralytics creates the run folder or loads any model."""
        overrides = resume_in_place(normalize_overrides(overrides))
        # a new run loads and checks its inputs before Ultralytics creates the run folder; a resumed one loads its
        # teacher after Ultralytics has read the checkpoint's arguments, where the teacher path is stored
        checked = preflight(overrides)
        cfg = cfg2dict(cfg)
        cfg = {**default_settings(), **cfg}  # IKD keys become valid train arguments
        self._created = folder_to_create(cfg, overrides)
        try:
            super().__init__(cfg, overrides, _callbacks)
            self._init_ikd(checked)
        except BaseException:  # e.g. Ctrl-C once the run folder exists
            self.discard_unstarted_run()
            raise

    def _init_ikd(self, checked: Checked) -> None:
        """The IKD state, from what the preflight checked where it applies to the final arguments (a resumed run's
        come from its checkpoint)."""
        self.ikd = checked.config(vars(self.args))
        for key in RETIRED_KEYS:  # a run resumed from a checkpoint made before their removal; validated above
            vars(self.args).pop(key, None)
        self.teacher = checked.teacher if checked.teacher is not None else load_teacher(self.args.distill_model)
        if not checked.checked_data(self.data):
            check_teacher_data(self.teacher, self.data, source=f"teacher={self.args.distill_model}")
        self._student_checked = checked.checked_student(self.args.model)
        self.frequency = FrequencyAugmentation(self.ikd)
        self._batch_i = 0
        self._gains_logged = False
        self._warned_terms: set[str] = set()
        if LOCAL_RANK != -1 and "WORLD_SIZE" in os.environ and self.device.type not in {"cpu", "mps"}:
            # started by torchrun (or by Ultralytics' own launcher, which uses it too): the world is every process
            # of every node, not the length of this node's device list, which Ultralytics would take
            self.world_size = int(os.environ["WORLD_SIZE"])
        if RANK in {-1, 0}:
            log_settings(self.ikd, self.args.distill_model, self.save_dir)

    def setup_model(self):
        """Build (or, on resume, rebuild) the IKD wrapper around the student, after checking it against the teacher."""
        # a resumed run rebuilds Ultralytics' own wrapper first, which probes at imgsz (resume may override it)
        self.args.imgsz = check_imgsz(self.args.imgsz, stride=32, floor=32, max_dim=1)
        ckpt = super().setup_model()
        model = self.model
        # the wrapper probes both networks at args.imgsz; Ultralytics rounds it to the stride only later
        stride = max(int(getattr(model, "stride", torch.tensor([32])).max()), 32)
        self.args.imgsz = check_imgsz(self.args.imgsz, stride=stride, floor=stride, max_dim=1)
        if isinstance(model, IKDDistillationModel):
            return ckpt
        # Ultralytics built the student (from model=; from a run's checkpoint, of ikd_yolo's plain format), or its base
        # wrapper (from the pickled wrapper of the checkpoints of earlier versions)
        student = model.student_model if isinstance(model, DistillationModel) else model
        student.args = self.args
        if not self._student_checked:  # the preflight checked a new run's model= already
            check_teacher_student(self.teacher, student)
        self.model = IKDDistillationModel(teacher_model=self.teacher, student_model=student, ikd=self.ikd)
        return restore(self.model, ckpt, self.resume, self.args.model)  # the trained state of a run's checkpoint

    # ---- the recipe: what happens at each epoch and batch, driven from Ultralytics' callback events ------------------

    def run_callbacks(self, event: str):
        """Drive the IKD schedule and logging at epoch boundaries, then run the user's callbacks.

        Done here rather than by registering callbacks: registered callbacks are pickled into multi-GPU workers
        bound to this process's trainer.
        """
        if event == "on_train_epoch_start":
            self._on_epoch_start()
        elif event == "on_train_batch_start":
            self._on_batch_start()
        elif event == "on_train_epoch_end":
            self._on_epoch_end()
        super().run_callbacks(event)
        if event == "on_pretrain_routine_end":  # the end of Ultralytics' set-up, after the user's callbacks for it
            self._on_setup_end()

    def _on_setup_end(self) -> None:
        """The teacher's freezing in one log line, and a warning if the adversarial term would never act (the loader's
        batches per epoch are known now); with ``kd_labels`` on the teacher then refines the
        training set's labels once, in memory (under DDP each rank runs it on its share of the images and the ranks
        exchange the labels, so every rank's copy of the dataset is refined alike), the loader restarts so that its
        workers see them, and labels.jpg is drawn from them."""
        if self._teacher_frozen and RANK in {-1, 0}:
            LOGGER.info(f"{PREFIX}teacher frozen ({len(self._teacher_frozen)} parameter tensors)")
        if RANK in {-1, 0} and self.start_epoch == 0:
            on = min(self.adversarial_epochs(), self.kd_epochs())  # the epochs the adversarial term is on
            feature_term = unwrap_model(self.model).feature_term_on
            warn_idle_adversarial_term(self.ikd, self.epochs, on, len(self.train_loader), feature_term)
        if not self.refines_dataset():
            return
        start = time.time()
        stats = unwrap_model(self.model).refine_dataset_labels(
            self.train_loader.dataset,
            batch=self.batch_size,  # per rank
            workers=min(self.args.workers, 8),
            classes=self.args.classes,  # the labels of the other classes are dropped: no detection brings them back
        )
        self.train_loader.reset()
        if RANK in {-1, 0}:
            LOGGER.info(
                f"{PREFIX}kd_labels: the teacher refined {stats['refined']} of {stats['labels']} labels and added "
                f"{stats['added']} objects on {stats['images']} training images ({time.time() - start:.1f} s)"
            )
            if self.args.plots:
                super().plot_training_labels()  # labels.jpg: the labels the student trains on

    def refines_dataset(self) -> bool:
        """Whether the teacher refines the training set's labels before the first epoch (``kd_labels`` on)."""
        return self.ikd.kd_labels > 0

    def plot_training_labels(self):
        """Ultralytics' labels.jpg; with the refinement of the dataset's labels, drawn after it (``_on_setup_end``)."""
        if not self.refines_dataset():
            super().plot_training_labels()

    def kd_epochs(self) -> int:
        """Number of epochs, from the first, in which the KD terms act (all but the close_mosaic ones by default)."""
        return kd_stop_epoch(self.epochs, self.args.close_mosaic, self.ikd.kd_close_mosaic_off)

    def adversarial_epochs(self) -> int:
        """Number of epochs, from the first, during which the adversarial term is on."""
        return round(self.ikd.adv_epochs * self.epochs) if self.ikd.adv_aug else 0

    def frequency_epochs(self) -> int:
        """Number of epochs, from the first, with the frequency augmentation in the training pipeline."""
        return round(self.ikd.freq_epochs * self.epochs) if self.ikd.freq_aug else 0

    def _on_epoch_start(self) -> None:
        """Switch the adversarial term for this epoch (on for the first ``adversarial_epochs()``), and take the
        frequency augmentation out of the pipeline after ``frequency_epochs()``."""
        self._batch_i = 0
        frequency_on = self.epoch < self.frequency_epochs()
        if self.frequency.start_epoch(frequency_on, self.train_loader) and RANK in {-1, 0}:
            log_frequency_off(self.epoch)
        model = unwrap_model(self.model)
        active = self.epoch < self.adversarial_epochs()
        changed = active != model.adv_active or self.epoch == self.start_epoch
        if RANK in {-1, 0} and self.ikd.adv_aug and changed:
            log_adversarial_switch(active, self.epoch, self.ikd.kd_warmup_epochs)
        model.start_epoch(adv_active=active)

    def build_dataset(self, img_path: str, mode: str = "train", batch: int | None = None):
        """Ultralytics' dataset; the training set augments each source image as it loads it
        (:class:`ikd_yolo.frequency.SourceImageFrequency`), until ``frequency_epochs()``."""
        dataset = super().build_dataset(img_path, mode, batch)
        if mode == "train" and getattr(self, "frequency", None) is not None:
            self.frequency.attach(dataset)
        return dataset

    def _on_batch_start(self) -> None:
        """Tell the model where this batch sits in the KD schedule (projector warm-up, cosine scale, off)."""
        nb = max(1, len(self.train_loader))
        self._batch_i += 1
        progress = self.epoch + min(self._batch_i, nb) / nb
        scale = kd_scale(progress, self.kd_epochs(), self.ikd.kd_warmup_epochs, self.ikd.kd_final_scale)
        unwrap_model(self.model).set_iteration(scale, in_projector_warmup(progress, self.ikd.kd_warmup_epochs))

    def _on_epoch_end(self) -> None:
        """Log the epoch's augmentation branches, the calibrated gains (once), dominance warnings, skipped attacks."""
        if RANK not in {-1, 0}:
            return
        log_branch_fractions(self.frequency.pop_epoch_stats(self.train_loader.dataset))
        stats = unwrap_model(self.model).pop_epoch_stats()
        if not self._gains_logged and stats["gains"] is not None:
            self._gains_logged = True
            save_gains(stats["gains"], self.ikd, self.save_dir)
        if self.epoch >= 1 and self.tloss:
            warn_dominant_terms(self.tloss, KD_TERMS.values(), self.epoch, self._warned_terms, self.ikd.kd_balance)
        warn_attack_stats(stats)

    def save_metrics(self, metrics: dict):
        """Add the frequency-augmentation branch fractions of the epoch to results.csv."""
        super().save_metrics({**metrics, **self.frequency.metrics()})

    # ---- run folders: a run that fails before its first epoch leaves none behind -------------------------------------

    def train(self):
        """Ultralytics' training; a run that fails before its first epoch is saved leaves no run folder behind."""
        try:
            return super().train()
        except BaseException:
            self.discard_unstarted_run()
            raise

    def save_model(self):
        """Ultralytics' checkpoints, each loadable by plain Ultralytics (:mod:`ikd_yolo.checkpoint`); a ``save_period``
        snapshot (``epochN.pt``) is then stripped to the student, like the final best.pt and last.pt (a run resumes
        from its last.pt)."""
        with saving():
            saved = super().save_model()
            snapshot = self.wdir / f"epoch{self.epoch}.pt"
            if self.save_period > 0 and self.epoch % self.save_period == 0 and snapshot.is_file():
                strip_to_student(snapshot)
        return saved

    def final_eval(self):
        """Ultralytics' end of training (best.pt and last.pt stripped to the student, each file replaced whole, best.pt
        validated); the IKD state kept for a resume is then dropped from both."""
        with whole_files():
            super().final_eval()
        if RANK in {-1, 0}:
            for f in (self.last, self.best):
                drop_ikd_state(f)

    def discard_unstarted_run(self) -> None:
        """Remove the folders this run created if it holds no result yet (no results.csv, no .pt)."""
        if RANK in {-1, 0} and getattr(self, "save_dir", None) is not None:
            discard_folders(self.save_dir, self._created)

    # ---- overrides of Ultralytics internals (private methods, hence the pin ultralytics>=8.4.190,<8.5) ---------------

    def _setup_train(self):
        """Ultralytics' set-up, with its one log line per frozen teacher tensor held back (folded into one line when
        the set-up ends: ``_on_setup_end``)."""
        with teacher_freezing_held() as self._teacher_frozen:
            super()._setup_train()

    def resume_training(self, ckpt):
        """Ultralytics' resume, with the data pipeline's random streams moved on to the resumed epoch.

        Ultralytics seeds the dataloader (and its workers) the same way in every process, so a run resumed at epoch
        k would replay epoch 1's augmentations (mosaic, affine, the frequency branches). The streams are reseeded
        from the seed and the resumed epoch instead, and the loader restarted.
        """
        super().resume_training(ckpt)
        if self.start_epoch > 0 and getattr(self, "train_loader", None) is not None:
            seed = (self.args.seed + 1 + max(RANK, 0) + 1_000_003 * self.start_epoch) % 2**32
            reseed_data_pipeline(self.train_loader, seed, self.frequency)

    def _setup_ddp(self):
        """Ultralytics' DDP set-up, also for an external ``torchrun`` whose processes per node differ from ``device``.

        Ultralytics picks this process's GPU as ``device.split(",")[LOCAL_RANK]``. Under ``torchrun
        --nproc_per_node N`` with a ``device`` list that does not hold N GPUs (``device=0``, or none), that fails or
        puts every process on one GPU: such a run uses GPUs ``0..N-1`` of each node instead, and says so.
        """
        local = int(os.environ.get("LOCAL_WORLD_SIZE", 0))
        prefix, _, ids = self.args.device.rpartition(":")
        if local and len([d for d in ids.split(",") if d.strip()]) != local:
            device = (f"{prefix}:" if prefix else "") + ",".join(str(i) for i in range(local))
            if RANK in {-1, 0}:
                LOGGER.warning(
                    f"{PREFIX}device={self.args.device} does not list {local} devices for the {local} "
                    f"processes per node: using device={device} on each node"
                )
            self.args.device = device
        super()._setup_ddp()

    def _handle_nan_recovery(self, epoch):
        """Ultralytics' recovery from a NaN/Inf epoch, which reads last.pt as the whole wrapper here
        (:mod:`ikd_yolo.checkpoint`), plus the kd_loss module it does not know about.

        Ultralytics reloads only the student and the projector from ``last.pt``; MGD's and FGD's own blocks
        (``kd_module``) are reloaded here too, so that a recovered run does not keep the weights that diverged.
        """
        with wrapper_checkpoints(self.model):
            recovered = super()._handle_nan_recovery(epoch)
        model = unwrap_model(self.model)
        if recovered and getattr(model, "kd_module", None) is not None:
            restore_kd_module(model, self.last)
        return recovered

    def get_validator(self):
        """Ultralytics' validator re-checks args against its own keys: hand it args without the IKD keys."""
        args = self.args
        self.args = IterableSimpleNamespace(**{k: v for k, v in vars(args).items() if k not in KEYS})
        try:
            return super().get_validator()
        finally:
            self.args = args
