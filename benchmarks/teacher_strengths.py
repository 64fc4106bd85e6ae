"""Choose the weak and typical teachers of the textured scale on val: the snapshots of the teacher's training whose
lead over the student trained without a teacher is nearest the middle of the issue's bands.

    python benchmarks/teacher_strengths.py [--scale textured]

For each label kind (exact, annotator) the student without a teacher (compare's ``none`` arm, seeds 0-2, the same
runs every regime of that label kind then reuses) and every epoch snapshot of the teacher's training are scored on
the **val** split; the lead is in mAP50-95 points. ``weak`` is the snapshot nearest a lead of 4.5 (band 3-6),
``typical`` nearest 10 (band 8-12); ``strong`` is the teacher ``run_benchmark.py`` trains for it (at least 20
asked), scored on val the same way. The choice, every snapshot's score and the leads go to
``results/<scale>-teachers.json``, which ``run_benchmark.py`` reads.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
from pathlib import Path

from common import CACHE, RESULTS, machine
from run_benchmark import SCALES, make_data, run_regime, smoke, teacher, teacher_training

TARGETS = {"weak": (4.5, 3.0, 6.0), "typical": (10.0, 8.0, 12.0)}  # lead: aim, band low, band high


def val_scores(files: dict[str, Path], cache: Path, data: Path, scale: dict, device: str) -> dict[str, float]:
    """mAP50-95 on val of each checkpoint in ``files`` by name (cached in the json ``cache``)."""
    from ikd_yolo.tools.sizeval import evaluate

    scores = json.loads(cache.read_text()) if cache.is_file() else {}
    for name, f in files.items():
        if name not in scores:
            r = evaluate(str(f), str(data), imgsz=scale["data"]["imgsz"], batch=32, device=device, split="val",
                         project=str(cache.parent.parent), name="snapshot_val", exist_ok=True)  # fmt: skip
            scores[name] = r["map50_95"]
            cache.write_text(json.dumps(scores))
    return scores


def snapshot_scores(scale: dict, where, labels: str, device: str) -> dict[int, float]:
    """mAP50-95 on val of every epoch snapshot of the teacher's own training (cached next to it)."""
    last, _ = teacher_training(scale, where, labels, scale["teachers"]["own"], device)
    files = {f.stem[5:]: f for f in last.parent.glob("epoch*.pt")}
    data = make_data(scale, where, scale["data"], labels)
    scores = val_scores(files, last.parent / "snapshot_val.json", data, scale, device)
    return {int(k): v for k, v in scores.items()}


def strong_score(scale: dict, where, labels: str, device: str) -> float:
    """mAP50-95 on val of the strong teacher (the own training trained on further, where the scale says so)."""
    last = teacher(scale, where, f"{labels}-strong", device)
    data = make_data(scale, where, scale["data"], labels)
    return val_scores({"last": last}, last.parent / "strong_val.json", data, scale, device)["last"]


def choose(leads: dict[int, float]) -> dict[str, int | None]:
    """The snapshot nearest each aim within its band (None when no snapshot lies in the band)."""
    out = {}
    for name, (aim, low, high) in TARGETS.items():
        inside = [e for e, lead in leads.items() if low <= lead <= high]
        out[name] = min(inside, key=lambda e: abs(leads[e] - aim)) if inside else None
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scale", default="textured")
    p.add_argument("--device", default="cpu")
    p.add_argument("--labels", default="annotator,exact", help="label kinds to choose for (comma-separated)")
    p.add_argument("--smoke", action="store_true", help="the scale's tiny dry run (run_benchmark.py --smoke)")
    a = p.parse_args()
    name = a.scale + ("-smoke" if a.smoke else "")
    scale, where = smoke(SCALES[a.scale]) if a.smoke else SCALES[a.scale], CACHE / name
    f = RESULTS / f"{name}-teachers.json"
    out = json.loads(f.read_text()) if f.is_file() else {"epochs": {}, "leads": {}, "none_val": {}, "snapshots": {}}
    out.update(command="python benchmarks/teacher_strengths.py " + " ".join(sys.argv[1:]), machine=machine())
    out.update(date=datetime.date.today().isoformat())
    for labels in a.labels.split(","):
        seeds = 1 if a.smoke else 3
        s = run_regime(scale, where, f"{labels}-strong", a.device, "", dict(arms="none", seeds=seeds, split="val"))
        none = statistics.fmean(s["arms"][0]["map50_95"])
        snaps = snapshot_scores(scale, where, labels, a.device)
        leads = {e: 100 * (v - none) for e, v in snaps.items()}
        chosen = out["epochs"][labels] = choose(leads)
        strong = 100 * (strong_score(scale, where, labels, a.device) - none)
        out["leads"][labels] = {"strong": strong, **{k: leads.get(e) for k, e in chosen.items()}}
        out["none_val"][labels], out["snapshots"][labels] = none, snaps
        print(labels, "student without teacher on val", f"{none:.4f}", "leads", out["leads"][labels])
    RESULTS.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
