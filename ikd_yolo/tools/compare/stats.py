"""Paired statistics of a comparison: per-seed differences between two arms, their mean, a 95 % t interval and
the number of seeds won, and the one-line verdict drawn from them.

Arms are paired by seed: every arm of a seed starts from the same initial weights and sees the same data order
(as far as its own augmentations allow), so the per-seed differences cancel much of what a seed changes.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass


def t_quantile(df: int, level: float = 0.95) -> float:
    """Two-sided Student-t quantile for ``df`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, df))


def mean_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``values`` and its t interval (NaN bounds for fewer than two values)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = t_quantile(len(values) - 1, level) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


@dataclass
class Paired:
    """``arm - ref`` in mAP50-95 points (x100) over the seeds both ran."""

    arm: str
    ref: str
    seeds: list[int]
    per_seed: list[float]
    mean: float
    low: float
    high: float
    wins: int

    @property
    def n(self) -> int:
        return len(self.seeds)

    @property
    def shown(self) -> bool:
        """The interval lies above zero: the arm is measurably better than the reference."""
        return self.low > 0

    def interval(self) -> str:
        """``(95 % CI +0.8 … +3.0, 3/3 seeds)``, or ``(one seed)``."""
        if math.isnan(self.low):
            return f"({self.wins}/{self.n} seed)"
        return f"(95 % CI {self.low:+.2f} … {self.high:+.2f}, {self.wins}/{self.n} seeds)"

    def to_dict(self) -> dict:
        return asdict(self)


def paired(arm: str, scores: dict[int, float], ref: str, ref_scores: dict[int, float]) -> Paired | None:
    """Per-seed ``scores - ref_scores`` (mAP fractions in, points out) over the common seeds; None if there are none."""
    seeds = sorted(set(scores) & set(ref_scores))
    if not seeds:
        return None
    diffs = [100 * (scores[s] - ref_scores[s]) for s in seeds]
    mean, low, high = mean_interval(diffs)
    return Paired(arm, ref, seeds, diffs, mean, low, high, sum(d > 0 for d in diffs))


def verdict(p: Paired, time_ratio: float | None = None) -> str:
    """One line on ``p``: ``kd beats none by +1.9 (95 % CI +0.8 … +3.0, 3/3 seeds): keep it``."""
    cost = f", costs {time_ratio:.1f}× time" if time_ratio and time_ratio > 1.05 else ""
    if p.shown:
        return f"{p.arm} beats {p.ref} by {p.mean:+.2f} {p.interval()}: keep it{cost}"
    if p.high < 0:
        return f"{p.arm} loses to {p.ref} by {p.mean:+.2f} {p.interval()}: do not use it"
    return f"{p.arm} vs {p.ref} {p.mean:+.2f} {p.interval()}: not shown{cost}"


def recommendation(deltas: dict[str, Paired], means: dict[str, float]) -> str:
    """The closing line: the best arm whose interval against ``none`` lies above zero, or what to do instead."""
    better = [a for a, p in deltas.items() if p.shown]
    if better:
        best = max(better, key=lambda a: means[a])
        return f"recommendation: {best} (best mean of the arms shown to beat none)"
    if any(p.n < 3 for p in deltas.values()):
        return "recommendation: no arm is shown to beat none yet: run more seeds (seeds=5) before choosing"
    return "recommendation: no arm is shown to beat none on this data: train without a teacher, or try more seeds"
