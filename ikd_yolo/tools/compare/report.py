"""The report of a comparison, built from the finished runs' records: ``compare.json`` (for other tools),
``compare.md`` (the table and the verdicts), ``compare.png`` (per-seed points, paired lines, means with intervals).
The table, the JSON and the plot come from the same :func:`summary`, so they agree by construction."""

from __future__ import annotations

import datetime
import math
import platform
import statistics
from pathlib import Path

from .arms import Arm
from .runs import Setup, load_run, provenance
from .stats import mean_interval, paired, recommendation, verdict

METRICS = ("map50_95", "map50", "ap_small", "ap_medium", "ap_large")
REFS = ("none", "native")


def machine() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, {__import__('os').cpu_count()} CPU cores"
    return f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} CPU cores, no GPU"


def arm_entry(setup: Setup, arm: Arm) -> dict:
    """One arm's scores per seed (finished runs only), means, costs and run records."""
    records = [r for s in setup.seeds if (r := load_run(setup.run_dir(arm, s))) and setup.split in r["scores"]]
    entry = {"name": arm.name, "base": arm.base, "settings": arm.settings, "seeds": [r["seed"] for r in records]}
    for m in METRICS:
        entry[m] = [r["scores"][setup.split][m] for r in records]
    scores = entry["map50_95"]
    entry["mean"] = statistics.fmean(scores) if scores else math.nan
    entry["sd"] = statistics.stdev(scores) if len(scores) > 1 else math.nan
    entry["epoch_time_s"] = statistics.fmean(r["epoch_time_s"] for r in records) if records else math.nan
    entry["peak_mem_mb"] = statistics.fmean(r["peak_mem_mb"] for r in records) if records else math.nan
    entry["runs"] = [
        {k: r[k] for k in ("seed", "settings", "ikd_yolo")} | {"folder": str(setup.run_dir(arm, r["seed"]))}
        for r in records
    ]
    return entry


def by_seed(entry: dict) -> dict[int, float]:
    """An arm entry's mAP50-95 by seed."""
    return dict(zip(entry["seeds"], entry["map50_95"], strict=True))


def summary(setup: Setup, teacher: dict | None, command: str) -> dict:
    """Everything the report shows: per-arm entries, paired deltas against none and native, verdicts."""
    arms = [arm_entry(setup, a) for a in setup.arms]
    refs = {ref: next((e for e in arms if e["base"] == ref), None) for ref in REFS}  # native: e.g. native:dis=1
    for e in arms:
        for ref, r in refs.items():
            p = None if r is None or r is e else paired(e["name"], by_seed(e), r["name"], by_seed(r))
            e[f"vs_{ref}"] = p.to_dict() if p else None
        base = refs["none"]
        for cost in ("epoch_time", "peak_mem"):
            unit = "s" if cost == "epoch_time" else "mb"
            ratio = e[f"{cost}_{unit}"] / base[f"{cost}_{unit}"] if base else math.nan
            e[f"{cost}_ratio"] = ratio
    return {
        "command": command,
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "ikd_yolo": provenance(),
        "folder": str(setup.folder),
        "split": setup.split,
        "data": str(setup.train.get("data")),
        "model": str(setup.train.get("model")),
        "epochs": setup.train.get("epochs"),
        "teacher": teacher,
        "arms": arms,
        "verdicts": verdicts(arms),
    }


def verdicts(arms: list[dict]) -> list[str]:
    """One line per arm against none (and native), ikd against kd, then the recommendation."""
    from .stats import Paired

    by = {e["name"]: e for e in arms}
    lines, against_none = [], {}
    for e in arms:
        for ref in REFS:
            if e.get(f"vs_{ref}"):
                p = Paired(**e[f"vs_{ref}"])
                lines.append(verdict(p, e["epoch_time_ratio"] if ref == "none" else None))
                if ref == "none":
                    against_none[e["name"]] = p
    if "ikd" in by and "kd" in by and by["ikd"]["seeds"] and by["kd"]["seeds"]:
        ikd, kd = by["ikd"], by["kd"]
        p = paired("ikd", by_seed(ikd), "kd", by_seed(kd))
        lines.append(verdict(p, ikd["epoch_time_s"] / kd["epoch_time_s"]))
    if against_none:
        lines.append(recommendation(against_none, {a: by[a]["mean"] for a in against_none}))
    return lines


def _delta(d: dict | None) -> str:
    if not d:
        return "—"
    ci = "" if math.isnan(d["low"]) else f" ({d['low']:+.2f} … {d['high']:+.2f})"
    return f"**{d['mean']:+.2f}**{ci}, {d['wins']}/{len(d['seeds'])}"


def table(s: dict) -> str:
    """The markdown table of :func:`summary`'s arms (mAP in fractions, deltas in points x100 with 95 % intervals)."""
    head = (
        "| arm | seeds | mAP50-95 per seed | mean ± sd | Δ vs none (95 % CI), wins | Δ vs native (95 % CI), wins "
        "| mAP50 | AP S / M / L | epoch time × | peak mem × |"
    )
    lines = [head, "|" + "---|" * 10]
    for e in s["arms"]:
        sd = "" if math.isnan(e["sd"]) else f" ± {e['sd']:.4f}"
        size = " / ".join(f"{_mean(e[m]):.3f}" for m in ("ap_small", "ap_medium", "ap_large"))
        lines.append(
            f"| {e['name']} | {','.join(map(str, e['seeds']))} | {', '.join(f'{v:.4f}' for v in e['map50_95'])} "
            f"| {e['mean']:.4f}{sd} | {_delta(e['vs_none'])} | {_delta(e['vs_native'])} | {_mean(e['map50']):.4f} "
            f"| {size} | {e['epoch_time_ratio']:.2f} | {e['peak_mem_ratio']:.2f} |"
        )
    return "\n".join(lines)


def _mean(values: list[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return statistics.fmean(vals) if vals else math.nan


def markdown(s: dict) -> str:
    """The whole ``compare.md``: what was compared, where, the table and the verdicts."""
    t = s["teacher"]
    teacher = f"teacher `{t['weights']}` mAP50-95 {t['map50_95']:.4f}" if t else "no teacher"
    version = s["ikd_yolo"].get("commit", s["ikd_yolo"]["version"])
    head = [
        f"Command: `{s['command']}`  ",
        f"Machine: {s['machine']}; date {s['date']}; ikd_yolo {version}.  ",
        f"Data `{s['data']}`, scored on split `{s['split']}` from each run's last.pt; student `{s['model']}`, "
        f"{s['epochs']} epochs; {teacher}.",
        "",
    ]
    return "\n".join(head + [table(s), ""] + [f"- {line}" for line in s["verdicts"]]) + "\n"


def plot(s: dict, path: Path) -> dict:
    """Draw, per arm, each seed's mAP50-95 (a thin line per seed joins the arms) and the mean with its 95 % interval;
    return what was drawn (``points``: arm -> {seed: score}; ``means``: arm -> (mean, low, high))."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = s["arms"]
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(arms), 4.2))
    seeds = sorted({sd for e in arms for sd in e["seeds"]})
    for sd in seeds:
        xs = [i for i, e in enumerate(arms) if sd in e["seeds"]]
        ys = [arms[i]["map50_95"][arms[i]["seeds"].index(sd)] for i in xs]
        ax.plot(xs, ys, "-o", color="0.6", lw=0.8, ms=4, zorder=1)
    drawn = {"points": {e["name"]: by_seed(e) for e in arms}, "means": {}}
    for i, e in enumerate(arms):
        if not e["map50_95"]:
            continue
        mean, low, high = drawn["means"][e["name"]] = mean_interval(e["map50_95"])
        err = None if math.isnan(low) else [[mean - low], [high - mean]]
        ax.errorbar([i + 0.12], [mean], yerr=err, fmt="s", color="C3", capsize=4, zorder=2)
    ax.set_xticks(range(len(arms)), [e["name"] for e in arms], rotation=20)
    ax.set_ylabel(f"mAP50-95 on {s['split']}")
    ax.set_title("grey: one line per seed; red: mean with 95 % interval", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return drawn
