"""A benchmark's results from its trainings' logs, for a run whose final scoring step did not run.

    python benchmarks/runs_from_logs.py benchmarks/results/gpu_h200_runs.tar.gz --scale gpu --machine "NVIDIA H200, \
16 CPU cores" --date 2026-11-26 --commit 87f84b1 --wall-min 3.4 --note "..."

``run_benchmark.py`` trains each (method, seed) and then scores ``last.pt`` with ``ikd_yolo.tools.sizeval.evaluate``:
Ultralytics' validator first (its table is in the training's log), then COCO AP by object size. When the second part
fails (on the GPU run of 2026-11-26 pycocotools was missing on the lent machine), each log still holds the
validator's line for ``last.pt`` on the benchmark's val split, ``all <images> <instances> P R mAP50 mAP50-95`` (three
decimals), and each run folder its ``results.csv``. This script reads those from a folder or a ``.tar.gz`` of the
benchmark's cache (``runs/<method>_s<seed>.log`` and ``runs/<method>_s<seed>/results.csv``) and writes the
results JSON of the scale (``results/<scale>.json`` shape, AP by size and peak memory ``nan``) and its table in
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import tarfile
from pathlib import Path

from common import RESULTS, shown
from report import markdown, update_benchmarks_md
from run_benchmark import HEADLINE, SCALES, summarise

VAL_LINE = re.compile(r"^\s*all\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$")
NAME = re.compile(r"(?:^|/)runs/([^/]+)_s(\d+)\.log$")


def read_tree(source: Path) -> dict[str, str]:
    """Every file of a folder or a .tar.gz as text, by its relative path."""
    out = {}
    if source.is_dir():
        for f in source.rglob("*"):
            if f.is_file() and f.suffix in (".log", ".csv"):
                out[str(f.relative_to(source))] = f.read_text(errors="replace")
        return out
    with tarfile.open(source) as tar:
        for m in tar.getmembers():
            if m.isfile() and m.name.endswith((".log", ".csv")):
                out[m.name.removeprefix("./")] = tar.extractfile(m).read().decode(errors="replace")
    return out


def run_result(log: str, results_csv: str | None, epochs: int) -> dict:
    """One training's figures: the last validator line of its log (the scoring of last.pt) and its epoch time."""
    lines = [m for m in (VAL_LINE.match(ln) for ln in log.replace("\r", "\n").splitlines()) if m]
    if not lines:
        raise ValueError("no validator line 'all <images> <instances> P R mAP50 mAP50-95' in the log")
    last = lines[-1]
    rows = list(csv.DictReader(io.StringIO(results_csv))) if results_csv else []
    train_s = float(rows[-1]["time"]) if rows else math.nan
    nan = math.nan
    return {
        "map50_95": float(last.group(6)),
        "map50": float(last.group(5)),
        "ap_small": nan,
        "ap_medium": nan,
        "ap_large": nan,
        "epoch_time_s": train_s / epochs,
        "peak_mem_mb": nan,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("source", type=Path, help="the benchmark's cache folder of the scale, or a .tar.gz of it")
    p.add_argument("--scale", default="gpu", choices=sorted(SCALES))
    p.add_argument("--machine", required=True)
    p.add_argument("--date", required=True)
    p.add_argument("--commit", required=True)
    p.add_argument("--wall-min", type=float, required=True, help="the trainings' wall time, minutes")
    p.add_argument("--note", default="", help="what the reader must know (why the scores come from the logs)")
    a = p.parse_args()

    cfg = SCALES[a.scale]
    files = read_tree(a.source)
    by_method: dict[str, list] = {}
    for path, text in sorted(files.items()):
        m = NAME.search(path)
        if not m or m.group(1) not in HEADLINE:
            continue
        method, seed = m.group(1), int(m.group(2))
        csv_text = files.get(path[: -len(".log")] + "/results.csv")
        by_method.setdefault(method, []).append((seed, run_result(text, csv_text, cfg["epochs"])))
    missing = [m for m in HEADLINE if m not in by_method]
    if missing:
        raise SystemExit(f"no run of {missing} in {a.source}")
    entries, base = [], None
    for method in HEADLINE:
        runs = sorted(by_method[method])
        entry = summarise(method, [s for s, _ in runs], [r for _, r in runs], base)
        base = base or entry
        entries.append(entry)
    nan = math.nan
    init = cfg.get("student_init")
    header = {
        "command": f"python benchmarks/runs_from_logs.py {shown(a.source)} --scale {a.scale} ...",
        "machine": a.machine,
        "date": a.date,
        "commit": a.commit,
        "wall_min": a.wall_min,
        "student": cfg["student"],
        "student_init": {"n_train": init["data"]["n_train"], "seed": init["data"]["seed"], "epochs": init["epochs"]}
        if init
        else None,
        "student_init_scores": {"map50_95": nan} if init else None,
        "teacher": cfg["teacher"]["model"] if isinstance(cfg["teacher"], dict) else str(cfg["teacher"]),
        "epochs": cfg["epochs"],
        "imgsz": cfg["data"]["imgsz"],
        "batch": cfg["batch"],
        "data": f"ikd_yolo.demo.shapes, {cfg['data']['n_train']} train / {cfg['data']['n_val']} val images",
        "note": a.note,
        "scores_from": "the validator line of each training's log (3 decimals); AP by size, peak memory: not measured",
    }
    teacher = {"map50_95": nan, "ap_small": nan, "ap_medium": nan, "ap_large": nan}
    out = {**header, "teacher_scores": teacher, "methods": entries}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{a.scale}.json").write_text(json.dumps(out, indent=1))
    text = markdown(a.scale, header, entries, teacher)
    if a.note:
        text += f"\n\n{a.note}"
    update_benchmarks_md(a.scale, text)
    print(text)


if __name__ == "__main__":
    main()
