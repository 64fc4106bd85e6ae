"""Running the pending runs of a comparison: in sequence on one device, one run per GPU with ``device=0,1,...``
(two CPU runs at once with ``device=cpu,cpu``), with a progress line that names the run, its epoch and the time left
for the whole comparison."""

from __future__ import annotations

import statistics
import subprocess
import time

from ultralytics.utils import LOGGER

from ...errors import UserError
from .arms import Arm
from .runs import Setup, check_reusable, epochs_done, launch, load_run, score_run

PROGRESS_EVERY_S = 60.0


def devices(device) -> list[str]:
    """One slot per GPU of a ``device=0,1,2`` list (a GPU named twice, ``device=0,0``, takes two runs at once), one
    per ``cpu`` of a ``device=cpu,cpu`` list (Ultralytics trains on all CPU cores but one, so on two cores a second
    run uses the idle one); a single slot otherwise (CPU, one GPU, MPS)."""
    text = str(device if device not in (None, "") else "cpu")
    ids = [d.strip() for d in text.split(",") if d.strip()]
    if len(ids) > 1 and "cpu" in ids and set(ids) != {"cpu"}:
        raise UserError(
            f"device={text} mixes the CPU and GPUs: give device=cpu,cpu (two CPU runs) or GPUs (device=0,1)"
        )
    return ids if len(ids) > 1 and (all(d.isdigit() for d in ids) or set(ids) == {"cpu"}) else [text]


class Scheduler:
    """Starts the pending runs on free device slots, watches them, and estimates the time left."""

    def __init__(self, setup: Setup):
        self.setup = setup
        self.todo = [(a, s) for a, s in setup.runs() if check_reusable(setup, a, s) is None]
        self.total = len(setup.runs())
        self.started = self.total - len(self.todo)
        self.slots = devices(setup.train.get("device"))
        self.running: dict[int, tuple[Arm, int, subprocess.Popen]] = {}  # slot index -> run
        self.failed: list[str] = []
        self.epochs = int(setup.train.get("epochs", 100))
        self.per_arm: dict[str, list[float]] = {}  # seconds per epoch of finished runs, by arm
        for arm, seed in setup.runs():
            record = load_run(setup.run_dir(arm, seed))
            if record:
                self.per_arm.setdefault(arm.name, []).append(record["epoch_time_s"])

    def start_free_slots(self) -> None:
        for i, device in enumerate(self.slots):
            if i in self.running:
                continue
            if not self.todo or self.failed:
                return
            arm, seed = self.todo.pop(0)
            self.started += 1
            LOGGER.info(f"compare: run {self.started}/{self.total} {arm.name} seed {seed} on device {device}")
            self.running[i] = (arm, seed, launch(self.setup, arm, seed, device))

    def collect_finished(self) -> None:
        for slot, (arm, seed, proc) in list(self.running.items()):
            if proc.poll() is None:
                continue
            del self.running[slot]
            log = f"{self.setup.run_dir(arm, seed)}.log"
            record = load_run(self.setup.run_dir(arm, seed))
            if proc.returncode or record is None:
                self.failed.append(f"{arm.name} seed {seed} failed (exit {proc.returncode}; its log: {log})")
            else:
                self.per_arm.setdefault(arm.name, []).append(record["epoch_time_s"])

    def seconds_left(self) -> float | None:
        """The time left for the whole comparison (:func:`time_left`), from the running runs' results.csv."""
        running = [(a.name, *epochs_done(self.setup.run_dir(a, s))) for a, s, _ in self.running.values()]
        pending = [a.name for a, _ in self.todo]
        return time_left(running, pending, self.per_arm, self.epochs, len(self.slots))

    def progress_line(self) -> str:
        arm, seed, _ = next(iter(self.running.values()))
        done, _ = epochs_done(self.setup.run_dir(arm, seed))
        left = self.seconds_left()
        eta = f"about {left / 60:.0f} min left in all" if left is not None else "time left known after one epoch"
        busy = f" (+{len(self.running) - 1} more running)" if len(self.running) > 1 else ""
        return f"compare: {arm.name} seed {seed}, epoch {done}/{self.epochs}{busy}; {eta}"

    def run(self) -> None:
        if self.started:
            LOGGER.info(f"compare: {self.started} of {self.total} runs finished before in {self.setup.folder}: reused")
        last_line = time.time()
        while self.todo and not self.failed or self.running:
            self.start_free_slots()
            self.collect_finished()
            if self.running and time.time() - last_line > PROGRESS_EVERY_S:
                last_line = time.time()
                LOGGER.info(self.progress_line())
            time.sleep(0.5)
        if self.failed:
            raise UserError(f"compare: {self.failed[0]}; fix it and rerun the same command (finished runs are kept)")


def time_left(running, pending, finished: dict, epochs: int, slots: int) -> float | None:
    """Seconds until every run has trained ``epochs`` epochs on ``slots`` slots: ``running`` is (arm, epochs done,
    seconds spent) of each running run, ``pending`` the arms of the runs not started, ``finished`` the seconds per
    epoch of the finished runs by arm. A run that has not finished an epoch goes at its arm's pace: its finished
    runs', else its running runs', else that of every run so far; None before any run has finished an epoch."""
    now: dict[str, list[float]] = {}
    for arm, done, spent in running:
        if done:
            now.setdefault(arm, []).append(spent / done)
    every = [v for paces in (*finished.values(), *now.values()) for v in paces]

    def pace(arm: str) -> float | None:
        seen = finished.get(arm) or now.get(arm) or every
        return statistics.fmean(seen) if seen else None

    total = 0.0
    for arm, done, spent in [*running, *((a, 0, 0.0) for a in pending)]:
        per = spent / done if done else pace(arm)
        if per is None:
            return None
        total += per * (epochs - done)
    return total / slots


def run_pending(setup: Setup) -> None:
    """Train every run without a finished record, then score every run on the comparison's split."""
    Scheduler(setup).run()
    for arm, seed in setup.runs():
        score_run(setup, arm, seed)


def missing_runs(setup: Setup) -> list[str]:
    """The runs without a finished record, as ``arm:seed`` (for ``--collect``)."""
    return [f"{a.name}:{s}" for a, s in setup.runs() if load_run(setup.run_dir(a, s)) is None]
