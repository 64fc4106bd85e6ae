"""The probe's report: retention, the recommendation for the frequency augmentation, the table and the plot."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .filters import KINDS

SIZES = ("small", "medium", "large")
MARGIN = 0.05


def _fmt(x: float, pct: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{100 * x:.0f}%" if pct else f"{x:.3f}"


def retention(rows: list[dict], model: str, size: str, kind: str) -> float:
    """Mean over radii of AP(model, size, kind, r) / AP(model, size, unfiltered); nan when there is no evidence."""
    key = f"ap_{size}" if size in SIZES else size
    base = [r[key] for r in rows if r["model"] == model and r["filter"] == "none"]
    if not base or not base[0] > 0:  # nan or 0: no evidence
        return float("nan")
    vals = [r[key] / base[0] for r in rows if r["model"] == model and r["filter"] == kind and not math.isnan(r[key])]
    return float(np.mean(vals)) if vals else float("nan")


def recommend(rows: list[dict], small_area: float, medium_area: float) -> list[str]:
    """The recommendation lines (rules in the module docstring)."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    ref = "teacher" if "teacher" in models else models[0]
    lines = []
    # noise branch: small objects, high frequencies
    if "teacher" in models and "student" in models:
        t, s = retention(rows, "teacher", "small", "high"), retention(rows, "student", "small", "high")
        detail = f"small-object AP kept under high-pass: teacher {_fmt(t, True)}, student {_fmt(s, True)}"
        if math.isnan(t) or math.isnan(s):
            lines.append(f"noise branch: no evidence ({detail}; needs small objects both models detect unfiltered)")
        elif t - s >= MARGIN:
            lines.append(f"noise branch: SUPPORTED ({detail}): the teacher reads high-frequency cues the student lacks")
        else:
            lines.append(f"noise branch: not supported ({detail}): no high-frequency advantage of the teacher")
    else:
        hi, lo = retention(rows, ref, "small", "high"), retention(rows, ref, "small", "low")
        detail = f"small-object AP kept: high-pass {_fmt(hi, True)}, low-pass {_fmt(lo, True)}"
        if math.isnan(hi) or math.isnan(lo):
            lines.append(f"noise branch: no evidence ({detail})")
        else:
            verdict = "SUPPORTED" if hi - lo >= MARGIN else "not supported"
            lines.append(f"noise branch: {verdict} ({detail}; give teacher= to compare with a teacher)")
    # crop branch: large (else medium) objects, low frequencies
    size = "large" if not math.isnan(retention(rows, ref, "large", "low")) else "medium"
    lo, hi = retention(rows, ref, size, "low"), retention(rows, ref, size, "high")
    detail = f"{ref} {size}-object AP kept: low-pass {_fmt(lo, True)}, high-pass {_fmt(hi, True)}"
    if math.isnan(lo) or math.isnan(hi):
        lines.append(f"crop branch: no evidence ({detail})")
    elif lo - hi >= MARGIN:
        lines.append(f"crop branch: SUPPORTED ({detail}): {size} objects depend on low frequencies")
    else:
        lines.append(f"crop branch: not supported ({detail})")
    # size threshold
    dep = {s: retention(rows, ref, s, "high") - retention(rows, ref, s, "low") for s in ("small", "medium")}
    if dep["small"] > 0 and dep["medium"] > 0:
        lines.append(
            f"size threshold: freq_small_area={medium_area:g} (medium objects, like small ones, rely more on "
            "high than on low frequencies)"
        )
    else:
        if math.isnan(dep["small"]):
            why = "no evidence for small objects"
        elif dep["small"] <= 0:
            why = "even small objects keep no more AP under high-pass than under low-pass"
        elif math.isnan(dep["medium"]):
            why = "no evidence for medium objects"
        else:
            why = "medium objects keep more AP under low-pass than under high-pass"
        lines.append(f"size threshold: freq_small_area={small_area:g} ({why})")
    return lines


def table(rows: list[dict]) -> str:
    """The probe's figures as an aligned text table."""
    head = f"{'model':<10} {'filter':<6} {'radius':>6} {'mAP50-95':>9} {'AP_small':>9} {'AP_medium':>9} {'AP_large':>9}"
    out = [head]
    for r in rows:
        radius = "-" if r["radius"] is None else f"{r['radius']:g}"
        out.append(
            f"{r['model']:<10} {r['filter']:<6} {radius:>6} {_fmt(r['map50_95']):>9} {_fmt(r['ap_small']):>9} "
            f"{_fmt(r['ap_medium']):>9} {_fmt(r['ap_large']):>9}"
        )
    return "\n".join(out)


def plot(rows: list[dict], path: Path, filter: str = "ideal") -> Path:
    """``probe.png``: AP against cut-off radius, a low-pass and a high-pass panel, unfiltered AP dotted."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    colors = {"map50_95": "black", "ap_small": "tab:blue", "ap_medium": "tab:orange", "ap_large": "tab:green"}
    labels = {"map50_95": "all (mAP50-95)", "ap_small": "small", "ap_medium": "medium", "ap_large": "large"}
    models = list(dict.fromkeys(r["model"] for r in rows))
    styles = dict(zip(models, [("-", "o"), ("--", "s"), (":", "^")], strict=False))  # up to 3 models
    fig = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, kind in zip(axes, KINDS, strict=True):
        for m in models:
            pts = sorted((r["radius"], r) for r in rows if r["model"] == m and r["filter"] == kind)
            base = next((r for r in rows if r["model"] == m and r["filter"] == "none"), None)
            ls, marker = styles.get(m, ("-", "o"))
            for key, color in colors.items():
                xs = [x for x, r in pts if not math.isnan(r[key])]
                ys = [r[key] for _, r in pts if not math.isnan(r[key])]
                if xs:
                    ax.plot(xs, ys, ls, marker=marker, color=color, ms=4, label=f"{m}: {labels[key]}")
                if base is not None and not math.isnan(base[key]):
                    ax.axhline(base[key], color=color, ls=ls, lw=0.8, alpha=0.35)
        ax.set_xscale("log", base=2)
        radii = sorted({r["radius"] for r in rows if r["radius"] is not None})
        ax.set_xticks(radii, [f"{x:g}" for x in radii])
        ax.set_title(f"{kind}-pass ({filter}): keeps {'<=' if kind == 'low' else '>'} radius")
        ax.set_xlabel("cut-off radius (cycles per image side)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("AP50-95 (faint lines: unfiltered)")
    axes[0].set_ylim(0, 1)
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    fig.savefig(path)
    return path
