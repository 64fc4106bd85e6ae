"""``compare``: does distillation pay on my data? Paired seeds, one answer with error bars.

    python run.py compare data=D.yaml teacher=T.pt model=M.yaml|.pt epochs=E [seeds=3] [arms=none,native,kd,ikd]
                          [split=test|val] [any train argument] [IKD keys, for every kd/ikd arm]
    python run.py compare ... --plan      # the commands of each run, for a cluster's scheduler, then --collect
    python run.py compare folder=runs/compare/compare --collect    # the report from the finished runs
    ikd-yolo compare ...                  # the same

Every arm (:mod:`.arms`) trains the same student from the same initial weights for the same epochs, at every seed
(``seeds=3`` means seeds 0, 1, 2; ``seeds=0,4,7`` names them). Each (arm, seed) is an ordinary Ultralytics run
folder under the comparison's folder (``project``/``name``, default ``runs/compare/compare``, numbered like every
run folder; ``exist_ok=True``, or ``folder=`` that folder, continues in it: finished runs are kept). Runs go in
sequence on one device, one per GPU with ``device=0,1,...``, two at once on the CPU with ``device=cpu,cpu``. Each is
scored from its ``last.pt`` on ``split`` (default ``test`` when the data yaml has one, else ``val``) with
:func:`ikd_yolo.tools.sizeval.evaluate`, and the teacher once. The report (:mod:`.report`) pairs the arms by seed:
mean ± sd, each seed, the paired difference against ``none`` and ``native`` with a 95 % t interval and the seeds won,
the time and memory against ``none``, and a closing recommendation; it is printed and written as ``compare.md``,
``compare.json`` and ``compare.png``.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import yaml

from ...errors import UserError
from .arms import DEFAULT_ARMS, parse_arms
from .runs import Setup, check_reusable, score_teacher, train_run
from .schedule import devices, missing_runs, run_pending

OWN_KEYS = {"arms": DEFAULT_ARMS, "seeds": 3, "split": None, "small_area": None, "medium_area": None}
CONTINUE_KEYS = {"folder", "run", "device"}  # what a command that continues a comparison's folder may set
ARGS_FILE = "compare_args.yaml"
FLAGS = {"--plan", "--collect"}


def seed_list(value: Any) -> list[int]:
    """``seeds=3`` -> [0, 1, 2]; ``seeds=0,4`` -> [0, 4]."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return list(range(value))
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    try:
        seeds = [int(s) for s in items if str(s).strip()]
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise UserError(f"seeds={value}: give a count (seeds=3 for 0,1,2) or distinct seeds (seeds=0,4,7)")
    return seeds


def default_split(data: dict, asked: str | None, source) -> str:
    """``split=`` as asked (checked against the data yaml), else ``test`` when the data has one, else ``val``."""
    if asked is None:
        return "test" if data.get("test") else "val"
    if asked not in ("train", "val", "test") or not data.get(asked):
        have = ", ".join(s for s in ("val", "test") if data.get(s))
        raise UserError(f"split={asked}: data={source} has no such split (it has {have}); add it to the yaml")
    return str(asked)


def area_range(small: Any, medium: Any, imgsz: int) -> tuple[float, float] | None:
    """``small_area``/``medium_area`` (fractions of an imgsz x imgsz image) as sizeval's pixel range, or None (COCO)."""
    if small is None and medium is None:
        return None
    s, m = float(small if small is not None else 0.0025), float(medium if medium is not None else 0.09)
    if not 0 < s < m <= 1:
        raise UserError(f"small_area={s} and medium_area={m}: need 0 < small_area < medium_area <= 1")
    return s * imgsz * imgsz, m * imgsz * imgsz


def new_setup(kwargs: dict) -> Setup:
    """Check a new comparison's arguments (before anything trains) and name its folder."""
    from ultralytics.data.utils import check_det_dataset
    from ultralytics.utils.files import increment_path

    own = {k: kwargs.pop(k, v) for k, v in OWN_KEYS.items()}
    if "seed" in kwargs:
        raise UserError("seed= is set per run by compare: give seeds=3 (0, 1, 2) or seeds=0,4,7")
    missing = [k for k in ("data", "model") if not kwargs.get(k)]
    if missing:
        raise UserError(f"compare needs {' and '.join(k + '=' for k in missing)} (python run.py compare --help)")
    arms = parse_arms(own["arms"])
    teacher = kwargs.pop("teacher", None) or kwargs.pop("distill_model", None)
    if teacher is None and any(a.uses_teacher for a in arms):
        raise UserError(f"arms {', '.join(a.name for a in arms if a.uses_teacher)} need teacher=TEACHER.pt")
    data = check_det_dataset(str(kwargs["data"]))
    from ...config import KEYS

    ikd = {k: kwargs.pop(k) for k in list(kwargs) if k in KEYS}
    folder = Path(str(kwargs.pop("project", None) or "runs/compare")) / str(kwargs.pop("name", None) or "compare")
    folder = increment_path(folder, exist_ok=bool(kwargs.pop("exist_ok", False))).resolve()
    imgsz = int(kwargs.get("imgsz", 640)) if str(kwargs.get("imgsz", 640)).isdigit() else 640
    return Setup(
        folder=folder,
        arms=arms,
        seeds=seed_list(own["seeds"]),
        train=kwargs,
        teacher=str(teacher) if teacher else None,
        ikd=ikd,
        split=default_split(data, own["split"], kwargs["data"]),
        area_rng=area_range(own["small_area"], own["medium_area"], imgsz),
    )


def preflight(setup: Setup) -> None:
    """Refuse a device list, teacher, student or an arm's argument value that cannot work, in seconds, before the
    first run trains."""
    from ...preflight import check_args, normalize_overrides
    from ...preflight import preflight as check

    devices(setup.train.get("device"))
    for arm in setup.arms:  # an arm's own value (native:dis=abc) would otherwise fail when its first run starts
        try:
            check_args(normalize_overrides(setup.overrides(arm, setup.seeds[0])))
        except UserError as e:
            raise UserError(f"arms= entry '{arm.name}': {e}") from e
    ikd_arm = next((a for a in setup.arms if a.trainer == "ikd"), None)
    if ikd_arm is not None:
        overrides = setup.overrides(ikd_arm, setup.seeds[0])
        check(normalize_overrides({k: v for k, v in overrides.items() if k not in {"project", "name", "exist_ok"}}))


def save_setup(setup: Setup) -> None:
    setup.folder.mkdir(parents=True, exist_ok=True)
    state = {
        "arm_entries": [_entry(a) for a in setup.arms],
        "seeds": setup.seeds,
        "train": setup.train,
        "teacher": setup.teacher,
        "ikd": setup.ikd,
        "split": setup.split,
        "area_rng": list(setup.area_rng) if setup.area_rng else None,
    }
    (setup.folder / ARGS_FILE).write_text(yaml.safe_dump(state, sort_keys=False))


def _entry(arm) -> str:
    """The ``arms=`` entry that parses back to ``arm``."""
    if arm.name in {arm.base} or not arm.settings:
        return arm.name
    pairs = [f"{k}={v}" for k, v in arm.settings.items()]
    if arm.name.startswith(arm.base + ":"):
        return arm.name
    return ":".join([arm.name, *([f"base={arm.base}"] if arm.base != "ikd" else []), *pairs])


def load_setup(folder: Any, device: Any = None) -> Setup:
    """The comparison saved in ``folder`` (``folder=`` continues it, e.g. from a cluster job)."""
    f = Path(str(folder)) / ARGS_FILE
    if not f.is_file():
        raise UserError(f"folder={folder} holds no comparison ({ARGS_FILE} is missing): give the folder compare made")
    s = yaml.safe_load(f.read_text())
    train = {**s["train"], **({"device": device} if device is not None else {})}
    return Setup(
        folder=f.parent.resolve(),
        arms=parse_arms(s["arm_entries"]),
        seeds=s["seeds"],
        train=train,
        teacher=s["teacher"],
        ikd=s["ikd"],
        split=s["split"],
        area_rng=tuple(s["area_rng"]) if s["area_rng"] else None,
    )


def plan(setup: Setup) -> str:
    """One command per run (any order, any machine that sees the folder), then the one that builds the report."""
    base = f"{sys.executable} -m ikd_yolo compare folder={shlex.quote(str(setup.folder))}"
    cmds = [f"{base} run={shlex.quote(f'{a.name}:{s}')}" for a, s in setup.runs()]
    return "\n".join([*cmds, f"{base} --collect"])


def write_report(setup: Setup, command: str) -> dict:
    """Write and print the report of the finished runs; return its summary."""
    from ultralytics.utils import LOGGER

    from .report import markdown, plot, summary

    missing = missing_runs(setup)
    if missing:
        LOGGER.warning(f"compare: {len(missing)} run(s) not finished, left out of the report: {', '.join(missing)}")
    s = summary(setup, score_teacher(setup), command)
    text = markdown(s)
    (setup.folder / "compare.md").write_text(text)
    import json

    (setup.folder / "compare.json").write_text(json.dumps(s, indent=1, default=str))
    plot(s, setup.folder / "compare.png")
    print("\n" + text)
    if setup.split == "val":
        print(
            "note: scored on val, the split that Ultralytics validated on during training (best.pt, early stopping) "
            "and that you may have tuned on; add a test: split to the data yaml for a held-out answer"
        )
    print(f"scored on split '{setup.split}'; results in {setup.folder} (compare.md, compare.json, compare.png)")
    return s


def compare(command: str = "", **kwargs: Any) -> dict:
    """Run a comparison from Python (the arguments of ``python run.py compare``) and return its report's summary."""
    setup = new_setup(dict(kwargs))
    for arm, seed in setup.runs():  # a folder with runs of other settings is refused before it is touched
        check_reusable(setup, arm, seed)
    preflight(setup)
    save_setup(setup)
    run_pending(setup)
    return write_report(setup, command or "ikd_yolo.tools.compare.compare(...)")


def main(argv: list[str]) -> int:
    """``python run.py compare ...``."""
    from ...args import TRAIN_KEYS, parse_args

    if any(a in {"-h", "--help", "help"} for a in argv):
        print(__doc__)
        return 0
    flags = {a for a in argv if a.startswith("--")}
    unknown = flags - FLAGS
    if unknown:
        raise UserError(f"compare: unknown flag {sorted(unknown)[0]} (flags: --plan, --collect)")
    known = TRAIN_KEYS | set(OWN_KEYS) | CONTINUE_KEYS
    kwargs = parse_args([a for a in argv if a not in flags], known=known, command="compare")
    command = "python run.py compare " + " ".join(argv)
    if "folder" not in kwargs and not flags and "run" not in kwargs:
        compare(command, **kwargs)
        return 0
    if "folder" in kwargs:
        extra = set(kwargs) - CONTINUE_KEYS
        if extra:
            raise UserError(f"folder= continues a comparison as it was set up: drop {', '.join(sorted(extra))}=")
        setup = load_setup(kwargs["folder"], kwargs.get("device"))
    else:
        setup = new_setup(kwargs)
        for arm, seed in setup.runs():
            check_reusable(setup, arm, seed)
        preflight(setup)
        save_setup(setup)
    if "run" in kwargs:
        arm_name, _, seed = str(kwargs["run"]).rpartition(":")
        if not seed.isdigit():
            raise UserError(f"run={kwargs['run']}: give ARM:SEED, e.g. run=ikd:0")
        if kwargs.get("device") is None:  # one run takes one slot of the comparison's list (cpu,cpu or 0,1: the first)
            setup.train["device"] = devices(setup.train.get("device"))[0]
        train_run(setup, setup.arm(arm_name), int(seed))
    elif "--plan" in flags:
        print(plan(setup))
    else:  # --collect
        write_report(setup, command)
    return 0
