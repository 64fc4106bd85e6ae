"""The benchmark's cached trainings (benchmarks/common.py): a training stopped at the snapshot a regime needs is
resumed, not started again, when another regime needs its end."""

from __future__ import annotations

import sys

from .helpers import FAST, PICO, ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))  # benchmarks/ is not a package
import common  # noqa: E402


def test_a_training_stopped_at_a_snapshot_resumes_to_its_end(tmp_path, monkeypatch, shapes_data, capsys):
    monkeypatch.setattr(common, "CACHE", tmp_path)
    args = {**FAST, "epochs": 4, "close_mosaic": 1, "save_period": 1, "val": False}
    args = {k: v for k, v in args.items() if k not in {"seed", "deterministic", "plots", "workers", "exist_ok"}}
    last = common.train_cached("s", "t", PICO, shapes_data, "cpu", 1, **args)
    done = last.parent.parent / "finished"
    assert sorted(f.name for f in last.parent.glob("epoch*.pt")) == ["epoch0.pt", "epoch1.pt"]
    assert common.saved_epoch(last) == 1 and not done.exists()  # resumable: its optimizer kept
    stamp = last.stat().st_mtime_ns
    common.train_cached("s", "t", PICO, shapes_data, "cpu", 1, **args)  # the snapshot is there: nothing trains
    assert last.stat().st_mtime_ns == stamp
    capsys.readouterr()
    common.train_cached("s", "t", PICO, shapes_data, "cpu", **args)
    assert "resuming t from" in capsys.readouterr().out
    assert done.exists() and common.saved_epoch(last) == -1  # finished (stripped), not trained again from epoch 0
    assert sorted(f.name for f in last.parent.glob("epoch*.pt")) == [f"epoch{i}.pt" for i in range(4)]
