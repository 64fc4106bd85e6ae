"""Paired, per-seed differences between benchmark arms stored in different result files.

    python benchmarks/paired.py --ref full.json:kd --ref full.json:ikd full-adv_bnjoint.json:ikd full-grid.json:kd+adv

Each ``FILE:METHOD`` names one arm of a results json of the earlier rounds under ``benchmarks/results`` (the format
``run_benchmark.py`` wrote before ``compare``; today's results are compare.json objects, which carry their own paired
intervals). For every arm the script prints a markdown row: its per-seed scores and mean, then for each ``--ref`` arm
the mean difference in mAP50-95 points (x100) over the seeds both ran, each seed's difference and how many are
positive, COCO AP by object size, and the arm's epoch time as a ratio to its own run's baseline. On the CPU a
training repeats exactly for a given seed, so differences at one seed are paired across runs made at different
commits, as long as the arms' code paths did not change in between (which is what a row's commit column lets a
reader check).
"""

from __future__ import annotations

import argparse
import json
import statistics

from common import RESULTS


def paired(entry: dict, ref: dict | None) -> tuple[list[float], float] | None:
    """Per-seed differences ``entry - ref`` in mAP50-95 points over the seeds both have, and their mean."""
    if ref is None or entry is ref:
        return None
    theirs = dict(zip(ref["seeds"], ref["map50_95_per_seed"], strict=True))
    diffs = [
        100 * (v - theirs[sd]) for sd, v in zip(entry["seeds"], entry["map50_95_per_seed"], strict=True) if sd in theirs
    ]
    return (diffs, statistics.fmean(diffs)) if diffs else None


def one_arm(name: str, method: str) -> tuple[dict, dict]:
    """The run's json in ``RESULTS / name`` and its entry for ``method``."""
    path = RESULTS / name
    run = json.loads(path.read_text())
    entry = next((e for e in run["methods"] if e["method"] == method), None)
    if entry is None:
        raise SystemExit(f"{path} has no method {method!r} (it has {[e['method'] for e in run['methods']]})")
    return run, entry


def arm(spec: str) -> tuple[str, dict, dict]:
    """``FILE:METHOD`` -> (label, the run's json, the method's entry). ``FILE1+FILE2:METHOD`` joins the seeds of the
    same method in several runs (a seed in two of them is taken from the first): the per-seed scores and their
    mean, and the AP by size and the epoch-time ratio as the runs' means weighted by their seeds."""
    name, _, method = spec.rpartition(":")
    parts = [one_arm(n, method) for n in name.split("+")]
    if len(parts) == 1:
        return f"{name}:{method}", *parts[0]
    scores, weights = {}, []
    for _, e in parts:
        new = {sd: v for sd, v in zip(e["seeds"], e["map50_95_per_seed"], strict=True) if sd not in scores}
        scores.update(new)
        weights.append(len(new))
    seeds = sorted(scores)

    def weighted(key):
        return sum(e.get(key, float("nan")) * w for (_, e), w in zip(parts, weights, strict=True)) / sum(weights)

    entry = {
        "method": method,
        "seeds": seeds,
        "map50_95_per_seed": [scores[sd] for sd in seeds],
        "map50_95": statistics.fmean(scores.values()),
        **{k: weighted(k) for k in ("ap_small", "ap_medium", "ap_large", "epoch_time_ratio")},
    }
    run = {
        "commit": "+".join(dict.fromkeys(r["commit"] for r, _ in parts)),
        "ikd_overrides": parts[0][0].get("ikd_overrides", {}),
    }
    return f"{name}:{method}", run, entry


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("arms", nargs="+", metavar="FILE:METHOD")
    p.add_argument("--ref", action="append", required=True, metavar="FILE:METHOD", help="arm(s) to difference against")
    a = p.parse_args()
    refs = [arm(r) for r in a.ref]
    head = "| arm | settings | commit | per seed | mean | " + " | ".join(f"Δ vs {r[0]}" for r in refs)
    head += " | AP small / medium / large | epoch × |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for spec in a.arms:
        label, run, e = arm(spec)
        cells = []
        for _, _, ref in refs:
            diffs = paired(e, ref)
            if diffs is None:
                cells.append("—")
                continue
            per_seed, mean = diffs
            positive = sum(d > 0 for d in per_seed)
            seeds = ", ".join(f"{d:+.2f}" for d in per_seed)
            spread = f"; sd {statistics.stdev(per_seed):.2f}" if len(per_seed) > 1 else ""
            cells.append(f"**{mean:+.2f}** ({seeds}; {positive}/{len(per_seed)} > 0{spread})")
        settings = ", ".join(f"{k}={v}" for k, v in run.get("ikd_overrides", {}).items()) or "defaults"
        scores = ", ".join(f"{v:.4f}" for v in e["map50_95_per_seed"])
        if len(e["map50_95_per_seed"]) > 1:
            scores += f" (sd {statistics.stdev(e['map50_95_per_seed']):.4f})"
        print(
            f"| {label} | {settings} | {run['commit']} | {scores} | {e['map50_95']:.4f} | {' | '.join(cells)} "
            f"| {e['ap_small']:.3f} / {e['ap_medium']:.3f} / {e['ap_large']:.3f} "
            f"| {e.get('epoch_time_ratio', float('nan')):.2f} |"
        )


if __name__ == "__main__":
    main()
