"""Rendering of the benchmark's results: the per-scale table of BENCHMARKS.md (paired by seed), the ablation
table of ``--set`` runs, and the marker-delimited update of BENCHMARKS.md."""

from __future__ import annotations

import json
import statistics

from common import RESULTS, ROOT


def paired(entry: dict, ref: dict | None) -> tuple[list[float], float] | None:
    """Per-seed differences ``entry - ref`` in mAP50-95 points over the seeds both have, and their mean."""
    if ref is None or entry is ref:
        return None
    theirs = dict(zip(ref["seeds"], ref["map50_95_per_seed"], strict=True))
    diffs = [
        100 * (v - theirs[sd]) for sd, v in zip(entry["seeds"], entry["map50_95_per_seed"], strict=True) if sd in theirs
    ]
    return (diffs, statistics.fmean(diffs)) if diffs else None


def markdown(scale: str, header: dict, entries: list[dict], teacher: dict) -> str:
    init, init_scores = header.get("student_init"), header.get("student_init_scores")
    start = "from scratch"
    if init:
        start = (
            f"pretrained by the benchmark for {init['epochs']} epochs on {init['n_train']} other generated images "
            f"(seed {init['seed']}; mAP50-95 {init_scores['map50_95']:.4f} on this val split before the runs below)"
        )
    by = {e["method"]: e for e in entries}
    lines = [
        f"Command: `{header['command']}`  ",
        f"Machine: {header['machine']}; date {header['date']}; commit {header['commit']}; "
        f"{header['wall_min']:.0f} min in all.  ",
        f"Setup: student `{header['student']}` {start}, {header['epochs']} epochs, imgsz {header['imgsz']}, "
        f"batch {header['batch']}; teacher `{header['teacher']}` (mAP50-95 {teacher['map50_95']:.4f}, "
        f"AP S/M/L {teacher['ap_small']:.3f}/{teacher['ap_medium']:.3f}/{teacher['ap_large']:.3f}); "
        f"data: {header['data']}.",
        "",
        "| method | seeds | mAP50-95 per seed | mean ± std | Δ vs baseline (per seed) | Δ vs native (per seed) "
        "| mAP50 | AP small | AP medium | AP large | epoch time × | peak mem × |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def delta(e, ref):
        d = paired(e, by.get(ref))
        if d is None:
            return "—"
        per = ", ".join(f"{v:+.2f}" for v in d[0])
        return f"**{d[1]:+.2f}** ({per})" if len(d[0]) > 1 else f"{d[1]:+.2f}"

    for e in entries:
        std = f" ± {e['map50_95_std']:.4f}" if len(e["seeds"]) > 1 else ""
        lines.append(
            f"| {e['method']} | {','.join(map(str, e['seeds']))} "
            f"| {', '.join(f'{v:.4f}' for v in e['map50_95_per_seed'])} | {e['map50_95']:.4f}{std} "
            f"| {delta(e, 'baseline')} | {delta(e, 'native')} "
            f"| {e['map50']:.4f} | {e['ap_small']:.4f} | {e['ap_medium']:.4f} | {e['ap_large']:.4f} "
            f"| {e.get('epoch_time_ratio', 1.0):.2f} | {e.get('peak_mem_ratio', 1.0):.2f} |"
        )
    lines.append("")
    lines.append(
        "Δ columns are mAP50-95 points (×100), paired by seed: the mean over the seeds both methods ran, then each"
        " seed's difference. On the CPU a training repeats exactly for a given seed, so the differences at one seed"
        " are paired. AP small is `nan` when the data holds no small objects."
    )
    return "\n".join(lines)


def ablation_table(scale: str) -> str:
    """Markdown table of every ``--set`` run of a scale (``results/<scale>-<tag>.json``) beside the scale's own run."""
    from ikd_yolo.config import KEYS

    ref = json.loads((RESULTS / f"{scale}.json").read_text())
    by = {e["method"]: e for e in ref["methods"]}

    def ref_mean(method: str, seeds: list[int]) -> float:
        """The default run's mean of ``method`` over the same seeds (paired: CPU runs repeat exactly per seed)."""
        per_seed = dict(zip(by[method]["seeds"], by[method]["map50_95_per_seed"], strict=True))
        if not all(s in per_seed for s in seeds):  # a seed the default run lacks: compare with its overall mean
            return by[method]["map50_95"]
        return statistics.fmean(per_seed[s] for s in seeds)

    lines = [
        f"Reference: the `{scale}` run above (native {by['native']['map50_95']:.4f} "
        f"± {by['native']['map50_95_std']:.4f},"
        f" ikd {by['ikd']['map50_95']:.4f} ± {by['ikd']['map50_95_std']:.4f}). Each row changes one setting (`--set`):"
        " an IKD key changes the IKD methods only (the baseline and native runs are reused), an Ultralytics train"
        " argument such as `dis` changes every method, native included. Deltas are paired: against the default"
        " run's mean over the same seeds.",
        "",
        "| setting | method | seeds | mAP50-95 (mean ± std) | Δ vs same method, defaults | Δ vs native (same setting) "
        "| AP medium | AP large "
        "| epoch time × | date | command |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in sorted(RESULTS.glob(f"{scale}-*.json")):
        run = json.loads(f.read_text())
        changed = run.get("ikd_overrides", {})
        setting = ", ".join(f"{k}={v}" for k, v in changed.items()) or f.stem
        touches_native = any(k not in KEYS for k in changed)  # an Ultralytics key: native was retrained with it
        for e in run["methods"]:
            if e["method"] == "baseline" or e["method"] not in by or (e["method"] == "native" and not touches_native):
                continue
            native = next((n for n in run["methods"] if n["method"] == "native"), None) if touches_native else None
            native_mean = native["map50_95"] if native else ref_mean("native", e["seeds"])
            std = f" ± {e['map50_95_std']:.4f}" if len(e["seeds"]) > 1 else ""
            lines.append(
                f"| {setting} | {e['method']} | {','.join(map(str, e['seeds']))} | {e['map50_95']:.4f}{std} "
                f"| {100 * (e['map50_95'] - ref_mean(e['method'], e['seeds'])):+.2f} "
                f"| {100 * (e['map50_95'] - native_mean):+.2f} | {e['ap_medium']:.4f} "
                f"| {e['ap_large']:.4f} | {e.get('epoch_time_ratio', float('nan')):.2f} | {run['date']} "
                f"| `{run['command']}` |"
            )
    return "\n".join(lines)


def update_benchmarks_md(scale: str, text: str) -> None:
    """Put ``text`` between the ``<!-- scale -->`` markers of BENCHMARKS.md (appending a section if absent)."""
    path = ROOT / "BENCHMARKS.md"
    doc = path.read_text() if path.exists() else "# Benchmarks\n"
    start, end = f"<!-- {scale} -->", f"<!-- /{scale} -->"
    block = f"{start}\n{text}\n{end}"
    if start in doc and end in doc:
        doc = doc[: doc.index(start)] + block + doc[doc.index(end) + len(end) :]
    else:
        title = (
            f"Ablations at scale `{scale[: -len('-ablations')]}`"
            if scale.endswith("-ablations")
            else f"Scale `{scale}`"
        )
        doc = doc.rstrip() + f"\n\n## {title}\n\n{block}\n"
    path.write_text(doc)


def tuning_table(folder=RESULTS / "tuning") -> str:
    """Markdown table of the recipe sweeps (``--methods baseline,kd --set ...`` runs kept in ``results/tuning``):
    each row one setting of the ``kd`` arm against the baseline of the same run, paired by seed."""
    lines = [
        "| setting (`--set`) | seeds | kd mAP50-95 per seed | baseline per seed | Δ kd − baseline | commit | code |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = []
    for f in sorted(folder.glob("*.json")):
        run = json.loads(f.read_text())
        by = {e["method"]: e for e in run["methods"]}
        if "kd" not in by or "baseline" not in by:
            continue
        d = paired(by["kd"], by["baseline"])
        setting = ", ".join(f"{k}={v}" for k, v in run.get("ikd_overrides", {}).items()) or "none (kd_balance=0.3)"
        rows.append((d[1], f"| {setting} | {','.join(map(str, by['kd']['seeds']))} "
                     f"| {', '.join(f'{v:.4f}' for v in by['kd']['map50_95_per_seed'])} "
                     f"| {', '.join(f'{v:.4f}' for v in by['baseline']['map50_95_per_seed'])} "
                     f"| {d[1]:+.2f} | {run['commit']} | {run.get('note', '')} |"))  # fmt: skip
    lines += [r for _, r in sorted(rows, key=lambda r: -r[0])]
    return "\n".join(lines)
