"""Paired differences pooled over several results of one regime: each (results file, seed) is one pair, so two
benchmarks of the same regime on caches built apart (another teacher and pretrained student of the same recipe)
give one interval over all their seeds.

    python benchmarks/pooled.py benchmarks/results/textured-annotator-typical.json \\
        benchmarks/results/textured-fresh-annotator-typical.json --pairs kd:none,ikd:none,ikd:kd,kd:native:dis=0.5

Each file is a results json of ``run_benchmark.py``: its first regime is read, or the ones ``--regime`` names (a file
of ``--all-regimes`` holds them all; ``--regime a,b`` prints one block of rows per regime). Prints one markdown row per
pair: the pooled mean difference in mAP50-95 points with its 95 % t interval and the pairs won, then each file's mean.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import common  # noqa: F401  (this checkout's ikd_yolo)

from ikd_yolo.tools.compare.report import by_seed
from ikd_yolo.tools.compare.stats import Paired, paired


def arms_by_seed(results: Path, regime: str | None = None) -> dict[str, dict[int, float]]:
    """Each arm's mAP50-95 by seed in one regime of a results json (``regime``, or its first)."""
    regimes = json.loads(results.read_text())["regimes"]
    found = [r for r in regimes if regime in (None, r["name"])]
    if not found:
        raise SystemExit(f"{results}: has no regime {regime} (regimes: {', '.join(r['name'] for r in regimes)})")
    return {a["name"]: by_seed(a) for a in found[0]["compare"]["arms"]}


def pooled(files: list[Path], arm: str, ref: str, regime: str | None = None) -> tuple[Paired, list[Paired]]:
    """``arm - ref`` over every (file, seed) pair both arms ran, and the same per file."""
    scores = [arms_by_seed(f, regime) for f in files]
    for f, s in zip(files, scores, strict=True):
        if arm not in s or ref not in s:
            raise SystemExit(f"{f}: has no arm {arm if arm not in s else ref} (arms: {', '.join(s)})")
    keyed = [{(i, k): v for i, s in enumerate(scores) for k, v in s[name].items()} for name in (arm, ref)]
    return paired(arm, keyed[0], ref, keyed[1]), [paired(arm, s[arm], ref, s[ref]) for s in scores]


def split_pair(pair: str, names) -> tuple[str, str]:
    """``ARM:REF`` as (arm, ref); arm names hold colons too (native:dis=0.5), so split where both sides are arms."""
    parts = pair.split(":")
    cuts = [(":".join(parts[:i]), ":".join(parts[i:])) for i in range(1, len(parts))]
    return next((c for c in cuts if c[0] in names and c[1] in names), cuts[0] if cuts else (pair, ""))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", type=Path, help="results jsons (of one regime, or read at --regime)")
    p.add_argument("--pairs", action="append", help="ARM:REF,... (repeatable; default kd:none,ikd:none,ikd:kd)")
    p.add_argument("--regime", help="the regime(s) read from each file, comma-separated (default: each file's first)")
    a = p.parse_args()
    regimes = a.regime.split(",") if a.regime else [None]
    named = len(regimes) > 1  # several regimes: a first column names each row's
    print(("| regime " if named else "") + "| arm − ref | pairs | Δ pooled (95 % CI), pairs won | Δ per file |")
    print(("|---" if named else "") + "|---|---|---|---|")
    for regime in regimes:
        names = arms_by_seed(a.files[0], regime)
        for pair in ",".join(a.pairs or ["kd:none,ikd:none,ikd:kd"]).split(","):
            arm, ref = split_pair(pair, names)
            d, per_file = pooled(a.files, arm, ref, regime)
            files = ", ".join(f"{f.mean:+.2f}" for f in per_file)
            row = f"| {arm} − {ref} | {d.n} | {d.mean:+.2f} ({d.low:+.2f} … {d.high:+.2f}), {d.wins}/{d.n} | {files} |"
            print((f"| {regime} " if named else "") + row)


if __name__ == "__main__":
    main()
