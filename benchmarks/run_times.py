"""How long a comparison's runs took, from the record ``compare`` keeps in each run folder (``compare_run.json``):
the wall time from the first run's start to the last run's end, the run time summed over runs, and each arm's share.

    python benchmarks/run_times.py benchmarks/cache/bench/textured/annotator-typical-fresh

The wall time covers training only: scoring on the split and the report come after each run; a comparison's
preparation (data, teacher, pretrained student) comes before the first run.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from pathlib import Path

import common  # noqa: F401  (this checkout's ikd_yolo)

from ikd_yolo.tools.compare.runs import RUN_FILE


def run_times(folder: Path) -> dict:
    """``wall_s``, ``run_s``, ``runs`` and ``by_arm`` (seconds summed per arm) of the runs recorded in ``folder``."""
    # a run linked from a sibling comparison (its folder a symlink) trained there, at another time: left out
    records = [json.loads(f.read_text()) for f in sorted(folder.glob(f"*/{RUN_FILE}")) if not f.parent.is_symlink()]
    records = [r for r in records if "started" in r]
    if not records:
        raise SystemExit(f"{folder}: no run records with a start time (compare writes them since commit 31451fe)")
    by_arm: dict[str, float] = {}
    for r in records:
        by_arm[r["arm"]] = by_arm.get(r["arm"], 0.0) + r["train_s"]
    start, end = min(r["started"] for r in records), max(r["started"] + r["train_s"] for r in records)
    return {"runs": len(records), "start": start, "end": end, "wall_s": end - start, "run_s": sum(by_arm.values()),
            "by_arm": by_arm}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path, help="a compare folder")
    t = run_times(p.parse_args().folder)
    at_once = t["run_s"] / t["wall_s"]
    print(f"{t['runs']} runs: {t['wall_s'] / 60:.1f} min from the first start to the last end, "
          f"{t['run_s'] / 60:.1f} min of run time summed ({at_once:.2f} runs at once on average)")  # fmt: skip
    utc = [datetime.fromtimestamp(t[k], timezone.utc).strftime("%Y-%m-%d %H:%M:%S") for k in ("start", "end")]
    print(f"first start {utc[0]} UTC, last end {utc[1]} UTC")
    for arm, s in t["by_arm"].items():
        print(f"  {arm}: {s / 60:.1f} min")


if __name__ == "__main__":
    main()
