"""Scores of trained benchmark students on corrupted copies of the val split: what IKD does besides clean mAP.

    python benchmarks/robustness.py --ref full.json+full-seeds5-9.json:kd full-r4.json+full-r4-seeds5-9.json:ikd

IKD trains the student on inputs the clean data never shows it (frequency-augmented images, adversarial images made
against the teacher). This script measures whether the students it trains hold up better on such inputs than the
students of the other arms, at the seeds both ran. Nothing is trained: each arm's students are the ``last.pt`` of
its cached benchmark runs (``FILE:METHOD`` as in ``paired.py``; the run of seed ``s`` of method ``m`` in
``results/full-TAG.json`` is ``cache/bench/full/runs/m_sS_TAG``, in ``results/full.json`` ``m_sS``).

Conditions (each a copy of the val split with the same labels, made once and cached; every student sees the same
images):

- ``clean``: the val split itself (the benchmark's own score, reproduced as a check);
- ``noise``: Gaussian noise, std 0.04 on a 0..1 image, a fixed draw per image (half the frequency augmentation's
  own 0.08, ImageNet-C's severity 1: at 0.08 every student here scores under 0.1);
- ``blur``: Gaussian blur, sigma 1 px (albumentations ``GaussianBlur``);
- ``jpeg``: JPEG at quality 20 (albumentations ``ImageCompression``);
- ``adv4``: adversarial images made against the **teacher** (never against the student scored) with the attack IKD
  trains with by default: one MI-DI-FGSM step of 4/255 on the teacher's classification loss on the val labels;
- ``adv8``: the same with the reference's attack, five steps of 2/255 to 8/255.

The adversarial conditions are transfer attacks: they measure how much of the teacher's non-robust directions the
student shares, the directions IKD's adversarial term trains it on. Scores are Ultralytics' mAP50-95 (x100 in the
differences), from ``ikd_yolo.tools.sizeval.evaluate`` as in ``run_benchmark.py``; each (run, condition) score is
cached in the run's folder (``robust-COND.json``). The results go to ``results/robustness-TAG.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import date
from pathlib import Path

from common import CACHE, RESULTS, image_batch, machine

SCALE = "full"
CONDITIONS = ("clean", "noise", "blur", "jpeg", "adv4", "adv8")
ATTACKS = {"adv4": dict(eps=4 / 255, step=4 / 255, steps=1), "adv8": dict(eps=8 / 255, step=2 / 255, steps=5)}


def run_dirs(spec: str) -> dict[int, Path]:
    """Seed -> run folder of each seed of ``FILE[+FILE2]:METHOD`` (the first file holding a seed wins, as in
    ``paired.py``)."""
    names, _, method = spec.rpartition(":")
    out: dict[int, Path] = {}
    for name in names.split("+"):
        stem = Path(name).stem
        tag = stem[len(SCALE) + 1 :] if stem.startswith(f"{SCALE}-") else ""
        seeds = json.loads((RESULTS / name).read_text())
        seeds = next(e["seeds"] for e in seeds["methods"] if e["method"] == method)
        for s in seeds:
            d = CACHE / SCALE / "runs" / (f"{method}_s{s}" + (f"_{tag}" if tag else ""))
            if not (d / "weights" / "last.pt").is_file():
                raise SystemExit(f"{spec}: no {d / 'weights' / 'last.pt'} (was the run made on this machine?)")
            out.setdefault(s, d)
    return out


def val_split(data_yaml: Path) -> tuple[Path, list[Path]]:
    """The val images folder and its images."""
    from ultralytics.data.utils import check_det_dataset

    data = check_det_dataset(str(data_yaml))
    folder = Path(data["val"])
    return folder, sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))


def corrupt_pixels(name: str, images: list[Path], out: Path) -> None:
    """Write the ``noise``, ``blur`` or ``jpeg`` copy of ``images`` (BGR, uint8) to ``out``."""
    import albumentations as A
    import cv2

    from ikd_yolo.frequency import add_gaussian_noise

    blur = A.GaussianBlur(blur_limit=(5, 5), sigma_limit=(1.0, 1.0), p=1.0)
    jpeg = A.ImageCompression(quality_range=(20, 20), p=1.0)
    for i, p in enumerate(images):
        img = cv2.imread(str(p))
        if name == "noise":
            img = add_gaussian_noise(img, 0.04, seed=i)
        elif name == "blur":
            img = blur(image=img)["image"]
        elif name == "jpeg":
            img = jpeg(image=img)["image"]
        cv2.imwrite(str(out / p.name), img)


def attack_teacher(name: str, images: list[Path], teacher_pt: Path, out: Path) -> None:
    """Write adversarial copies of ``images`` made against the teacher (``ATTACKS[name]``), 16 at a time."""
    import cv2
    import numpy as np
    import torch

    from ikd_yolo.adversarial import TeacherClsLoss, mi_di_fgsm
    from ikd_yolo.teacher import load_teacher

    teacher = load_teacher(teacher_pt)
    for p in teacher.parameters():
        p.requires_grad_(False)
    loss = TeacherClsLoss(teacher)
    gen = torch.Generator().manual_seed(0)
    for start in range(0, len(images), 16):
        chunk = images[start : start + 16]
        batch = image_batch(chunk)
        x = batch.pop("img").contiguous(memory_format=torch.channels_last)  # the layout the cached copies were made in
        adv = mi_di_fgsm(lambda z, s, b=batch: loss(z, b, s), x, generator=gen, **ATTACKS[name])
        adv = (adv * 255).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
        for p, im in zip(chunk, adv, strict=True):
            cv2.imwrite(str(out / p.name), np.ascontiguousarray(im[..., ::-1]))


def condition_data(name: str, data_yaml: Path, teacher_pt: Path) -> Path:
    """A data yaml whose val split is the ``name`` copy of ``data_yaml``'s val split (made on first use)."""
    if name == "clean":
        return data_yaml
    import yaml

    root = CACHE / SCALE / "robust" / f"{data_yaml.parent.name}-{name}"
    done = root / "data.yaml"
    if done.is_file():
        return done
    folder, images = val_split(data_yaml)
    label_dir = folder.parent.parent / "labels" / folder.name
    (root / "images" / "val").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    if not (root / "labels" / "val").exists():
        (root / "labels" / "val").symlink_to(label_dir.resolve())
    t0 = time.time()
    if name in ATTACKS:
        attack_teacher(name, images, teacher_pt, root / "images" / "val")
    else:
        corrupt_pixels(name, images, root / "images" / "val")
    cfg = yaml.safe_load(data_yaml.read_text())
    cfg.update(path=str(root), train="images/val", val="images/val")
    done.write_text(yaml.safe_dump(cfg, sort_keys=False))
    print(f"made the {name} copy of {len(images)} val images in {time.time() - t0:.0f} s", flush=True)
    return done


def score_run(run: Path, name: str, data: Path, imgsz: int) -> float:
    """mAP50-95 of ``run``'s last.pt on ``data`` (cached in the run folder)."""
    from run_benchmark import score

    cached = run / f"robust-{name}.json"
    if cached.is_file():
        return json.loads(cached.read_text())["map50_95"]
    r = score(run / "weights" / "last.pt", data, imgsz, "cpu", run / "eval", f"robust-{name}")
    cached.write_text(json.dumps(r))
    return r["map50_95"]


def markdown_table(arms: list[str], conditions: list[str], scores: dict) -> str:
    """The results as a markdown table: each arm's mean over the seeds per condition and, after the first (the
    reference), its paired difference from it."""
    ref = arms[0]
    lines = [
        f"Command: `python benchmarks/robustness.py {' '.join(arms)}`  ",
        f"Machine: {machine()}; date {date.today()}.  ",
        f"mAP50-95 on each condition, mean over the seeds; Δ: the arm minus `{ref}` in points (x100), paired by seed "
        "(mean; per seed; how many above).",
        "",
        "| arm | " + " | ".join(conditions) + " |",
        "|---|" + "---|" * len(conditions),
    ]
    for spec in arms:
        cells = []
        for name in conditions:
            mine = scores[spec][name]
            cell = f"{statistics.fmean(mine.values()):.4f}"
            if spec != ref:
                common = [s for s in mine if s in scores[ref][name]]
                d = [100 * (mine[s] - scores[ref][name][s]) for s in common]
                cell += (
                    f" **{statistics.fmean(d):+.2f}** ({', '.join(f'{x:+.2f}' for x in d)}; "
                    f"{sum(x > 0 for x in d)}/{len(d)})"
                )
            cells.append(cell)
        lines.append(f"| {spec} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("arms", nargs="+", help="FILE[+FILE2]:METHOD arms of results/ (the first is the reference)")
    p.add_argument("--conditions", default=",".join(CONDITIONS), help=f"comma-separated subset of {CONDITIONS}")
    p.add_argument("--tag", default="r5", help="results/robustness-TAG.json")
    a = p.parse_args()
    conditions = a.conditions.split(",")
    bad = [c for c in conditions if c not in CONDITIONS]
    if bad:
        raise SystemExit(f"unknown condition(s) {bad}: choose from {CONDITIONS}")
    runs = {spec: run_dirs(spec) for spec in a.arms}
    first = next(iter(runs[a.arms[0]].values()))
    spec0 = json.loads(first.with_name(first.name + ".json").read_text())["spec"]
    data_yaml, teacher_pt, imgsz = Path(spec0["data"]), Path(spec0["teacher"]), spec0["imgsz"]
    scores: dict[str, dict[str, dict[int, float]]] = {}
    for name in conditions:
        data = condition_data(name, data_yaml, teacher_pt)
        for spec, dirs in runs.items():
            scores.setdefault(spec, {})[name] = {s: score_run(d, name, data, imgsz) for s, d in sorted(dirs.items())}
            print(f"{name:6s} {spec}: {statistics.fmean(scores[spec][name].values()):.4f}", flush=True)

    table = markdown_table(a.arms, conditions, scores)
    print(table)
    out = RESULTS / f"robustness-{a.tag}.json"
    out.write_text(
        json.dumps(
            {
                "command": f"python benchmarks/robustness.py {' '.join(a.arms)}",
                "machine": machine(),
                "date": str(date.today()),
                "conditions": conditions,
                "scores": {
                    spec: {c: {str(s): v for s, v in d.items()} for c, d in per.items()} for spec, per in scores.items()
                },
                "table": table,
            },
            indent=1,
        )
    )
    print(f"-> {out}")


if __name__ == "__main__":
    main()
