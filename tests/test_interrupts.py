"""A run stopped from outside: Ctrl-C says where it stopped and how to go on, in one line."""

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .helpers import IKD_FAST, PICO, ROOT

pytestmark = pytest.mark.slow  # each test trains in a process of its own


def start_run(shapes_data, teacher_pt, project: Path, **extra) -> subprocess.Popen:
    """python run.py for 30 epochs (far more than the test waits for), one checkpoint per epoch kept; its stderr goes
    to project/../stderr.txt (read by :func:`finish`), its stdout nowhere."""
    args = {**IKD_FAST, "data": shapes_data, "teacher": teacher_pt, "model": PICO, "epochs": 30, **extra}
    argv = [f"{k}={v}" for k, v in args.items()] + [f"project={project}", "name=run", "save_period=1"]
    with open(project.parent / "stderr.txt", "wb") as err:
        cmd = [sys.executable, str(ROOT / "run.py"), *argv]
        return subprocess.Popen(cmd, cwd=project.parent, stdout=subprocess.DEVNULL, stderr=err)


def finish(proc: subprocess.Popen, project: Path) -> list[str]:
    """Wait for the process to end; the non-empty lines of its stderr."""
    proc.wait(timeout=120)
    return [ln for ln in (project.parent / "stderr.txt").read_text().splitlines() if ln.strip()]


def wait_for(proc: subprocess.Popen, path: Path, timeout: float = 300, settle: float = 1.0) -> None:
    """Wait until ``path`` exists (the run is still going), then ``settle`` seconds (a file being written)."""
    end = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the run ended ({proc.returncode}) before {path} appeared"
        assert time.time() < end, f"{path} did not appear"
        time.sleep(0.05)
    time.sleep(settle)


def test_ctrl_c_says_where_the_run_stopped_and_how_to_resume(shapes_data, teacher_pt, tmp_path):
    """Ctrl-C after the first epoch is saved: one line with the epoch reached and the exact resume= command, exit 130
    (Ultralytics printed a KeyboardInterrupt traceback)."""
    proc = start_run(shapes_data, teacher_pt, tmp_path / "runs")
    last = tmp_path / "runs" / "run" / "weights" / "last.pt"
    wait_for(proc, last)
    proc.send_signal(signal.SIGINT)
    lines = finish(proc, tmp_path / "runs")
    assert proc.returncode == 130 and len(lines) == 1, lines[-30:]
    m = re.fullmatch(
        r"run\.py: interrupted in epoch (\d+) of 30; epochs? (?:1-)?(\d+) (?:is|are) saved in (\S+)\. Resume with: "
        r"python run\.py resume=(\S+)",
        lines[0],
    )
    assert m, lines[0]
    reached, saved = int(m[1]), int(m[2])
    assert 1 <= saved <= reached and Path(m[3]) == last and Path(m[4]) == last


def test_ctrl_c_before_the_first_save_says_there_is_nothing_to_resume(shapes_data, teacher_pt, tmp_path):
    proc = start_run(shapes_data, teacher_pt, tmp_path / "runs")
    wait_for(proc, tmp_path / "runs" / "run" / "args.yaml", settle=0)  # the run folder exists, set-up has begun
    proc.send_signal(signal.SIGINT)
    lines = finish(proc, tmp_path / "runs")
    assert proc.returncode == 130 and len(lines) == 1, lines[-30:]
    assert "before the first epoch was saved: nothing to resume" in lines[0], lines
    assert not (tmp_path / "runs").exists()  # the folders the run made are removed
