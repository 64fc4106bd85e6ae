"""Command line: ``python run.py key=value ...`` and the ``ikd-yolo`` console script.

    python run.py data=D teacher=T model=M [any Ultralytics train key=value] [IKD keys]
    python run.py                 # the embedded demo: generated data, a teacher trained on it, three students
    python run.py --help          # this text and every IKD key with its default

Arguments are parsed by Ultralytics' own ``key=value`` parser, so values mean what they mean to ``yolo train``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml
from ultralytics.utils import RANK

from .args import TRAIN_KEYS, check_key, parse_args
from .config import default_settings, settings_help
from .errors import Interrupted, UserError, user_message
from .exports import check_export_format

USAGE = """usage: python run.py data=DATA.yaml teacher=TEACHER.pt model=STUDENT.yaml|.pt [key=value ...]
       python run.py                 (embedded demo on generated data, CPU friendly)
       python run.py compare data=DATA.yaml teacher=TEACHER.pt model=STUDENT.yaml epochs=E [seeds=3] ...
                                     (does distillation pay on this data? arms x seeds, paired; compare --help)
       python run.py probe model=STUDENT.pt [teacher=TEACHER.pt] data=DATA.yaml [radii=8,16,32,64] ...
                                     (frequency probe: AP by object size on low-/high-pass images; probe --help)
       python run.py --help          (python run.py --version: ikd_yolo's, Ultralytics' and torch's versions)

Any Ultralytics train argument works (epochs, imgsz, batch, device=0 or device=0,1, project, name, resume, amp, ...);
teacher= is the trained teacher checkpoint (Ultralytics' distill_model=), model= the student.
export=FORMAT exports best.pt when training ends (engine, onnx, or any Ultralytics format).
resume=True model=RUN/weights/last.pt (or resume=RUN/weights/last.pt) resumes that run.
cfg=FILE.yaml reads train arguments from a file (e.g. a copy of cfg/ikd.yaml); values on the command line win.
A mistake in the input prints one line and exits with code 2; IKD_DEBUG=1 shows the traceback.
"""


def apply_cfg_file(overrides: dict) -> dict:
    """``cfg=FILE``: the train arguments of a yaml file (``key: value``: a copy of cfg/ikd.yaml, of a run's ikd.yaml,
    or ``yolo copy-cfg``'s file), under the command line's own, as ``yolo train cfg=FILE`` reads it; its empty values
    keep their defaults."""
    if not overrides.get("cfg"):
        return overrides
    path = Path(str(overrides["cfg"]))
    if not path.is_file():
        raise UserError(f"cfg={path} does not exist: give a yaml file of train arguments (key: value per line)")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"cfg={path} is not valid yaml ({str(e).splitlines()[0]}): fix the file") from None
    if not isinstance(loaded, dict):
        raise UserError(f"cfg={path} holds no key: value pairs: write one train argument per line, e.g. epochs: 100")
    # cfg: (yolo copy-cfg writes it) is skipped as Ultralytics skips it; kd_gains: a run's ikd.yaml records them
    loaded = {str(k): v for k, v in loaded.items() if k not in {"cfg", "kd_gains"}}
    if "names" in loaded and ("train" in loaded or "val" in loaded):
        raise UserError(f"cfg={path} is a data yaml (it has names: and train:/val:): pass it as data={path}")
    for key in loaded:
        check_key(key, TRAIN_KEYS, f"cfg={path}: unknown argument '{key}'")
    from_file = {k: v for k, v in loaded.items() if v is not None}
    return {**from_file, **{k: v for k, v in overrides.items() if k != "cfg"}}


def resolve_resume(overrides: dict) -> dict:
    """``resume=True model=PATH`` resumes PATH (Ultralytics would take the newest last.pt under the working folder);
    ``resume=PATH`` resumes PATH; a bare ``resume=True`` takes the newest last.pt, or says that there is none."""
    resume = overrides.get("resume")
    if not resume:
        return overrides
    overrides = dict(overrides)
    if resume is True:
        if overrides.get("model"):
            overrides["resume"] = str(overrides.pop("model"))
        else:
            from ultralytics.utils.files import get_latest_run

            latest = get_latest_run(os.getcwd())
            if not latest:
                raise UserError(
                    f"resume=True found no last.pt under {os.getcwd()}: name the run to resume, e.g. "
                    "resume=runs/detect/train/weights/last.pt"
                )
            overrides["resume"] = latest
    path = Path(str(overrides["resume"]))
    if not path.is_file():
        from .runs import check_has_checkpoint

        check_has_checkpoint(path)  # refuses: a run stopped before its first save, or no such file
    overrides.pop("model", None)
    return overrides


def help_text() -> str:
    """Usage plus every IKD key with its default and meaning (from cfg/ikd.yaml)."""
    defaults, notes = default_settings(), settings_help()
    width = max(len(f"{k}={v}") for k, v in defaults.items())
    lines = [USAGE, "IKD keys (defaults from cfg/ikd.yaml):"]
    lines += [f"  {f'{k}={v}':<{width}}  {notes.get(k, '')}" for k, v in defaults.items()]
    return "\n".join(lines)


def train(overrides: dict) -> Path:
    """Train with IKD and, if ``export=FORMAT`` was given, export the best student; return the run folder."""
    from ultralytics import YOLO

    from .trainer import IKDTrainer

    overrides = resolve_resume(apply_cfg_file(overrides))
    export_format = overrides.pop("export", None)
    missing = [k for k in ("data", "model") if k not in overrides and not overrides.get("resume")]
    if missing:
        raise UserError(
            f"missing {' and '.join(f'{k}=' for k in missing)}: e.g. python run.py data=my_data.yaml "
            "teacher=teacher.pt model=yolo11n.yaml (python run.py --help)"
        )
    if export_format is not None:
        check_export_format(export_format, overrides.get("device"), overrides.get("simplify", True))
    trainer = None
    try:
        trainer = IKDTrainer(overrides=overrides)
        trainer.train()
    except KeyboardInterrupt as e:
        from .runs import interrupted_message

        raise Interrupted(interrupted_message(trainer)) from e
    weights = trainer.best if trainer.best.exists() else trainer.last
    print(f"\nIKD student: {weights}  (plain Ultralytics checkpoint: yolo val model={weights} data=...)")
    if export_format and RANK in {-1, 0}:
        # the student alone (best.pt holds no teacher), written next to best.pt by Ultralytics' exporter;
        # the precision (quantize=16 for a TensorRT fp16 engine, or its older alias half=True) and device= are
        # taken from the training arguments
        precision = {k: overrides[k] for k in ("quantize", "half") if k in overrides}
        exported = YOLO(weights).export(
            format=str(export_format), imgsz=trainer.args.imgsz, device=overrides.get("device"), **precision
        )
        print(f"exported: {exported}")
    return trainer.save_dir


def main(argv: list[str] | None = None) -> int:
    """Entry point shared by run.py and the ikd-yolo script."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        return _dispatch(argv)
    except KeyboardInterrupt as e:  # Ctrl-C: one line, where the run stopped and how to go on, and exit code 130
        if os.environ.get("IKD_DEBUG", "0") not in {"", "0"}:
            raise
        print(f"run.py: {e if isinstance(e, Interrupted) else 'interrupted'}", file=sys.stderr)
        return 130
    except Exception as e:  # one line and exit code 2 for a user's mistake; a bug keeps its traceback
        message = user_message(e)
        if message is None or os.environ.get("IKD_DEBUG", "0") not in {"", "0"}:
            raise
        print(f"run.py: {message}", file=sys.stderr)
        return 2


def _dispatch(argv: list[str]) -> int:
    if argv and argv[0] == "probe":
        from .tools.probe import main as probe_main

        return probe_main(argv[1:])
    if argv and argv[0] == "compare":
        from .tools.compare import main as compare_main

        return compare_main(argv[1:])
    if any(a in {"-h", "--help", "help"} for a in argv):
        print(help_text())
        return 0
    if argv in (["--version"], ["version"]):
        print(versions())
        return 0
    if not argv:
        from .demo import run_demo

        run_demo()
        return 0
    train(parse_args(argv))
    return 0


def versions() -> str:
    """ikd_yolo's version and those of the stack it runs on (what a bug report needs)."""
    import torch
    import ultralytics

    from . import __version__

    return f"ikd_yolo {__version__} (ultralytics {ultralytics.__version__}, torch {torch.__version__})"


def entrypoint() -> None:
    """Console-script wrapper."""
    raise SystemExit(main())
