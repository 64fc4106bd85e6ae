"""The benchmark: what is specific to generated data (the data, the teachers and the pretrained student of each
scale); the arms, seeds, cache, scoring, table and JSON come from ``compare`` (``ikd_yolo.tools.compare``).

    python benchmarks/run_benchmark.py --scale textured --regime annotator-typical seeds=5 split=test
    python benchmarks/run_benchmark.py --scale textured --regime annotator-typical arms=none,native:dis=1 split=val
    python benchmarks/run_benchmark.py --scale textured --all-regimes        # every regime, results/textured.json
    python benchmarks/run_benchmark.py --scale textured --prepare-only      # data, teachers, pretrained student
    python benchmarks/run_benchmark.py --scale full                         # the flat-shape benchmark of before
    python benchmarks/run_benchmark.py --scale textured-gpu --all-regimes   # one NVIDIA GPU (device 0)
    python benchmarks/run_benchmark.py --scale textured --smoke --all-regimes   # a dry run at a tiny size
    python benchmarks/run_benchmark.py --scale textured --imgsz 320 --regime annotator-none arms=none,none+freq
                                  # the data at 320 px; arms without a teacher term, so no teacher is trained

Anything after the options is a ``compare`` argument (``arms=``, ``seeds=``, ``split=``, IKD keys for every IKD arm,
train arguments): the scale gives the data, teacher, student, epochs, image size and batch. Each regime's runs live
in one compare folder, ``benchmarks/cache/bench/<scale>/<regime>[-<tag>]``, so an interrupted benchmark continues where
it stopped, and a run asked again (for another split, or in a larger comparison) is reused. On the CPU the runs go two
at a time where the cores allow it (:func:`slots`), and so do the trainings that prepare them (:func:`prepare`).

Scales:

- ``textured`` (CPU) and ``textured-gpu``: :mod:`textured` images (real-photo textures, small objects in crowds,
  occlusion), a train split for the student, ``val`` for every choice, ``test`` for every reported figure. Regimes:
  labels ``exact`` or ``annotator`` (:class:`textured.Annotator`) x teachers ``strong``, ``typical``, ``weak``, and
  ``control`` (the typical teacher's model and schedule, trained on the student's own training images only). Each
  teacher is trained on labels of its regime, never on val or test; the student starts from weights pretrained once
  on a disjoint split with exact labels, as a user starts from pretrained weights.
- ``quick``, ``full``, ``gpu``: the flat-shape benchmark of earlier rounds (benchmarks/HISTORY.md), with i.i.d. label
  noise on the training labels only and exact val labels; kept to reproduce those figures.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

from common import CACHE, RESULTS, ROOT, cache_key, train_cached

LABEL_NOISE = dict(box_noise=0.08, miss_rate=0.15)  # the flat-shape scales' i.i.d. training-label noise
TEXTURED_DATA = dict(counts={"train": 256, "val": 200, "test": 400}, imgsz=192, seed=0)
SCALES = {
    "quick": dict(
        data=dict(n_train=256, n_val=256, imgsz=128, seed=0),
        teachers={"asset": "asset"},
        student="cfg/yolov8-pico.yaml",
        student_init=dict(data=dict(n_train=512, n_val=64, imgsz=128, seed=1), epochs=20),
        train=dict(epochs=3, close_mosaic=1, batch=16, imgsz=128),
        seeds=1,
    ),
    "full": dict(
        data=dict(n_train=256, n_val=256, imgsz=128, seed=0, small_objects=False, **LABEL_NOISE),
        teachers={
            "noisy": dict(
                model="yolov8n.yaml",
                epochs=60,
                batch=32,
                close_mosaic=10,
                data=dict(n_train=1500, n_val=16, imgsz=128, seed=2, small_objects=False, **LABEL_NOISE),
            )
        },
        student="cfg/yolov8-pico.yaml",
        student_init=dict(data=dict(n_train=512, n_val=64, imgsz=128, seed=1, small_objects=False), epochs=40),
        train=dict(epochs=25, close_mosaic=5, batch=16, imgsz=128),
        seeds=5,
    ),
    "gpu": dict(
        data=dict(n_train=1000, n_val=300, imgsz=320, seed=0, **LABEL_NOISE),
        teachers={
            "noisy": dict(
                model="yolov8s.yaml",
                epochs=40,
                batch=32,
                close_mosaic=10,
                data=dict(n_train=1500, n_val=16, imgsz=320, seed=2, **LABEL_NOISE),
            )
        },
        student="yolov8n.yaml",
        student_init=dict(data=dict(n_train=1000, n_val=100, imgsz=320, seed=1), epochs=20, batch=32),
        train=dict(epochs=15, close_mosaic=3, batch=32, imgsz=320, val=False),
        seeds=3,
        device="0",
    ),
    "textured": dict(
        textured=True,
        data=TEXTURED_DATA,
        # one teacher training per label kind, a snapshot each epoch: the weak and typical teachers are snapshots
        # of it, chosen on val (teacher_strengths.py); strong: that training's last epoch trained on for 25 more
        # epochs on the same images (a new schedule; the 30 epochs alone led by 16.6 and 18.8 points on val, short
        # of the 20 asked); control: the same model trained on the student's own training images only
        teachers={
            "own": dict(model="yolov8n.yaml", n_train=2000, epochs=30, batch=32, close_mosaic=5, save_period=1),
            "strong": dict(model="own", n_train=2000, epochs=25, batch=32, close_mosaic=5),
            "control": dict(model="yolov8n.yaml", n_train=0, epochs=60, batch=32, close_mosaic=10),
        },
        student="cfg/yolov8-pico.yaml",
        # pretrained as one class (as a user's student starts from weights of other classes): the class head is
        # learnt in the runs, the rest is pretrained; single_cls=False in the runs, else Ultralytics keeps the
        # checkpoint's single_cls
        student_init=dict(counts={"train": 1200, "val": 16}, seed=1, epochs=40, close_mosaic=8, single_cls=True),
        train=dict(epochs=20, close_mosaic=4, batch=16, imgsz=192, val=False, single_cls=False),
        seeds=5,
    ),
    "textured-gpu": dict(
        textured=True,
        data=dict(counts={"train": 1000, "val": 400, "test": 1000}, imgsz=384, seed=0),
        teachers={
            "own": dict(model="yolov8s.yaml", n_train=3000, epochs=30, batch=32, close_mosaic=5, save_period=1),
            "control": dict(model="yolov8s.yaml", n_train=0, epochs=60, batch=32, close_mosaic=10),
        },
        student="yolov8n.yaml",
        student_init=dict(counts={"train": 3000, "val": 16}, seed=1, epochs=20, close_mosaic=4, single_cls=True),
        train=dict(epochs=20, close_mosaic=4, batch=32, imgsz=384, val=False, single_cls=False),
        seeds=3,
        device="0",
    ),
}
TEACHER_SEED = 2  # the teachers' own images: another stream of the generator, disjoint from train, val and test
HEADLINE = "annotator-typical"
# the arms and seeds of each regime of the textured scales (compare's arms= and seeds= on the command line win);
# native at the dis chosen on val (BENCHMARKS.md, "Native distillation's `dis`, chosen on val")
NATIVE = "native:dis=0.5"
HEADLINE_ARMS = dict(arms=f"none,{NATIVE},kd,ikd,kd+freq,kd+adv,none+freq", seeds=5)
OTHER_ARMS = dict(arms="none,kd,ikd", seeds=3)
NO_TEACHER_TERM = {"none", "none+freq"}  # the built-in arms whose runs read no teacher


def arm_bases(scale: dict, regime: str, extra: dict) -> set[str]:
    """The built-in arms that a regime's comparison runs (each arm's base): compare's ``arms=``, else the scale's."""
    from ikd_yolo.tools.compare.arms import DEFAULT_ARMS, parse_arms

    default = (HEADLINE_ARMS if regime == HEADLINE else OTHER_ARMS)["arms"] if scale.get("textured") else DEFAULT_ARMS
    return {a.base for a in parse_arms(extra.get("arms", default))}


def regimes(scale: dict) -> list[str]:
    """``labels-teacher`` names of a scale's regimes (the flat-shape scales have one teacher and fixed labels), the
    headline first."""
    if not scale.get("textured"):
        return list(scale["teachers"])
    out = [f"{labels}-{t}" for labels in ("annotator", "exact") for t in ("typical", "strong", "weak")]
    return [*out[:3], "annotator-control", *out[3:]]


def smoke(scale: dict) -> dict:
    """The scale at a tiny size: its pipeline end to end in minutes, meaningless figures."""
    s = json.loads(json.dumps(scale))
    tiny = {"train": 32, "val": 16, "test": 16}
    if s.get("textured"):
        s["data"] = {**s["data"], "counts": tiny}
        s["teachers"] = {k: {**t, "n_train": min(t["n_train"], 32), "epochs": 1} for k, t in s["teachers"].items()}
        s["student_init"] = {**s["student_init"], "counts": {"train": 32, "val": 8}, "epochs": 1}
    else:
        s["data"] = {**s["data"], "n_train": 32, "n_val": 16}
        s["teachers"] = {k: t if t == "asset" else {**t, "epochs": 1} for k, t in s["teachers"].items()}
        s["student_init"] = {**s["student_init"], "epochs": 1}
    s["train"] = {**s["train"], "epochs": 2, "close_mosaic": 1}
    s["seeds"], s["smoke"] = 1, True
    return s


def make_data(scale: dict, where: Path, spec: dict, labels: str | None = None) -> Path:
    """A dataset of the scale's generator (textured with ``labels``, or the flat shapes)."""
    if scale.get("textured"):
        from textured import make_textured_dataset

        return make_textured_dataset(where / f"data-{labels}-{cache_key(spec)}", labels=labels, **spec)
    from ikd_yolo.demo.shapes import make_shapes_dataset

    return make_shapes_dataset(where / f"data-{cache_key(spec)}", **spec)


def teacher(scale: dict, where: Path, regime: str, device: str) -> Path:
    """A regime's teacher, trained once with plain Ultralytics (cached), never on the val or test split.

    Textured scales: ``control`` is trained on the student's own training images; ``typical`` and ``weak`` are
    snapshots of one training on the teacher's own images (the epochs ``teacher_strengths.py`` chose on val), written
    apart without their optimizer; ``strong`` is that training's last epoch, trained on further on the same images
    where the scale has a ``strong`` teacher (``model="own"``), else that last epoch itself. A regime that needs a
    snapshot stops the training there (the headline's typical teacher: half its epochs); one that needs more resumes it.
    """
    if not scale.get("textured"):
        t = scale["teachers"][regime]
        if t == "asset":
            from ikd_yolo.demo import TEACHER_ASSET

            return TEACHER_ASSET
        args = dict(epochs=t["epochs"], imgsz=t["data"]["imgsz"], batch=t["batch"], close_mosaic=t["close_mosaic"])
        name = f"teacher-{regime}-{cache_key(scale['data'], t)}"
        return train_cached(where.name, name, t["model"], make_data(scale, where, t["data"]), device, val=False, **args)
    labels, strength = regime.split("-")
    t = scale["teachers"]["control" if strength == "control" else "own"]
    until = strengths(where)[labels][strength] if strength in {"typical", "weak"} else None
    last, data = teacher_training(scale, where, labels, t, device, until)
    if strength == "strong" and "strong" in scale["teachers"]:
        more = {k: v for k, v in scale["teachers"]["strong"].items() if k not in {"model", "n_train"}}
        name = f"teacher-{labels}-strong-{cache_key(t, labels, more)}"
        return train_cached(where.name, name, str(last), data, device, imgsz=scale["data"]["imgsz"], val=False, **more)
    if strength in {"control", "strong"}:
        return last
    return snapshot(last, until)


def teacher_training(scale: dict, where: Path, labels: str, t: dict, device: str, until: int | None = None):
    """The last.pt of the teacher training ``t`` of a textured scale (cached) and the data.yaml it trained on;
    ``until``: only up to that epoch's snapshot (a typical or weak teacher), the rest when a regime needs it."""
    own = {**scale["data"], "counts": {"train": t["n_train"], "val": 16}, "seed": TEACHER_SEED}
    data = make_data(scale, where, own if t["n_train"] else scale["data"], labels)
    model = str(ROOT / t["model"]) if (ROOT / t["model"]).exists() else t["model"]
    args = {k: v for k, v in t.items() if k not in {"model", "n_train"}}
    last = train_cached(where.name, f"teacher-{labels}-{t['model'].split('/')[-1][:-5]}-{cache_key(t, labels)}",
                        model, data, device, until, imgsz=scale["data"]["imgsz"], val=False, **args)  # fmt: skip
    return last, data


def strengths(where: Path) -> dict:
    """The snapshot epoch of each teacher strength, chosen on val by teacher_strengths.py."""
    f = RESULTS / f"{where.name}-teachers.json"
    if where.name.endswith("-smoke"):
        return {labels: {"weak": 0, "typical": 0} for labels in ("annotator", "exact")}
    if not f.is_file():
        raise SystemExit(f"{f} is missing: choose the teacher snapshots first (python benchmarks/teacher_strengths.py)")
    return json.loads(f.read_text())["epochs"]


def snapshot(last: Path, epoch: int) -> Path:
    """The ``save_period`` snapshot of ``epoch`` (0-based) next to ``last``, stripped of its optimizer (cached)."""
    from ultralytics.utils.torch_utils import strip_optimizer

    out = last.parent / f"teacher-epoch{epoch}.pt"
    if not out.is_file():
        strip_optimizer(last.parent / f"epoch{epoch}.pt", s=str(out))
    return out


def student(scale: dict, where: Path, device: str) -> Path:
    """The student's initial weights, pretrained once on a disjoint split with exact labels (cached)."""
    init = scale["student_init"]
    if scale.get("textured"):
        spec = {**scale["data"], "counts": init["counts"], "seed": init["seed"]}
        data, imgsz = make_data(scale, where, spec, "exact"), scale["data"]["imgsz"]
    else:
        data, imgsz = make_data(scale, where, init["data"]), init["data"]["imgsz"]
    key = cache_key(scale["student"], init)
    model = str(ROOT / scale["student"]) if (ROOT / scale["student"]).exists() else scale["student"]
    args = dict(epochs=init["epochs"], imgsz=imgsz, batch=init.get("batch", 16), val=False)
    args.update(close_mosaic=init.get("close_mosaic", 5), **({"single_cls": True} if init.get("single_cls") else {}))
    return train_cached(where.name, f"student-{key}", model, data, device, **args)


def trainings(scale: dict, where: Path, names: list[str], device: str, part: str = "") -> None:
    """Train (or reuse) what the regimes ``names`` need: the student's pretraining and each regime's teacher. ``part``
    takes half of them, for two processes: ``side`` the student (and the exact-label teachers where ``names`` has
    both label kinds), ``main`` the other teachers."""
    if part != "main":
        student(scale, where, device)
    mixed = len({r.startswith("exact-") for r in names}) == 2
    for r in names:
        if not part or (part == "side") == (mixed and r.startswith("exact-")):
            labels = r.split("-")[0] if scale.get("textured") else None
            print(r, make_data(scale, where, scale["data"], labels), teacher(scale, where, r, device), flush=True)


def prepare(scale: dict, where: Path, names: list[str], device: str) -> None:
    """:func:`trainings`, in two processes where the CPU has room for two runs at once (:func:`slots`): a CPU
    training uses one core of two, and the student's pretraining needs no teacher."""
    if "," not in slots(device):
        return trainings(scale, where, names, device)
    side = multiprocessing.get_context("spawn").Process(target=trainings, args=(scale, where, names, device, "side"))
    side.start()
    try:
        trainings(scale, where, names, device, "main")
    except BaseException:
        side.terminate()  # its training resumes from its last epoch on the next run
        raise
    finally:
        side.join()
    if side.exitcode:
        raise SystemExit(f"the second preparation process failed (exit code {side.exitcode}): run the command again")


def run_regime(scale: dict, where: Path, regime: str, device: str, tag: str, extra: dict) -> dict:
    """Prepare one regime and compare its arms through ``compare``; return the compare summary."""
    from ikd_yolo.tools.compare import compare

    kwargs = dict(seeds=scale["seeds"], device=slots(device))
    if scale.get("textured"):
        kwargs.update(
            HEADLINE_ARMS if regime == HEADLINE else OTHER_ARMS, **({"seeds": 1} if scale.get("smoke") else {})
        )
    # only what the runs need: no pretrained student for model= given here, and no regime's teacher where no arm has a
    # teacher term (none, none+freq): IKDTrainer (none+freq) still loads one, so a 1-epoch placeholder, never run
    bases = arm_bases(scale, regime, extra)
    needs_teacher = not bases <= NO_TEACHER_TERM
    labels = regime.split("-")[0] if scale.get("textured") else None
    data = make_data(scale, where, scale["data"], labels)
    kwargs["data"] = str(data)
    if needs_teacher or "model" not in extra:
        prepare(scale, where, [regime] if needs_teacher else [], device)
    if needs_teacher:
        kwargs["teacher"] = str(teacher(scale, where, regime, device))
    elif "none+freq" in bases:
        args = dict(epochs=1, imgsz=scale["data"]["imgsz"], batch=16, single_cls=extra.get("single_cls", False))
        name = f"placeholder-{labels}-{cache_key(args)}"
        kwargs["teacher"] = str(train_cached(where.name, name, "yolov8n.yaml", data, device, val=False, **args))
    if "model" not in extra:
        kwargs["model"] = str(student(scale, where, device))
    # the generated data's size buckets: COCO's 32^2 and 96^2 px at 640^2, as fractions of the image
    kwargs.update(scale["train"], small_area=0.0025, medium_area=0.09, deterministic=False, plots=False, workers=2)
    kwargs.update(extra, project=str(where), name=regime + (f"-{tag}" if tag else ""), exist_ok=True)
    command = f"python benchmarks/run_benchmark.py {' '.join(sys.argv[1:])}"
    summary = compare(command, **kwargs)
    if not needs_teacher and summary["teacher"]:
        summary["teacher"]["placeholder"] = True  # for the record: no arm used it
    return summary


def slots(device: str) -> str:
    """compare's ``device``: on the CPU, as many slots (``cpu,cpu``) as runs fit in the cores, where Ultralytics
    trains a CPU run on all cores but one (at most 8); a GPU device as given."""
    if str(device) != "cpu":
        return device
    from ultralytics.utils import NUM_THREADS

    return ",".join(["cpu"] * max(1, (os.cpu_count() or 1) // NUM_THREADS))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", choices=sorted(SCALES), default="textured")
    p.add_argument("--regime", help="one regime (default: the scale's headline; LABELS-none: arms without a teacher)")
    p.add_argument("--all-regimes", action="store_true", help="every regime, into results/<scale>.json")
    p.add_argument("--tag", default="", help="a suffix for the regime's compare folder (e.g. other epochs)")
    p.add_argument("--device", help="override the scale's device (cpu, 0, 0,1, ...)")
    p.add_argument("--imgsz", type=int, help="a textured scale's images and runs at this size (own cache folder)")
    p.add_argument("--prepare-only", action="store_true", help="only the data, teachers and pretrained student")
    p.add_argument("--smoke", action="store_true", help="the scale end to end at a tiny size (own cache folder)")
    p.add_argument("--render", metavar="RESULTS_JSON", help="only write BENCHMARKS.md's block of a results json")
    p.add_argument("--against", metavar="ARM", help="with --render: also each arm's paired delta against this arm")
    p.add_argument("--collect", action="store_true", help="only gather the regimes' test jsons into <scale>.json")
    p.add_argument("compare_args", nargs="*", metavar="KEY=VALUE", help="compare arguments: arms=, seeds=, split=")
    a = p.parse_args()
    if a.render:
        update_benchmarks_md(Path(a.render).stem, render(Path(a.render), a.against))
        return
    if a.collect:
        collect(a.scale)
        return
    from ultralytics.cfg import smart_value

    scale = smoke(SCALES[a.scale]) if a.smoke else SCALES[a.scale]
    if a.imgsz and not scale.get("textured"):
        p.error(f"--imgsz is for the textured scales (their data is generated at any size), not {a.scale}")
    if a.imgsz:  # the scale's data generated at another size (a cache folder, teachers and student of its own)
        scale = {**scale, "data": {**scale["data"], "imgsz": a.imgsz}, "train": {**scale["train"], "imgsz": a.imgsz}}
    name = a.scale + (f"-{a.imgsz}px" if a.imgsz else "")
    where = CACHE / (name + ("-smoke" if a.smoke else ""))
    device = a.device or scale.get("device", "cpu")
    extra = {k: smart_value(v) for k, v in (kv.split("=", 1) for kv in a.compare_args)}
    names = regimes(scale) if a.all_regimes or a.prepare_only else [a.regime or default_regime(scale)]
    if names[0].endswith("-none") and not arm_bases(scale, names[0], extra) <= NO_TEACHER_TERM:
        p.error(f"--regime {names[0]} has no teacher: give arms without a teacher term (arms=none,none+freq)")
    if a.prepare_only:  # the trainings: the student's pretraining and each teacher (snapshots chosen apart)
        prepare(scale, where, [r for r in names if not r.endswith(("-typical", "-weak"))], device)
        print("student", student(scale, where, device))
        return
    out = {"scale": a.scale, "regimes": []}
    for r in names:
        start = time.time()
        summary = run_regime(scale, where, r, device, a.tag, extra)
        labels, _, strength = r.partition("-")
        # wall_s: what this command spent on the regime (its preparation and runs, less what the cache held)
        who = strength or r if summary["teacher"] and not summary["teacher"].get("placeholder") else "none"
        entry = {"name": r, "labels": labels, "teacher": who, "wall_s": round(time.time() - start)}
        out["regimes"].append({**entry, "compare": summary})
    stem = "-".join([name, *(["smoke"] if a.smoke else []), *([a.tag] if a.tag else [])])
    stem += ("" if a.all_regimes else f"-{names[0]}") + ("" if extra.get("split", "test") == "test" else "-val")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(out, indent=1, default=str))
    print(f"results: {RESULTS / (stem + '.json')}")


def collect(scale_name: str) -> None:
    """``results/<scale>.json`` from the regimes measured one at a time (``results/<scale>-<regime>.json``, scored on
    test), in the scale's regime order; a regime not yet measured is left out and named."""
    out = {"scale": scale_name, "regimes": [], "missing": []}
    for r in regimes(SCALES[scale_name]):
        f = RESULTS / f"{scale_name}-{r}.json"
        if not f.is_file():
            out["missing"].append(r)
            continue
        (regime,) = json.loads(f.read_text())["regimes"]
        if regime["compare"]["split"] != "test":
            raise SystemExit(f"{f} is scored on {regime['compare']['split']}, not test: rerun it with split=test")
        out["regimes"].append(regime)
    (RESULTS / f"{scale_name}.json").write_text(json.dumps(out, indent=1, default=str))
    print(f"results: {RESULTS / (scale_name + '.json')}; not yet measured: {', '.join(out['missing']) or 'none'}")
    counts = (("ikd", "kd", None), ("ikd", "none", None), ("ikd", "none", "exact"), ("kd", "none", None))
    for arm, ref, labels in counts:
        below, seeds, n = tally(out["regimes"], arm, ref, labels)
        where = f"{labels}-label regimes" if labels else "regimes"
        print(f"{arm} below {ref} at {below} of {seeds} paired test seeds, over {n} {where}")


def tally(regimes: list[dict], arm: str, ref: str, labels: str | None = None) -> tuple[int, int, int]:
    """Over the regimes that ran both arms (of one label kind, or all): the paired seeds where ``arm`` scored below
    ``ref``, the paired seeds, and the regimes."""
    from ikd_yolo.tools.compare.report import by_seed

    below = seeds = n = 0
    for r in regimes:
        arms = {e["name"]: by_seed(e) for e in r["compare"]["arms"] if e["seeds"]}
        if arm in arms and ref in arms and labels in {None, r["labels"]}:
            common = sorted(set(arms[arm]) & set(arms[ref]))
            below += sum(arms[arm][s] < arms[ref][s] for s in common)
            seeds, n = seeds + len(common), n + 1
    return below, seeds, n


def render(results: Path, ref: str | None = None) -> str:
    """The markdown of a results json: per regime, what ran where, compare's table and its verdicts (and, with
    ``ref``, every arm's paired delta against that arm)."""
    from ikd_yolo.tools.compare.report import table

    out = json.loads(results.read_text())
    lines = []
    for r in out["regimes"]:
        s, t = r["compare"], r["compare"]["teacher"]
        if t and not t.get("placeholder"):
            teacher = f"{r['teacher']} teacher (mAP50-95 {t['map50_95']:.4f} on {s['split']})"
        else:  # arms without a teacher term (none, none+freq)
            teacher = "no teacher term" + (" (IKDTrainer's runs loaded a 1-epoch placeholder teacher)" if t else "")
        lines += [
            f"### {r['name']}: {r['labels']} labels, {teacher}",
            "",
            f"Command: `{s['command']}`; machine: {s['machine']}; date {s['date']}; "
            f"ikd_yolo {s['ikd_yolo'].get('commit', s['ikd_yolo']['version'])}.",
            "",
            table(s),
            "",
            *[f"- {v}" for v in s["verdicts"] + (against(s, ref) if ref else [])],
            "",
        ]
    return "\n".join(lines)


def against(s: dict, ref: str) -> list[str]:
    """The verdict of every other arm of the compare summary ``s`` against its arm ``ref``, paired by seed."""
    from ikd_yolo.tools.compare.report import by_seed
    from ikd_yolo.tools.compare.stats import paired, verdict

    base = next(e for e in s["arms"] if e["name"] == ref)
    return [
        verdict(paired(e["name"], by_seed(e), ref, by_seed(base)), e["epoch_time_s"] / base["epoch_time_s"])
        for e in s["arms"]
        if e is not base and e["seeds"]
    ]


def update_benchmarks_md(marker: str, text: str) -> None:
    """Put ``text`` between the ``<!-- marker -->`` and ``<!-- /marker -->`` lines of BENCHMARKS.md."""
    path = ROOT / "BENCHMARKS.md"
    doc = path.read_text()
    start, end = f"<!-- {marker} -->", f"<!-- /{marker} -->"
    if start not in doc or end not in doc:
        raise SystemExit(f"BENCHMARKS.md has no {start} ... {end} block")
    path.write_text(doc[: doc.index(start) + len(start)] + "\n" + text.strip() + "\n" + doc[doc.index(end) :])


def default_regime(scale: dict) -> str:
    return HEADLINE if scale.get("textured") else next(iter(scale["teachers"]))


if __name__ == "__main__":
    main()
