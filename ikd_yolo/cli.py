"""Command line: ``python run.py key=value ...`` and the ``ikd-yolo`` console script.

    python run.py data=D teacher=T model=M [any Ultralytics train key=value] [IKD keys]
    python run.py                 # the embedded demo: generated data, a teacher trained on it, three students
    python run.py --help          # this text and every IKD key with its default

Arguments are parsed by Ultralytics' own ``key=value`` parser, so values mean what they mean to ``yolo train``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ultralytics.cfg import parse_key_value_pair
from ultralytics.utils import RANK

from .config import IKDSettingError, default_settings, settings_help
from .teacher import TeacherError

USAGE = """usage: python run.py data=DATA.yaml teacher=TEACHER.pt model=STUDENT.yaml|.pt [key=value ...]
       python run.py                 (embedded demo on generated data, CPU friendly)
       python run.py probe model=STUDENT.pt [teacher=TEACHER.pt] data=DATA.yaml [radii=8,16,32,64] ...
                                     (frequency probe: AP by object size on low-/high-pass images; probe --help)
       python run.py --help

Any Ultralytics train argument works (epochs, imgsz, batch, device=0 or device=0,1, project, name, resume, amp, ...);
teacher= is the trained teacher checkpoint (Ultralytics' distill_model=), model= the student.
export=FORMAT exports best.pt when training ends (engine, onnx, or any Ultralytics format).
"""


def parse_args(argv: list[str]) -> dict:
    """Turn ``key=value`` tokens into an overrides dict, with a clear error for anything else."""
    overrides = {}
    for token in argv:
        if "=" not in token or token.startswith("="):
            raise SystemExit(f"run.py: argument '{token}' is not key=value (e.g. epochs=100). See python run.py --help")
        key, value = parse_key_value_pair(token)
        overrides[key] = value
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

    overrides = dict(overrides)
    export_format = overrides.pop("export", None)
    missing = [k for k in ("data", "model") if k not in overrides and not overrides.get("resume")]
    if missing:
        raise SystemExit(f"run.py: missing {' and '.join(f'{k}=' for k in missing)}\n\n{USAGE}")
    if export_format is not None:
        check_export_format(export_format)
    trainer = IKDTrainer(overrides=overrides)
    trainer.train()
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


def check_export_format(fmt) -> None:
    """Refuse an unknown ``export=`` format before any training time is spent."""
    from ultralytics.engine.exporter import export_formats

    known = [f for f in export_formats()["Argument"] if f != "-"]
    if str(fmt) not in known:
        raise SystemExit(f"run.py: export={fmt} is not an Ultralytics export format; use one of {', '.join(known)}")


def main(argv: list[str] | None = None) -> int:
    """Entry point shared by run.py and the ikd-yolo script."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "probe":
        from .probe import main as probe_main

        return probe_main(argv[1:])
    if any(a in {"-h", "--help", "help"} for a in argv):
        print(help_text())
        return 0
    if not argv:
        from .demo import run_demo

        run_demo()
        return 0
    try:
        train(parse_args(argv))
    except (TeacherError, IKDSettingError) as e:
        print(f"run.py: {e}", file=sys.stderr)
        return 2
    return 0


def entrypoint() -> None:
    """Console-script wrapper."""
    raise SystemExit(main())
