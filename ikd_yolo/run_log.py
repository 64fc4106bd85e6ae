"""What an IKD run says in its log (rank 0), and the settings it writes next to its weights (``ikd.yaml``).

The trainer (:mod:`ikd_yolo.trainer`) decides when; each function here says one thing: the settings line, a warning
when the adversarial term has no batch to act in, the term switching on or off, Ultralytics' freezing lines for the
teacher folded into one, and what an epoch did (the frequency branches, the calibrated gains, a KD term dominating
the detection loss, attacks that were not finite).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import yaml
from ultralytics.utils import LOGGER, colorstr

from .schedule import first_kd_batch

PREFIX = colorstr("IKD: ")


def log_settings(ikd, teacher: str, save_dir: Path) -> None:
    """Write the run's IKD settings to ``ikd.yaml`` in ``save_dir`` and log them in one line."""
    (save_dir / "ikd.yaml").write_text(yaml.safe_dump(ikd.to_dict(), sort_keys=False))
    LOGGER.info(f"{PREFIX}teacher={teacher} " + ", ".join(f"{k}={v}" for k, v in ikd.to_dict().items()))


def warn_idle_adversarial_term(ikd, epochs: int, on: int, batches_per_epoch: int, feature_term: bool) -> None:
    """Say so when the adversarial term is on but a short run leaves it no batch to act in: it is on in the first
    ``on`` epochs (``adv_epochs``, before the close_mosaic ones), and the KD terms act only after the projector
    warm-up (``kd_warmup_epochs``) and the ``kd_balance`` calibration (``kd_balance_batches``)."""
    calibration = ikd.kd_balance_batches if ikd.kd_balance > 0 else 0
    first = first_kd_batch(batches_per_epoch, ikd.kd_warmup_epochs, calibration, feature_term)
    if ikd.adv_aug and ikd.adv_weight > 0 and on * batches_per_epoch < first:
        LOGGER.warning(
            f"{PREFIX}the adversarial term never acts in this {epochs}-epoch run: it is on for the first {on} "
            f"epoch(s), {on * batches_per_epoch} batch(es) (adv_epochs={ikd.adv_epochs:g}, before the close_mosaic "
            f"epochs), and the KD terms first act at batch {first}, after kd_warmup_epochs={ikd.kd_warmup_epochs:g}"
            f" and {calibration} kd_balance calibration batch(es): train longer, raise adv_epochs, or lower "
            "kd_warmup_epochs or kd_balance_batches"
        )


def log_adversarial_switch(active: bool, epoch: int, warmup: float) -> None:
    """The adversarial term on or off from ``epoch`` (0-based); held at 0 by the KD warm-up when it still runs."""
    ahead = active and epoch < warmup  # not after a resume past the warm-up
    held = f" (scaled to 0 in the first {warmup:g} epoch(s): kd_warmup_epochs)" if ahead else ""
    on = "on" if active else "off"
    LOGGER.info(f"{PREFIX}adversarial term {on} from epoch {epoch + 1}{held}")


@contextlib.contextmanager
def teacher_freezing_held():
    """Hold back Ultralytics' log line per frozen teacher tensor; yields the list the held records go to."""
    dropped = []

    def fold(record) -> bool:
        if str(record.msg).startswith("Freezing layer 'teacher_model."):
            dropped.append(record)
            return False
        return True

    LOGGER.addFilter(fold)
    try:
        yield dropped
    finally:
        LOGGER.removeFilter(fold)


def log_branch_fractions(fractions: dict[str, float] | None) -> None:
    """Log the frequency augmentation's branch fractions of the epoch (None: it did not run)."""
    if fractions is not None:
        LOGGER.info(
            f"{PREFIX}frequency augmentation this epoch: " + ", ".join(f"{k} {v:.1%}" for k, v in fractions.items())
        )


def log_frequency_off(epoch: int) -> None:
    """The frequency augmentation out of the training pipeline from ``epoch`` (0-based)."""
    LOGGER.info(f"{PREFIX}frequency augmentation off from epoch {epoch + 1}")


def save_gains(gains: dict[str, float], ikd, save_dir: Path) -> None:
    """Log the per-term gains calibrated by ``kd_balance`` and add them to ``ikd.yaml`` (``kd_gains``)."""
    if ikd.kd_balance > 0:
        LOGGER.info(
            f"{PREFIX}kd_balance={ikd.kd_balance} calibrated gains: "
            + ", ".join(f"{k} x{v:.4g}" for k, v in gains.items())
        )
    ikd_yaml = {**ikd.to_dict(), "kd_gains": gains}
    (save_dir / "ikd.yaml").write_text(yaml.safe_dump(ikd_yaml, sort_keys=False))


def warn_dominant_terms(tloss: dict, columns, epoch: int, warned: set[str], kd_balance: float) -> None:
    """Warn once per term (``warned`` keeps which) when a KD loss column of ``tloss`` is over twice the detection
    loss in ``epoch`` (0-based)."""
    det = sum(float(tloss[k]) for k in ("box_loss", "cls_loss", "dfl_loss") if k in tloss)
    for column in columns:
        value = float(tloss.get(column, 0.0))
        if column not in warned and det > 0 and value > 2 * det:
            warned.add(column)
            LOGGER.warning(
                f"{PREFIX}{column} {value:.3g} is {value / det:.1f}x the detection loss {det:.3g} in epoch "
                f"{epoch + 1}: distillation dominates training; "
                + ("lower kd_balance" if kd_balance > 0 else "lower its weight or set kd_balance=0.03")
            )


def warn_attack_stats(stats: dict) -> None:
    """Warn of the epoch's skipped adversarial terms and of the images whose attack gradient was not finite."""
    if stats["adv_skipped"]:
        LOGGER.warning(f"{PREFIX}adversarial term skipped on {stats['adv_skipped']} batch(es): not finite")
    if stats["attack_failures"]:
        LOGGER.warning(
            f"{PREFIX}the attack's gradient was not finite on {stats['attack_failures']} image(s) this epoch: "
            "they were used unperturbed"
        )
