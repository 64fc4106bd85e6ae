"""Distillation against no distillation and Ultralytics' own: same student, data, epochs and seeds.

    python benchmarks/run_benchmark.py --scale quick     # pipeline check, < 10 min on a 2-core CPU
    python benchmarks/run_benchmark.py --scale full      # the reported CPU run, < 60 min on a 2-core CPU
    python benchmarks/run_benchmark.py --scale full --grid   # also each IKD mechanism alone and every feature base
    python benchmarks/run_benchmark.py --scale gpu --prepare-only && \
        python benchmarks/run_benchmark.py --scale gpu   # one NVIDIA GPU (device 0), teacher and student cached first
    python benchmarks/run_benchmark.py --scale gpu --smoke --device cpu --parallel 2   # dry run of a scale, tiny

Headline arms (the same student, from the same initial weights, trained for the same epochs, every seed):

- ``baseline``: no distillation (plain Ultralytics training);
- ``native``: Ultralytics' own feature distillation (``YOLO(student).train(distill_model=teacher)``, ``dis=6``);
- ``kd``: ``IKDTrainer`` with the project's default recipe (``cfg/ikd.yaml``) and both IKD mechanisms off;
- ``ikd``: ``IKDTrainer`` with every default, both IKD mechanisms on.

``--grid`` adds, at the first seed: ``kd+freq`` and ``kd+adv`` (one IKD mechanism each) and ``kd[<base>]`` for
every feature base of ``kd_loss``.

The teacher of the CPU ``full`` scale is a yolov8n trained by this script on 1500 generated images of its own
(another generator seed, so disjoint from the val split), cached; the data holds medium and large objects only,
because at 128 px a small object is under 6.4 px wide and no model here detects it (AP small is then ``nan``).
The training labels (the student's and the teacher's) are written as an imperfect annotator would (``LABEL_NOISE``:
box edges off by 8 % of the object's side, 15 % of the objects unlabelled); the validation labels are exact. On
exact generated labels a teacher has nothing to add (BENCHMARKS.md, "Exact labels").
Every scale starts the student from pretrained weights, as a user would start from ``yolov8n.pt``: those cannot
be downloaded here, so the benchmark pretrains the student itself, once (cached), on a separate generated split
(another seed of the same generator: none of its images is in the benchmark's train or val split), and reports that
starting point's own score. A student trained from scratch for the few epochs a CPU allows stays near mAP50-95
0.01-0.02 (commit e451ed9's run), where seed noise hides any difference between methods.
Every model is scored on the same validation split by :func:`ikd_yolo.tools.sizeval.evaluate`: Ultralytics' mAP50-95
and mAP50, and COCO AP for small, medium and large objects, with the size limits of the dataset
(:mod:`ikd_yolo.demo.shapes`: 0.25 % and 9 % of the image area, COCO's 32² and 96² at 640²). Models are scored from
``last.pt`` (equal epochs; ``best.pt`` would be picked on the very split that is reported).

Each training runs in its own process, so the peak memory is its own (CUDA: ``max_memory_allocated``; CPU: peak
resident set of the main process, data-loader workers excluded). Epoch time is the training wall time divided by
the epochs (validation included). Runs are cached under ``benchmarks/cache/bench/<scale>`` by their settings, so an
interrupted benchmark continues where it stopped, and a run another ``--tag`` already made (a baseline, say) is linked
under this tag's name instead of retrained; ``--fresh`` retrains.

Results: ``benchmarks/results/<scale>.json`` (one entry per method, see ``summarise``) and the table of that scale in
``BENCHMARKS.md`` (between its ``<!-- <scale> -->`` markers); a ``full`` run with default settings also becomes
``benchmarks/results/latest.json``. ``--set key=value`` changes an IKD setting for every IKD method, or an
Ultralytics train argument (such as ``dis``, the native term's weight) for every method (ablations);
such runs write ``benchmarks/results/<scale>-<tag>.json`` and leave ``BENCHMARKS.md`` alone.
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import CACHE, RESULTS, ROOT, cache_key, machine, peak_memory_mb, shown, train_cached
from report import ablation_table, markdown, tuning_table, update_benchmarks_md

# The CPU scales use the embedded demo's data and its shipped teacher (yolov8n trained 150 epochs on exactly that
# train split by make_demo_teacher.py); the val split is enlarged to 256 images (the same generator and seed give
# the same train images, and the demo's 64 val images come first) so that the scores are less noisy.
# ``student_init``: the student's starting weights, pretrained once by the benchmark on a disjoint generated split
# (see ``pretrain_student``); without it the student starts from scratch.
# Training labels as annotators write them (``ikd_yolo.demo.shapes.annotate``): each box edge off by 8 % of the
# object's side (Gaussian sd), 15 % of the objects unlabelled; the teacher's labels are made the same way, the val
# labels are exact. With exact labels a teacher has nothing to add that the labels do not say (BENCHMARKS.md).
LABEL_NOISE = dict(box_noise=0.08, miss_rate=0.15)
SCALES = {
    "quick": dict(
        data=dict(n_train=256, n_val=256, imgsz=128, seed=0),
        teacher="asset",
        student="cfg/yolov8-pico.yaml",
        student_init=dict(data=dict(n_train=512, n_val=64, imgsz=128, seed=1), epochs=20),  # half of full's
        epochs=3,
        close_mosaic=1,
        batch=16,
        seeds=[0],
        device="cpu",
        parallel=1,
    ),
    "full": dict(
        data=dict(n_train=256, n_val=256, imgsz=128, seed=0, small_objects=False, **LABEL_NOISE),
        teacher=dict(
            model="yolov8n.yaml",
            epochs=60,
            batch=32,
            close_mosaic=10,
            data=dict(n_train=1500, n_val=16, imgsz=128, seed=2, small_objects=False, **LABEL_NOISE),
        ),
        student="cfg/yolov8-pico.yaml",
        student_init=dict(data=dict(n_train=512, n_val=64, imgsz=128, seed=1, small_objects=False), epochs=40),
        epochs=25,
        close_mosaic=5,
        batch=16,
        seeds=[0, 1, 2, 3, 4],
        device="cpu",
        parallel=1,
    ),
    # one NVIDIA GPU: the same four arms x 3 seeds, 12 trainings sharing the GPU (and its machine's CPU cores, which
    # feed them); the teacher (yolov8s, 1500 images of its own split) and the pretrained student are trained first and
    # cached (--prepare-only). Sized for 8 minutes on one H100 or H200 with 16 CPU cores: no validation between
    # epochs (each model is scored from last.pt at the end, as on every scale).
    "gpu": dict(
        data=dict(n_train=1000, n_val=300, imgsz=320, seed=0, **LABEL_NOISE),
        teacher=dict(
            model="yolov8s.yaml",
            epochs=40,
            batch=32,
            close_mosaic=10,
            data=dict(n_train=1500, n_val=16, imgsz=320, seed=2, **LABEL_NOISE),
        ),
        student="yolov8n.yaml",
        student_init=dict(data=dict(n_train=1000, n_val=100, imgsz=320, seed=1), epochs=20, batch=32),
        epochs=15,
        close_mosaic=3,
        batch=32,
        seeds=[0, 1, 2],
        device="0",
        parallel=12,
        train_args=dict(val=False),
    ),
}
HEADLINE = ("baseline", "native", "kd", "ikd")  # repeated over every seed of the scale


def methods() -> dict[str, dict | None]:
    """Every method with the IKD settings it sets (``None``: not an IKD run).

    The headline arms: ``baseline`` (no teacher), ``native`` (Ultralytics' ``distill_model=``), ``kd`` (the
    project's default recipe with both IKD mechanisms off) and ``ikd`` (the full default recipe). The secondary grid
    (``--grid``, first seed only): each IKD mechanism alone on the default recipe, and every other feature base.
    """
    from ikd_yolo.kd_losses import KD_LOSSES

    out: dict[str, dict | None] = {
        "baseline": None,
        "native": None,
        "kd": dict(freq_aug=False, adv_aug=False),
        "ikd": dict(),
        "kd+freq": dict(freq_aug=True, adv_aug=False),
        "kd+adv": dict(freq_aug=False, adv_aug=True),
    }
    for name in KD_LOSSES:
        out[f"kd[{name}]"] = dict(kd_loss=name, freq_aug=False, adv_aug=False)
    return out


def pretrain_student(scale: str, cfg: dict, device: str) -> str:
    """The student's initial weights: its yaml (from scratch), or weights pretrained once on a separate split."""
    init = cfg.get("student_init")
    if not init:
        return cfg["student"]
    from ikd_yolo.demo.shapes import make_shapes_dataset

    key = cache_key(cfg["student"], init)
    src = make_shapes_dataset(CACHE / scale / f"pretrain-data-{key}", **init["data"])
    local = ROOT / cfg["student"]  # a yaml of this repository (cfg/...), whatever the working directory
    # the training settings come from ``init`` (hashed into ``key``), not from the scale, so the cache stays valid
    return str(
        train_cached(
            scale,
            f"student-{key}",
            str(local) if local.exists() else cfg["student"],
            src,
            device,
            epochs=init["epochs"],
            imgsz=init["data"]["imgsz"],
            batch=init.get("batch", 16),
            close_mosaic=init.get("close_mosaic", 5),
            val=False,
        )
    )


def prepare(scale: str, cfg: dict, device: str) -> tuple[Path, Path]:
    """Make (or reuse) the dataset and the teacher of a scale; return the data yaml and the teacher weights.

    A teacher with its own ``data`` is trained on that split (another generator seed: disjoint from the
    benchmark's val split); otherwise on the benchmark's train split.
    """
    from ikd_yolo.demo.shapes import make_shapes_dataset

    data = make_shapes_dataset(CACHE / scale / f"data-{cache_key(cfg['data'])}", **cfg["data"])
    if cfg["teacher"] == "asset":
        from ikd_yolo.demo import TEACHER_ASSET

        return data, TEACHER_ASSET
    t = cfg["teacher"]
    key = cache_key(cfg["data"], t)
    src = make_shapes_dataset(CACHE / scale / f"teacher-data-{key}", **t["data"]) if "data" in t else data
    weights = train_cached(
        scale,
        f"teacher-{key}",
        t["model"],
        src,
        device,
        epochs=t["epochs"],
        imgsz=cfg["data"]["imgsz"],
        batch=t.get("batch", cfg["batch"]),
        close_mosaic=t.get("close_mosaic", cfg["close_mosaic"]),
        val=False,
    )
    return data, weights


def score(weights: str | Path, data: str | Path, imgsz: int, device: str, project: Path, name: str) -> dict:
    """mAP and COCO AP by size on the val split, with the generated data's size limits at this image size."""
    from ikd_yolo.demo.shapes import MEDIUM_AREA, SMALL_AREA
    from ikd_yolo.tools.sizeval import evaluate

    return evaluate(
        str(weights),
        str(data),
        imgsz=imgsz,
        batch=16,
        device=device,
        project=str(project),
        name=name,
        area_rng=(SMALL_AREA * imgsz * imgsz, MEDIUM_AREA * imgsz * imgsz),
    )


def clear_run_dir(run_dir: Path) -> None:
    """Make way for a run's folder: unlink another tag's run linked there (:func:`same_training`), or remove a
    half-finished run of an interrupted benchmark."""
    if run_dir.is_symlink():
        run_dir.unlink()
    elif run_dir.exists():
        shutil.rmtree(run_dir)


def train_one(spec: dict) -> dict:
    """Train one (method, seed) in this process, score it, and return its figures."""
    from ultralytics import YOLO

    from ikd_yolo.trainer import IKDTrainer

    run_dir = Path(spec["run_dir"])
    clear_run_dir(run_dir)
    common = dict(
        data=spec["data"],
        epochs=spec["epochs"],
        imgsz=spec["imgsz"],
        batch=spec["batch"],
        seed=spec["seed"],
        device=spec["device"],
        workers=spec["workers"],
        close_mosaic=spec["close_mosaic"],
        deterministic=False,
        plots=False,
        project=str(run_dir.parent),
        name=run_dir.name,
        exist_ok=True,
        **spec.get("train_args", {}),
    )
    start = time.time()
    if spec["ikd"] is None:
        extra = {"distill_model": spec["teacher"]} if spec["method"] == "native" else {}
        model = YOLO(spec["student"])
        model.train(**common, **extra)
    else:
        IKDTrainer(overrides={**common, "model": spec["student"], "teacher": spec["teacher"], **spec["ikd"]}).train()
    train_s = time.time() - start
    peak = peak_memory_mb(spec["device"])
    scores = score(run_dir / "weights" / "last.pt", spec["data"], spec["imgsz"], spec["device"], run_dir, "eval")
    return {**scores, "epoch_time_s": train_s / spec["epochs"], "peak_mem_mb": peak}


def portable(spec: dict | None) -> dict | None:
    """``spec`` with every path under the benchmark cache written from the cache's root, so that a result cached by
    another checkout (a worktree, a moved clone: the cache is often a shared link) is found again."""
    if spec is None:
        return None
    marker = "/benchmarks/cache/bench/"
    return {k: v.split(marker, 1)[1] if isinstance(v, str) and marker in v else v for k, v in spec.items()}


def same_training(spec: dict) -> tuple[Path, dict] | None:
    """A cached run of the same training as ``spec`` under another name (e.g. a baseline run by another ``--tag``):
    its folder and result, when its settings equal ``spec``'s but for the folder."""
    want = {k: v for k, v in portable(spec).items() if k != "run_dir"}
    mine = Path(spec["run_dir"] + ".json")
    for f in sorted(mine.parent.glob(f"{glob.escape(spec['method'])}_s{spec['seed']}*.json")):  # kd[pkd]
        cached = json.loads(f.read_text())
        got = portable(cached.get("spec")) or {}
        folder = Path(str(f)[: -len(".json")])  # not with_suffix: names hold dots (adv_weight0.25)
        same = {k: v for k, v in got.items() if k != "run_dir"} == want
        if f != mine and same and (folder / "weights" / "last.pt").is_file():
            return folder, cached["result"]
    return None


def run_spec(spec: dict, fresh: bool) -> dict:
    """Train one (method, seed) in a child process unless a cached result with the same settings exists, under
    this run's name or (linked to it) under another."""
    result_file = Path(spec["run_dir"] + ".json")
    if result_file.exists() and not fresh:
        cached = json.loads(result_file.read_text())
        if portable(cached.get("spec")) == portable(spec):
            print(f"  {spec['method']} seed {spec['seed']}: cached", flush=True)
            return cached["result"]
    found = None if fresh else same_training(spec)
    if found is not None:
        other, result = found
        run_dir = Path(spec["run_dir"])
        clear_run_dir(run_dir)
        run_dir.symlink_to(other.name)  # tools that find a run's folder by its name (robustness.py) find this one
        result_file.write_text(json.dumps({"spec": spec, "result": result}, indent=1))
        print(f"  {spec['method']} seed {spec['seed']}: cached as {other.name}", flush=True)
        return result
    print(f"  {spec['method']} seed {spec['seed']}: training", flush=True)
    log = Path(spec["run_dir"] + ".log")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        proc = subprocess.run(
            [sys.executable, __file__, "--train-one", json.dumps(spec)],
            stdout=f,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.startswith("BENCH_RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{spec['method']} seed {spec['seed']} failed (rc {proc.returncode}); log: {log}")
    result = json.loads(lines[-1][len("BENCH_RESULT ") :])
    result_file.write_text(json.dumps({"spec": spec, "result": result}, indent=1))
    print(f"  {spec['method']} seed {spec['seed']}: mAP50-95 {result['map50_95']:.4f}", flush=True)
    return result


def summarise(name: str, seeds: list[int], runs: list[dict], base: dict | None) -> dict:
    """One entry of the results json: means over seeds, the spread of mAP50-95, and cost ratios to the baseline."""

    def mean(k):
        vals = [r[k] for r in runs]
        return float(statistics.fmean(vals)) if vals else float("nan")

    m = [r["map50_95"] for r in runs]
    entry = {
        "method": name,
        "seeds": seeds,
        "map50_95": mean("map50_95"),
        "map50_95_std": float(statistics.stdev(m)) if len(m) > 1 else 0.0,
        "map50_95_per_seed": m,
        "map50": mean("map50"),
        "ap_small": mean("ap_small"),
        "ap_medium": mean("ap_medium"),
        "ap_large": mean("ap_large"),
        "epoch_time_s": mean("epoch_time_s"),
        "peak_mem_mb": mean("peak_mem_mb"),
    }
    if base is not None:
        entry["epoch_time_ratio"] = entry["epoch_time_s"] / base["epoch_time_s"]
        entry["peak_mem_ratio"] = entry["peak_mem_mb"] / base["peak_mem_mb"]
    return entry


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", choices=sorted(SCALES), default="quick")
    p.add_argument("--methods", help="comma-separated subset (default: the headline arms, or all with --grid)")
    p.add_argument("--all-seeds", action="store_true", help="every seed also for the secondary arms")
    p.add_argument("--grid", action="store_true", help="also the secondary arms (each mechanism alone, every base)")
    p.add_argument("--seeds", help="comma-separated seeds (default: the scale's)")
    p.add_argument("--epochs", type=int, help="override the scale's epochs")
    p.add_argument(
        "--student",
        help="override the scale's student model yaml (pretrained like the scale's own, cached apart; its runs and "
        "results take the --tag, by default its name)",
    )
    p.add_argument("--device", help="override the scale's device (cpu, 0, 0,1, ...)")
    p.add_argument("--parallel", type=int, help="trainings at once (default: the scale's; GPU scales share the GPU)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="IKD settings for every IKD method")
    p.add_argument("--tag", help="name of an ablation (default: from --set)")
    p.add_argument("--fresh", action="store_true", help="retrain even where a cached result exists")
    p.add_argument(
        "--exact-labels", action="store_true", help="train student and teacher on exact labels (no LABEL_NOISE)"
    )
    p.add_argument("--prepare-only", action="store_true", help="only make the data, teacher and pretrained student")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="the scale's pipeline end to end at a tiny size (32 images, 1-2 epochs; own cache folder, meaningless "
        "figures in results/<scale>-smoke.json): a dry run, e.g. of the gpu scale on a CPU",
    )
    p.add_argument("--train-one", help=argparse.SUPPRESS)
    p.add_argument("--render", metavar="RESULTS_JSON", help="only rewrite BENCHMARKS.md's table from a results json")
    p.add_argument("--ablations", action="store_true", help="only write the table of this scale's --set runs")
    p.add_argument("--tuning", action="store_true", help="only write the table of the sweeps in results/tuning")
    a = p.parse_args()
    if a.train_one:
        print("BENCH_RESULT " + json.dumps(train_one(json.loads(a.train_one))), flush=True)
        return
    if a.ablations:
        update_benchmarks_md(f"{a.scale}-ablations", ablation_table(a.scale))
        return
    if a.tuning:
        update_benchmarks_md(f"{a.scale}-tuning", tuning_table())
        return
    if a.render:  # e.g. a GPU run made on another machine; results/<scale>-<name>.json goes to its own marker
        out = json.loads(Path(a.render).read_text())
        stem = Path(a.render).stem
        marker = stem if stem.startswith(f"{a.scale}-") else a.scale
        update_benchmarks_md(marker, markdown(a.scale, out, out["methods"], out["teacher_scores"]))
        return

    from ultralytics.cfg import smart_value
    from ultralytics.utils import DEFAULT_CFG_DICT

    from ikd_yolo.config import KEYS, IKDConfig, default_settings

    cfg = dict(SCALES[a.scale])
    where = a.scale  # the cache folder
    if a.smoke:
        where = f"{a.scale}-smoke"
        tiny = dict(n_train=32, n_val=16)
        cfg["data"] = {**cfg["data"], **tiny}
        if isinstance(cfg["teacher"], dict):
            cfg["teacher"] = {**cfg["teacher"], "epochs": 1, "data": {**cfg["teacher"].get("data", {}), **tiny}}
        if cfg.get("student_init"):
            cfg["student_init"] = {**cfg["student_init"], "epochs": 1, "data": {**cfg["student_init"]["data"], **tiny}}
        cfg.update(epochs=2, close_mosaic=1)
    if a.exact_labels:  # the data (and the teacher's) without annotation noise: its own folders, runs and results
        exact = set(LABEL_NOISE)
        cfg["data"] = {k: v for k, v in cfg["data"].items() if k not in exact}
        if isinstance(cfg["teacher"], dict) and "data" in cfg["teacher"]:
            t = cfg["teacher"]
            cfg["teacher"] = {**t, "data": {k: v for k, v in t["data"].items() if k not in exact}}
    if a.epochs:
        cfg["epochs"] = a.epochs
    if a.student:
        cfg["student"] = a.student
    device = a.device or cfg["device"]
    seeds = [int(s) for s in a.seeds.split(",")] if a.seeds else cfg["seeds"]
    overrides = dict(kv.split("=", 1) for kv in a.set)
    overrides = {k: smart_value(v) for k, v in overrides.items()}
    # IKD keys go to the IKD methods; Ultralytics train keys (e.g. dis=, the native term's weight) to every method
    train_args = {k: v for k, v in overrides.items() if k not in KEYS}
    bad = [k for k in train_args if k not in DEFAULT_CFG_DICT]
    if bad:
        sys.exit(f"--set {bad}: neither IKD settings nor Ultralytics train arguments")
    IKDConfig.from_mapping({k: v for k, v in overrides.items() if k in KEYS})  # refuse a bad value before training
    all_methods = methods()
    chosen = a.methods.split(",") if a.methods else list(all_methods) if a.grid else list(HEADLINE)
    unknown = [m for m in chosen if m not in all_methods]
    if unknown:
        sys.exit(f"unknown method(s) {unknown}: choose from {list(all_methods)}")
    if "baseline" not in chosen:
        chosen.insert(0, "baseline")  # every ratio is to the baseline of the same run
    tag = a.tag or "-".join(f"{k}{v}" for k, v in overrides.items())
    if a.student and not a.tag:
        tag = Path(a.student).stem + (f"-{tag}" if tag else "")
    if a.exact_labels:
        tag = "exact" + (f"-{tag}" if tag else "")
    if a.smoke:
        tag = "smoke" + (f"-{tag}" if tag else "")
    default_run = not overrides and not a.epochs and not a.seeds and not a.methods and not a.exact_labels
    default_run = default_run and not a.student
    default_run = default_run and not a.smoke
    start = time.time()
    init = cfg.get("student_init")
    if init and init["data"]["seed"] == cfg["data"]["seed"]:
        sys.exit(
            f"--scale {a.scale}: student_init's data seed must differ from the benchmark split's "
            f"({cfg['data']['seed']}), or the student is pretrained on the images it is scored on"
        )
    data, teacher = prepare(where, cfg, device)
    student = pretrain_student(where, cfg, device)
    if a.prepare_only:
        print(f"prepared: data {data}, teacher {teacher}, student {student}")
        return
    parallel = a.parallel or cfg["parallel"]
    workers = max(1, min(8, (os.cpu_count() or 2) // parallel))
    specs = []
    for method in chosen:
        for seed in seeds if method in HEADLINE or a.all_seeds else seeds[:1]:
            ikd = all_methods[method]
            if ikd is not None:
                ikd = {**ikd, **{k: v for k, v in overrides.items() if k in KEYS}}
            # runs that differ from the scale's own get the tag, so that they never take a cached run's folder
            own = ikd is not None or train_args or a.exact_labels or a.epochs not in (None, SCALES[a.scale]["epochs"])
            own = own or cfg["student"] != SCALES[a.scale]["student"]
            name = f"{method}_s{seed}" + (f"_{tag}" if tag and own else "")
            specs.append(
                dict(
                    method=method,
                    seed=seed,
                    ikd=ikd,
                    # the defaults an IKD run inherits: a changed cfg/ikd.yaml invalidates its cached result
                    ikd_defaults=cache_key(default_settings()) if ikd is not None else None,
                    data=str(data),
                    teacher=str(teacher),
                    student=student,
                    epochs=cfg["epochs"],
                    imgsz=cfg["data"]["imgsz"],
                    batch=cfg["batch"],
                    device=device,
                    workers=workers,
                    close_mosaic=cfg["close_mosaic"],
                    run_dir=str(CACHE / where / "runs" / name),
                )
            )
            if train_args or cfg.get("train_args"):
                specs[-1]["train_args"] = {**cfg.get("train_args", {}), **train_args}
    print(f"{len(specs)} trainings, {parallel} at a time, on {machine()}", flush=True)
    with ThreadPoolExecutor(parallel) as pool:
        results = list(pool.map(lambda s: run_spec(s, a.fresh), specs))

    s = cfg["data"]["imgsz"]
    teacher_scores = score(teacher, data, s, device, CACHE / where, "teacher_eval")
    init_scores = score(student, data, s, device, CACHE / where, "student_init_eval") if init else None
    by_method: dict[str, list] = {}
    for spec, res in zip(specs, results, strict=True):
        by_method.setdefault(spec["method"], []).append((spec["seed"], res))
    base = summarise("baseline", [sd for sd, _ in by_method["baseline"]], [r for _, r in by_method["baseline"]], None)
    entries = [summarise(m, [sd for sd, _ in runs], [r for _, r in runs], base) for m, runs in by_method.items()]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "ikd_yolo", "cfg"], cwd=ROOT, capture_output=True, text=True
    )
    header = {
        "command": "python benchmarks/run_benchmark.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "date": datetime.date.today().isoformat(),
        "commit": commit.stdout.strip() + ("+uncommitted" if dirty.stdout.strip() else ""),
        "wall_min": (time.time() - start) / 60,
        "student": cfg["student"],
        "student_init": {
            "n_train": init["data"]["n_train"],
            "seed": init["data"]["seed"],
            "epochs": init["epochs"],
            "weights": shown(student),
        }
        if init
        else None,
        "student_init_scores": init_scores,
        "teacher": shown(teacher),
        "epochs": cfg["epochs"],
        "imgsz": s,
        "batch": cfg["batch"],
        "data": f"ikd_yolo.demo.shapes, {cfg['data']['n_train']} train / {cfg['data']['n_val']} val images"
        + (
            f" (training labels: box edges off by {cfg['data']['box_noise']:.0%} of the side, "
            f"{cfg['data']['miss_rate']:.0%} of the objects unlabelled; exact val labels)"
            if cfg["data"].get("box_noise") or cfg["data"].get("miss_rate")
            else ""
        ),
        "ikd_overrides": overrides,
    }
    out = {**header, "teacher_scores": teacher_scores, "methods": entries}
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = a.scale if default_run else f"{a.scale}-{tag or 'subset'}"
    (RESULTS / f"{stem}.json").write_text(json.dumps(out, indent=1))
    text = markdown(a.scale, header, entries, teacher_scores)
    print("\n" + text)
    if default_run:
        update_benchmarks_md(a.scale, text)
        if a.scale == "full" and not a.methods:
            (RESULTS / "latest.json").write_text(json.dumps(out, indent=1))
    print(f"\nresults: {RESULTS / (stem + '.json')}")


if __name__ == "__main__":
    main()
