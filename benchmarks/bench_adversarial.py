"""Cost of IKD's adversarial term per training step: time and peak memory, as ratios to the plain student.

    python benchmarks/bench_adversarial.py                                   # CPU: yolov8n <- yolov8s, 128 px, batch 8
    python benchmarks/bench_adversarial.py --device 0 --imgsz 640 --batch 16 --teacher yolov8l.yaml   # GPU, AMP

One training step is what Ultralytics' trainer does per batch: forward + loss, backward, optimizer step (under fp16
autocast with a GradScaler on CUDA, as with ``amp=True``). Methods, each on the same fixed batch of real generated
images and labels:

- ``plain``: the student alone (its detection loss);
- ``native``: Ultralytics' ``DistillationModel`` (detection + score-weighted feature L2 on clean images);
- ``kd``: ``IKDDistillationModel`` with the project's default recipe and the adversarial term off;
- ``ikd``: the default recipe with the adversarial term on (every setting at its default);
- ``ikd:key=value:key=value``: ``ikd`` with those IKD settings changed, e.g. ``ikd:adv_steps=1:adv_step_size=0``
  (one step of the whole budget), ``ikd:adv_scale=0.5`` (the attack at half resolution) or
  ``ikd:adv_batch_frac=1.0`` (every image attacked) or ``ikd:adv_bn=running`` (the adversarial images in a student
  forward of their own, BatchNorm frozen, as the reference's; the default ``split`` runs them in the clean images'
  forward).

Each method runs in its own fresh process so that peak memory is its own: ``torch.cuda.max_memory_allocated`` on
CUDA, the process's peak resident set (VmHWM, which includes Python and the libraries) on CPU. Time is the median of
``--steps`` timed steps after ``--warmup`` untimed ones; with ``--rounds R`` the list of methods runs R times in
turn and each method keeps its fastest round (all are in the json). ``--profile FILE`` appends, per method, the
profiler's table of the operators that took the most time over 3 steps. The frequency augmentation is a
dataloader cost, measured separately by ``bench_frequency.py``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

os.environ.setdefault("YOLO_OFFLINE", "1")
METHODS = (
    "plain",
    "native",
    "kd",
    "ikd",
    "ikd:adv_steps=1:adv_step_size=0",
    "ikd:adv_scale=0.5",
    "ikd:adv_batch_frac=1.0",
    "ikd:adv_bn=running",
)


def fixed_batch(imgsz: int, batch: int, device) -> dict:
    """A batch of ``batch`` generated images of ``imgsz`` px with their labels, on ``device``."""
    from ikd_yolo.demo.shapes import make_shapes_dataset

    root = Path(tempfile.mkdtemp(prefix="ikd_bench_adv_"))
    return common.fixed_batch(make_shapes_dataset(root, n_train=batch, n_val=1, imgsz=imgsz, seed=0), batch, device)


def build_model(method: str, a, device):
    """The model one method trains, in train mode: the student alone, Ultralytics' wrapper or the IKD one."""
    from ultralytics.cfg import get_cfg, smart_value
    from ultralytics.nn.distill_model import DistillationModel
    from ultralytics.nn.tasks import DetectionModel

    from ikd_yolo.config import IKDConfig, default_settings
    from ikd_yolo.model import IKDDistillationModel

    args = get_cfg(overrides={"imgsz": a.imgsz})
    student = DetectionModel(a.student, nc=4, verbose=False).to(device)
    student.args = args
    if method == "plain":
        model = student
    else:
        teacher = DetectionModel(a.teacher, nc=4, verbose=False).to(device).eval()
        if method == "native":
            model = DistillationModel(teacher_model=teacher, student_model=student)
        else:
            name, *pairs = method.split(":")
            if name not in ("kd", "ikd"):
                raise SystemExit(f"unknown method {method!r}: plain, native, kd, ikd or ikd:key=value:...")
            changed = dict(kv.split("=", 1) for kv in pairs)
            if name == "kd":
                changed["adv_aug"] = "False"
            ikd = IKDConfig.from_mapping({**default_settings(), **{k: smart_value(v) for k, v in changed.items()}})
            model = IKDDistillationModel(teacher_model=teacher, student_model=student, ikd=ikd)
        model.args = args
    return model.train()


def profile_steps(method: str, train_step, a, device, cuda: bool) -> None:
    """Append to ``a.profile`` where 3 more steps' time goes: the top operators by own time."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(3):
            train_step()
        if cuda:
            torch.cuda.synchronize(device)
    sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=sort, row_limit=a.profile_rows)
    with open(a.profile, "a") as f:
        f.write(f"\n=== {method}: 3 steps, sorted by {sort} ===\n{table}\n")


def run_one(method: str, a) -> dict:
    """Time ``a.steps`` training steps of one method in this process; return its figures."""
    import torch

    torch.manual_seed(0)
    cuda = a.device not in ("cpu", "")
    device = torch.device(f"cuda:{a.device}" if cuda and a.device.isdigit() else ("cuda" if cuda else "cpu"))
    model = build_model(method, a, device)
    params = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("teacher_model.")]
    opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    batch = fixed_batch(a.imgsz, a.batch, device)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)

    def train_step() -> torch.Tensor:
        """One step as Ultralytics' trainer takes it: forward + loss, backward, optimizer step; the loss."""
        with torch.autocast(device.type, enabled=cuda):
            loss, _ = model.loss(batch)
        scaler.scale(loss.sum()).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        return loss

    times = []
    for i in range(a.warmup + a.steps):
        if cuda:
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        loss = train_step()
        if cuda:
            torch.cuda.synchronize(device)
        if i >= a.warmup:
            times.append(time.perf_counter() - t)
        assert torch.isfinite(loss).all(), f"{method}: non-finite loss {loss}"
    times.sort()
    if a.profile:  # where one step's time goes, after the timed steps
        profile_steps(method, train_step, a, device, cuda)
    return {
        "method": method,
        "step_ms": 1000 * times[len(times) // 2],
        "peak_mem_mb": torch.cuda.max_memory_allocated(device) / 2**20 if cuda else common.peak_rss_mb(),
        "mem_kind": "cuda max_memory_allocated" if cuda else "process peak RSS",
        "device": torch.cuda.get_device_name(device) if cuda else platform.processor() or platform.machine(),
    }


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--student", default="yolov8n.yaml")
    p.add_argument("--teacher", default="yolov8s.yaml")
    p.add_argument("--imgsz", type=int, default=128)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--device", default="cpu", help="cpu, or a CUDA index such as 0 (then fp16 AMP is used)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the whole list of methods this many times, in turn (fresh processes), and keep each method's "
        "fastest median: a GPU's first processes run slower (clocks, caches), which a single round charges to "
        "whichever method runs first",
    )
    p.add_argument("--profile", help="append a profiler table of 3 steps per method (first round) to this file")
    p.add_argument("--profile-rows", type=int, default=25, help=argparse.SUPPRESS)
    p.add_argument("--json", help="also write the results to this file")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: run a single method in this process
    return p.parse_args()


def run_rounds(a, names: list[str]) -> list[list[dict]]:
    """Every method of ``names`` in a fresh process, ``a.rounds`` times in turn: each round's figures."""
    rounds: list[list[dict]] = []
    for r in range(a.rounds):
        rounds.append([])
        for method in names:
            keys = ("student", "teacher", "imgsz", "batch", "device", "steps", "warmup", "profile_rows")
            cmd = [sys.executable, __file__, "--one", method]
            cmd += [f"--{k.replace('_', '-')}={getattr(a, k)}" for k in keys]
            if a.profile and r == 0:
                cmd.append(f"--profile={a.profile}")
            out = subprocess.run(cmd, capture_output=True, text=True)
            line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
            if out.returncode or not line:
                sys.exit(f"{method} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
            rounds[-1].append(json.loads(line[0][7:]))
            print(f"  round {r + 1}, {method}: {rounds[-1][-1]['step_ms']:.1f} ms/step", flush=True)
    return rounds


def main() -> None:
    a = parse_args()
    if a.one:
        print("RESULT " + json.dumps(run_one(a.one, a)))
        return

    names = a.methods.split(",")
    rounds = run_rounds(a, names)
    rows = []
    for i in range(len(names)):  # each method's fastest round; every round's median kept in the json
        runs = [rnd[i] for rnd in rounds]
        best = min(runs, key=lambda row: row["step_ms"])
        rows.append({**best, "step_ms_rounds": [row["step_ms"] for row in runs]})
    base = rows[0]
    for r in rows:
        r["time_ratio"] = r["step_ms"] / base["step_ms"]
        r["mem_ratio"] = r["peak_mem_mb"] / base["peak_mem_mb"]
    stamp = datetime.datetime.now().strftime("%Y-%m-%d")
    print(
        f"\nstudent {a.student}, teacher {a.teacher}, imgsz {a.imgsz}, batch {a.batch}, device {base['device']} "
        f"({os.cpu_count()} CPUs), {stamp}; median of {a.steps} steps after {a.warmup}, fastest of {a.rounds} "
        f"round(s); memory: {base['mem_kind']}"
    )
    print(f"{'method':<8} {'ms/step':>9} {'x plain':>8} {'peak MB':>9} {'x plain':>8}")
    for r in rows:
        print(
            f"{r['method']:<8} {r['step_ms']:>9.1f} {r['time_ratio']:>8.2f} {r['peak_mem_mb']:>9.0f} "
            f"{r['mem_ratio']:>8.2f}"
        )
    if a.json:
        meta = {"date": stamp, "args": {k: v for k, v in vars(a).items() if k not in ("json", "one")}}
        Path(a.json).write_text(json.dumps({**meta, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
