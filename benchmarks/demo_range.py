"""The spread of the embedded demo's figures (README.md, "Set up"): the demo of ``python run.py`` at several seeds.

    python benchmarks/demo_range.py [--seeds 0 1 2 3 4] [--out benchmarks/results/demo_range.json]

The demo's data and teacher stay as they are; the seed of both students' training (the demo's ``COMMON["seed"]``,
0 in ``python run.py``) changes. On one machine each seed repeats exactly; another machine, or other versions of
torch and Ultralytics, gives other figures, and the spread over seeds shows how far they can fall. Each run trains
in a fresh temporary folder; the results (mAP50-95 and mAP50 of both students per seed, with the machine, the date and
the commit) go to ``--out``.
"""

import argparse
import datetime
import json
import tempfile
from pathlib import Path

from common import machine  # this checkout's ikd_yolo, offline

from ikd_yolo import demo
from ikd_yolo.tools.compare.runs import provenance

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", default="benchmarks/results/demo_range.json")
    args = parser.parse_args()
    runs = []
    for seed in args.seeds:
        demo.COMMON["seed"] = seed
        with tempfile.TemporaryDirectory(prefix="ikd_demo_range_") as tmp:
            workdir = Path(tmp) / "ikd_demo"
            weights = demo.run_demo(workdir)
            data = workdir / "data" / "data.yaml"
            scores = {name: demo._map(w, data) for name, w in weights.items() if name.startswith("student")}
        runs.append({"seed": seed, **{name: {"map50_95": m, "map50": m50} for name, (m, m50) in scores.items()}})
        print(json.dumps(runs[-1]), flush=True)
    plain, ikd = "student, no KD", "student, IKD"
    summary = {
        name: {k: [min(r[name][k] for r in runs), max(r[name][k] for r in runs)] for k in ("map50_95", "map50")}
        for name in (plain, ikd)
    }
    summary["ikd_above_plain"] = sum(r[ikd]["map50_95"] > r[plain]["map50_95"] for r in runs)
    where = {"machine": machine(), "date": datetime.date.today().isoformat(), "ikd_yolo": provenance()}
    Path(args.out).write_text(json.dumps({**where, "runs": runs, "range": summary}, indent=1) + "\n")
    print(json.dumps(summary))
