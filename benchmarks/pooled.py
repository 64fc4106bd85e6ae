"""Paired differences pooled over several results of one regime: each (results file, seed) is one pair, so two
benchmarks of the same regime on caches built apart (another teacher and pretrained student of the same recipe)
give one interval over all their seeds.

    python benchmarks/pooled.py benchmarks/results/textured-annotator-typical.json \\
        benchmarks/results/textured-fresh-annotator-typical.json --pairs kd:none,ikd:none,ikd:kd,kd:native:dis=0.5

Each file is a results json of ``run_benchmark.py`` (its first regime is read). Prints one markdown row per pair:
the pooled mean difference in mAP50-95 points with its 95 % t interval and the pairs won, then each file's mean.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ikd_yolo.tools.compare.stats import mean_interval


def by_seed(results: Path) -> dict[str, dict[int, float]]:
    """Each arm's mAP50-95 by seed in the first regime of a results json."""
    arms = json.loads(results.read_text())["regimes"][0]["compare"]["arms"]
    return {a["name"]: dict(zip(a["seeds"], a["map50_95"], strict=True)) for a in arms}


def pooled(files: list[Path], arm: str, ref: str) -> tuple[list[float], list[list[float]]]:
    """``arm - ref`` in points over every (file, seed) pair both arms ran, and the same per file."""
    per_file = []
    for f in files:
        s = by_seed(f)
        if arm not in s or ref not in s:
            raise SystemExit(f"{f}: has no arm {arm if arm not in s else ref} (arms: {', '.join(s)})")
        per_file.append([100 * (s[arm][k] - s[ref][k]) for k in sorted(set(s[arm]) & set(s[ref]))])
    return [d for ds in per_file for d in ds], per_file


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", type=Path, help="results jsons of one regime")
    p.add_argument("--pairs", action="append", help="ARM:REF,... (repeatable; default kd:none,ikd:none,ikd:kd)")
    a = p.parse_args()
    print("| arm − ref | pairs | Δ pooled (95 % CI), pairs won | Δ per file |")
    print("|---|---|---|---|")
    names = by_seed(a.files[0])
    for pair in ",".join(a.pairs or ["kd:none,ikd:none,ikd:kd"]).split(","):
        parts = pair.split(":")  # arm names hold colons too (native:dis=0.5): split where both sides are arms
        cuts = [(":".join(parts[:i]), ":".join(parts[i:])) for i in range(1, len(parts))]
        arm, ref = next((c for c in cuts if c[0] in names and c[1] in names), cuts[0] if cuts else (pair, ""))
        diffs, per_file = pooled(a.files, arm, ref)
        mean, low, high = mean_interval(diffs)
        files = ", ".join(f"{sum(ds) / len(ds):+.2f}" for ds in per_file)
        won = f"{sum(d > 0 for d in diffs)}/{len(diffs)}"
        print(f"| {arm} − {ref} | {len(diffs)} | {mean:+.2f} ({low:+.2f} … {high:+.2f}), {won} | {files} |")


if __name__ == "__main__":
    main()
