"""The frequency augmentation over a run: the one object the trainer drives, one call per event.

:class:`FrequencyAugmentation` is built from the run's :class:`~ikd_yolo.config.IKDConfig` alone (the transform's
settings, defaults and ranges are the config's: :mod:`ikd_yolo.frequency`). The trainer calls it when it sets up
its arguments (:meth:`~FrequencyAugmentation.augmentations`, ``freq_stage=sample``: Ultralytics' albumentations
list), builds the training set (:meth:`~FrequencyAugmentation.attach`, ``freq_stage=source``: the hook on its image
loading), starts an epoch (:meth:`~FrequencyAugmentation.start_epoch`: out of the pipeline after ``freq_epochs``),
ends one (:meth:`~FrequencyAugmentation.pop_epoch_stats`, then :meth:`~FrequencyAugmentation.metrics` for
results.csv) and reseeds the data pipeline of a resumed run (:meth:`~FrequencyAugmentation.reseed`).
"""

from __future__ import annotations

from copy import copy
from dataclasses import replace

from .frequency import SizeAwareFrequencyAug, SourceImageFrequency, build_transform

COLUMNS = ("noise", "crop")  # the branches results.csv reports, as freq/noise and freq/crop


class FrequencyAugmentation:
    """The run's frequency augmentation, from set-up to the epoch it is taken out of the training pipeline.

    Attributes:
        ikd (IKDConfig): The run's settings (``freq_*``).
        stopped (bool): Whether it has been taken out of the pipeline (after ``freq_epochs``).
        fractions (dict): The last epoch's fraction of samples per branch (empty when it did not run).
    """

    def __init__(self, ikd):
        self.ikd = ikd
        self.stopped = False
        self.fractions: dict[str, float] = {}

    def augmentations(self, current: list | None) -> list:
        """``args.augmentations`` with the transform appended (``freq_stage=sample``) or left out (see
        :func:`frequency_augmentations`)."""
        return frequency_augmentations(current, replace(self.ikd, freq_aug=False) if self.stopped else self.ikd)

    def attach(self, dataset) -> None:
        """Hook the transform into a training ``dataset``'s image loading (``freq_stage=source``, until stopped)."""
        if self.ikd.freq_aug and self.ikd.freq_stage == "source" and not self.stopped:
            SourceImageFrequency.install(dataset, self.ikd)

    def start_epoch(self, active: bool, args, loader) -> bool:
        """The coming epoch; once it is no longer ``active``, take the transform out of ``args.augmentations`` (so a
        later ``close_mosaic`` rebuild leaves it out too) and out of the running pipeline of ``loader`` (rebuilt,
        restarted). Returns whether it was taken out now."""
        if not self.ikd.freq_aug or self.stopped or active:
            return False
        self.stopped = True
        args.augmentations = self.augmentations(args.augmentations)
        dataset = loader.dataset
        SourceImageFrequency.remove(dataset)
        hyp = copy(args)
        if not getattr(dataset, "mosaic", True):  # mosaic already closed: rebuild as close_mosaic does
            hyp.mosaic = hyp.copy_paste = hyp.mixup = hyp.cutmix = 0.0
        dataset.transforms = dataset.build_transforms(hyp)
        loader.reset()
        return True

    def pop_epoch_stats(self, dataset) -> dict[str, float] | None:
        """The epoch's fraction of training samples per branch (the counters are reset), kept for :meth:`metrics`;
        None when ``dataset``'s pipeline holds no frequency transform."""
        fractions = epoch_branch_fractions(dataset)
        self.fractions = fractions or {}
        return fractions

    def metrics(self) -> dict[str, float]:
        """The results.csv columns of the last epoch's branch fractions (none without the augmentation)."""
        if not self.ikd.freq_aug:
            return {}
        return {f"freq/{k}": self.fractions.get(k, 0.0) for k in COLUMNS}

    def reseed(self, dataset) -> None:
        """A resumed run reseeded Python's ``random``: the source-stage hook's own stream is seeded again from it."""
        hook = SourceImageFrequency.installed(dataset)
        if hook is not None:
            hook.reset_stream()


def frequency_augmentations(current: list | None, ikd) -> list:
    """Ultralytics' albumentations list with IKD's frequency transform appended (as ``A.to_dict`` dicts).

    ``ikd`` is the run's :class:`~ikd_yolo.config.IKDConfig`; ``current`` is ``args.augmentations``: None means
    Ultralytics' default list, which is taken from Ultralytics itself so that it stays whatever the installed
    version uses. An IKD transform already in the list (a resumed or
    multi-GPU-rebuilt run) is replaced, so the transform is never applied twice.
    """
    import albumentations as A
    from ultralytics.data.augment import Albumentations

    if current is None:
        current = list(Albumentations(p=1.0).transform.transforms)
    name = SizeAwareFrequencyAug.get_class_fullname()
    kept = [t if isinstance(t, dict) else A.to_dict(t) for t in current]
    kept = [t for t in kept if t.get("transform", {}).get("__class_fullname__") != name]
    if ikd.freq_aug and ikd.freq_stage == "sample":
        kept.append(A.to_dict(build_transform(ikd)))
    return kept


def epoch_branch_fractions(dataset) -> dict[str, float] | None:
    """The fraction of training samples per branch since the last call (the transform's counters, shared with the
    dataloader workers, are reset), or None when the dataset's pipeline holds no frequency transform."""
    hook = SourceImageFrequency.installed(dataset)
    if hook is not None:
        return hook.transform.pop_branch_fractions()
    stack = [dataset.transforms]
    while stack:
        t = stack.pop()
        if isinstance(t, SizeAwareFrequencyAug):
            return t.pop_branch_fractions()
        stack.extend(getattr(t, "transforms", []) or [])
        if getattr(t, "transform", None) is not None:
            stack.append(t.transform)
    return None
