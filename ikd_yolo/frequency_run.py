"""The frequency augmentation over a run: the one object the trainer drives, one call per event.

:class:`FrequencyAugmentation` is built from the run's :class:`~ikd_yolo.config.IKDConfig` alone (the transform's
settings, defaults and ranges are the config's: :mod:`ikd_yolo.frequency`). The trainer calls it when it builds the
training set (:meth:`~FrequencyAugmentation.attach`: the hook on its image loading), starts an epoch
(:meth:`~FrequencyAugmentation.start_epoch`: out of the pipeline after ``freq_epochs``), ends one
(:meth:`~FrequencyAugmentation.pop_epoch_stats`, then :meth:`~FrequencyAugmentation.metrics` for results.csv) and
reseeds the data pipeline of a resumed run (:meth:`~FrequencyAugmentation.reseed`).
"""

from __future__ import annotations

from .frequency import SourceImageFrequency

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

    def attach(self, dataset) -> None:
        """Hook the transform into a training ``dataset``'s image loading (until stopped)."""
        if self.ikd.freq_aug and not self.stopped:
            SourceImageFrequency.install(dataset, self.ikd)

    def start_epoch(self, active: bool, loader) -> bool:
        """The coming epoch; once it is no longer ``active``, take the transform out of the dataset of ``loader`` and
        restart its workers (they hold copies of the dataset). Returns whether it was taken out now."""
        if not self.ikd.freq_aug or self.stopped or active:
            return False
        self.stopped = True
        SourceImageFrequency.remove(loader.dataset)
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


def epoch_branch_fractions(dataset) -> dict[str, float] | None:
    """The fraction of training samples per branch since the last call (the transform's counters, shared with the
    dataloader workers, are reset), or None when no frequency transform is hooked into the dataset."""
    hook = SourceImageFrequency.installed(dataset)
    return None if hook is None else hook.transform.pop_branch_fractions()
