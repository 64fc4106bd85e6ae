"""A run stopped from outside: Ctrl-C says where it stopped and how to go on, in one line; a run killed at any moment
leaves checkpoints that plain Ultralytics loads, without ikd_yolo."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ikd_yolo.cli import main

from .helpers import IKD_FAST, IMGSZ, PICO, ROOT, read_results, run_python

pytestmark = pytest.mark.slow  # each test trains in a process of its own


def sigint_on() -> None:
    """In the child, SIGINT back to its default: a suite started in the background (`&`, nohup) ignores it, and a
    Python that starts with SIGINT ignored never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_run(shapes_data, teacher_pt, project: Path, **extra) -> subprocess.Popen:
    """python run.py for 30 epochs (far more than the test waits for), one checkpoint per epoch kept; its stderr goes
    to project/../stderr.txt (read by :func:`finish`), its stdout nowhere."""
    args = {**IKD_FAST, "data": shapes_data, "teacher": teacher_pt, "model": PICO, "epochs": 30, **extra}
    argv = [f"{k}={v}" for k, v in args.items()] + [f"project={project}", "name=run", "save_period=1"]
    with open(project.parent / "stderr.txt", "wb") as err:
        cmd = [sys.executable, str(ROOT / "run.py"), *argv]
        return subprocess.Popen(cmd, cwd=project.parent, stdout=subprocess.DEVNULL, stderr=err, preexec_fn=sigint_on)


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
    assert re.fullmatch(
        r"run\.py: interrupted (in epoch 1 of 30, before the first epoch was saved|before training "
        r"started): nothing to resume; start the run again",
        lines[0],
    ), lines
    assert not (tmp_path / "runs").exists()  # the folders the run made are removed


def test_checkpoints_of_a_killed_run_load_and_validate_without_ikd_yolo(shapes_data, teacher_pt, tmp_path):
    """kill -9 in the middle of a run: its last.pt, best.pt and epochN.pt load, validate and predict in a process
    where ikd_yolo cannot be imported (they pickled the IKD wrapper); the run then resumes from that last.pt."""
    proc = start_run(shapes_data, teacher_pt, tmp_path / "runs", kd_loss="mgd", epochs=5)  # mgd: blocks of its own
    weights = tmp_path / "runs" / "run" / "weights"
    # no settling: checkpoints are renamed into place whole, and on a fast machine the 2 epochs left can end in 1 s
    wait_for(proc, weights / "epoch2.pt", settle=0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    files = [str(weights / f) for f in ("last.pt", "best.pt", "epoch1.pt", "epoch2.pt")]
    code = f"""
import sys
sys.modules["ikd_yolo"] = None  # make `import ikd_yolo` fail
try:
    import ikd_yolo
    raise SystemExit("ikd_yolo importable")
except ImportError:
    pass
import torch
from ultralytics import YOLO
for f in {files!r}:
    m = YOLO(f)
    assert type(m.model).__name__ == "DetectionModel", (f, type(m.model))
    r = m.val(data={str(shapes_data)!r}, imgsz={IMGSZ}, batch=8, plots=False, workers=0)
    assert 0 <= r.box.map <= 1
    m.predict(torch.rand(1, 3, {IMGSZ}, {IMGSZ}), verbose=False)
    print("loaded", f, torch.load(f, weights_only=False)["epoch"])
"""
    out = run_python(code, cwd=tmp_path).stdout
    assert out.count("loaded") == 4
    # the killed run's last.pt still resumes: its IKD state (projector, mgd blocks, gains) sits beside the student
    from ikd_yolo.checkpoint import wrapper_state

    state = wrapper_state(torch.load(weights / "last.pt", weights_only=False))
    assert any(k.startswith("kd_module.") for k in state) and "kd_gain" in state
    assert main([f"resume={weights / 'last.pt'}"]) == 0
    assert int(read_results(weights.parent)[-1]["epoch"]) == 5


def test_a_kill_in_the_middle_of_a_checkpoint_write_leaves_the_previous_file_whole(shapes_data, teacher_pt, tmp_path):
    """The process dies halfway through writing epoch 2's last.pt (its own ``Path.write_bytes`` kills it there): the
    last.pt on disk is still epoch 1's, whole, and the run resumes from it."""
    weights = tmp_path / "runs" / "run" / "weights"
    args = {**IKD_FAST, "data": shapes_data, "teacher": teacher_pt, "model": PICO, "epochs": 3}
    argv = [f"{k}={v}" for k, v in args.items()] + [f"project={tmp_path / 'runs'}", "name=run"]
    code = f"""
import os, pathlib, signal
real, writes = pathlib.Path.write_bytes, []
def dying(self, data):
    if "last.pt" in self.name:
        writes.append(self.name)
        if len(writes) == 2:
            with open(self, "wb") as f:
                f.write(data[: len(data) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
    return real(self, data)
pathlib.Path.write_bytes = dying
from ikd_yolo.cli import main
main({argv!r})
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert torch.load(weights / "last.pt", weights_only=False)["epoch"] == 0  # epoch 1's, whole
    assert main([f"resume={weights / 'last.pt'}"]) == 0
    assert int(read_results(weights.parent)[-1]["epoch"]) == 3
