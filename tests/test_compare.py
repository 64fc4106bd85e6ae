"""compare: arms parsed and refused in one line, paired intervals by hand, and a real two-arm, two-seed comparison
whose JSON, table and plot agree and whose rerun trains nothing."""

from __future__ import annotations

import json
import math
import re

import pytest

from ikd_yolo.cli import main
from ikd_yolo.tools.compare.arms import parse_arms
from ikd_yolo.tools.compare.schedule import time_left
from ikd_yolo.tools.compare.stats import paired, recommendation, verdict

from .helpers import PICO


def test_interval_matches_a_hand_computation():
    arm = {0: 0.50, 1: 0.52, 2: 0.47, 3: 0.61}
    ref = {0: 0.48, 1: 0.50, 2: 0.47}  # seed 3 is not in the reference: left out
    p = paired("ikd", arm, "none", ref)
    diffs = [2.0, 2.0, 0.0]  # points
    mean = 4 / 3
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 2)
    half = 4.302652729911275 * sd / math.sqrt(3)  # t(0.975, df=2), from a printed table
    assert p.seeds == [0, 1, 2]
    assert p.per_seed == pytest.approx(diffs)
    assert (p.mean, p.low, p.high) == pytest.approx((mean, mean - half, mean + half))
    assert p.wins == 2 and not p.shown
    assert verdict(p, 1.6) == "ikd vs none +1.33 (95 % CI -1.54 … +4.20, 2/3 seeds): not shown, costs 1.6× time"


def test_a_shown_gain_is_kept_and_recommended():
    p = paired("kd", {0: 0.52, 1: 0.53, 2: 0.51}, "none", {0: 0.50, 1: 0.51, 2: 0.50})
    assert p.shown and verdict(p).startswith("kd beats none by +1.67 (95 % CI +0.23 … +3.10, 3/3 seeds): keep it")
    assert recommendation({"kd": p}, {"kd": 0.52}).startswith("recommendation: kd")
    q = paired("ikd", {0: 0.50, 1: 0.50, 2: 0.50}, "none", {0: 0.51, 1: 0.52, 2: 0.515})
    assert verdict(q).endswith("do not use it")


def test_time_left_is_known_once_a_running_run_has_an_epoch():
    # two slots, 10 epochs; before any epoch: unknown
    assert time_left([("none", 0, 0.0)], ["ikd"], {}, 10, 2) is None
    # a running none at 4 s/epoch, 4 epochs in: the pending ikd run, no run of its arm yet, goes at that pace
    assert time_left([("none", 4, 16.0)], ["ikd"], {}, 10, 2) == pytest.approx((6 * 4 + 10 * 4) / 2)
    # a finished ikd run (9 s/epoch) sets its arm's pace for a pending ikd run; a running run goes at its own pace
    # (8 s/epoch); a pending arm seen nowhere goes at the mean of every pace (8.5)
    left = time_left([("ikd", 5, 40.0)], ["ikd", "none"], {"ikd": [9.0]}, 10, 1)
    assert left == pytest.approx(5 * 8 + 10 * 9 + 10 * 8.5)


def test_arms_with_settings():
    entries = "none,native:dis=1,kd,ikd_fast:adv_steps=1:adv_batch_frac=0.25,n2:base=native"
    arms = {a.name: a for a in parse_arms(entries)}
    native = arms["native:dis=1"]
    assert native.base == "native" and native.overrides("t.pt") == {"dis": 1, "distill_model": "t.pt"}
    fast = arms["ikd_fast"]
    assert fast.base == "ikd" and fast.trainer == "ikd"
    assert fast.overrides("t.pt") == {"adv_steps": 1, "adv_batch_frac": 0.25, "teacher": "t.pt"}
    assert arms["kd"].overrides("t.pt") == {"freq_aug": False, "adv_aug": False, "teacher": "t.pt"}
    assert arms["n2"].trainer == "plain" and arms["none"].overrides("t.pt") == {}
    assert [a.name for a in parse_arms(None)] == ["none"]  # arms=none alone: the key=value parser gives None


@pytest.mark.parametrize(
    "arms, says",
    [
        ("none,bogus", "'bogus' is not a built-in arm"),
        ("none,native:adv_steps=2", "adv_steps is an IKD setting, which only kd and ikd arms take"),
        ("ikd:adv_steps=-1", "adv_steps=-1' is out of range"),
        ("fast:notakey=1", "unknown or per-comparison key 'notakey'"),
        ("kd,ikd,kd", "names kd more than once"),
        ("x:base=bogus:dis=1", "base=bogus is not a built-in arm"),
        ("none,native:dis=abc", "arms= entry 'native:dis=abc': 'dis=abc' is of invalid type"),
        ("none,slow:base=none:epochs=0", "arms= entry 'slow': 'epochs=0' is an invalid value"),
    ],
)
def test_a_bad_arm_is_refused_in_one_line(arms, says, shapes_data, teacher_pt, tmp_path, capsys):
    argv = ["compare", f"data={shapes_data}", f"teacher={teacher_pt}", f"model={PICO}", f"arms={arms}"]
    assert main([*argv, f"project={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and says in err, err
    assert not any(tmp_path.iterdir())  # nothing written


BAD_KEYS = [
    ("seeds=0,0", "distinct seeds"),
    ("split=test", "has no such split"),
    ("seed=1", "seeds="),
    ("device=cpu,0", "mixes the CPU and GPUs"),
]


def test_bad_seeds_split_and_device_are_refused(shapes_data, teacher_pt, tmp_path, capsys):
    base = ["compare", f"data={shapes_data}", f"teacher={teacher_pt}", f"model={PICO}", f"project={tmp_path}"]
    for extra, says in BAD_KEYS:
        assert main([*base, extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and says in err, err
    assert not any(tmp_path.iterdir())  # nothing written


def _table_rows(md: str) -> dict[str, list[str]]:
    rows = [ln.split("|")[1:-1] for ln in md.splitlines() if ln.startswith("| ") and not ln.startswith("| arm")]
    return {r[0].strip(): [c.strip() for c in r] for r in rows}


@pytest.mark.slow
def test_compare_reports_agree_and_a_rerun_trains_nothing(shapes_data, teacher_pt, tmp_path, capsys):
    from ikd_yolo.tools.compare.report import plot

    argv = ["compare", f"data={shapes_data}", f"teacher={teacher_pt}", f"model={PICO}", "arms=none,kd", "seeds=2"]
    argv += ["epochs=2", "imgsz=64", "batch=8", "workers=0", "plots=False", f"project={tmp_path}", "name=cmp"]
    assert main(argv) == 0
    folder = tmp_path / "cmp"
    s = json.loads((folder / "compare.json").read_text())
    assert s["split"] == "val" and 0 <= s["teacher"]["map50_95"] <= 1 and s["teacher"]["map50_95"] > 0
    by = {e["name"]: e for e in s["arms"]}
    assert list(by) == ["none", "kd"] and all(e["seeds"] == [0, 1] for e in s["arms"])
    rows = _table_rows((folder / "compare.md").read_text())
    for name, e in by.items():
        assert rows[name][2] == ", ".join(f"{v:.4f}" for v in e["map50_95"])  # per-seed scores
        assert rows[name][3].startswith(f"{e['mean']:.4f}")
    diffs = [100 * (k - n) for k, n in zip(by["kd"]["map50_95"], by["none"]["map50_95"], strict=True)]
    assert by["kd"]["vs_none"]["per_seed"] == pytest.approx(diffs)
    assert rows["kd"][4].startswith(f"**{sum(diffs) / 2:+.2f}**")
    drawn = plot(s, tmp_path / "again.png")
    assert drawn["points"] == {n: dict(zip(e["seeds"], e["map50_95"], strict=True)) for n, e in by.items()}
    assert (folder / "compare.png").read_bytes()[:4] == b"\x89PNG"
    run = by["kd"]["runs"][0]
    assert run["settings"]["kd_label_conf"] == 0.5 and run["settings"]["freq_aug"] is False  # resolved, not overrides
    out = capsys.readouterr().out
    assert re.search(r"^- (kd|recommendation)", (folder / "compare.md").read_text(), re.M) and "split 'val'" in out

    stamps = {p: p.stat().st_mtime_ns for p in folder.glob("*_s*/weights/last.pt")}
    assert len(stamps) == 4
    assert main([*argv, "exist_ok=True"]) == 0  # the same comparison again: every run is reused
    assert {p: p.stat().st_mtime_ns for p in folder.glob("*_s*/weights/last.pt")} == stamps
    assert json.loads((folder / "compare.json").read_text())["arms"] == s["arms"]
    assert not (tmp_path / "cmp-2").exists()

    for run in ("none_s1", "kd_s1"):  # as if interrupted before they finished: those two are trained again
        (folder / run / "compare_run.json").unlink()
    assert main([*argv, "exist_ok=True", "device=cpu,cpu"]) == 0  # two CPU slots: both at once
    after = {p: p.stat().st_mtime_ns for p in folder.glob("*_s*/weights/last.pt")}
    assert sorted(p.parent.parent.name for p in after if after[p] != stamps[p]) == ["kd_s1", "none_s1"]
    a, b = (json.loads((folder / run / "compare_run.json").read_text()) for run in ("none_s1", "kd_s1"))
    assert a["scores"]["val"]["map50_95"] >= 0 and b["scores"]["val"]["map50_95"] >= 0
    assert max(a["started"], b["started"]) < min(a["started"] + a["train_s"], b["started"] + b["train_s"])


def test_a_planned_run_trains_on_one_slot_of_the_device_list(shapes_data, teacher_pt, tmp_path, capsys):
    """--plan's commands (one run each, for a cluster's scheduler) work on a comparison set up with device=cpu,cpu:
    each run takes one slot, and --collect reports the finished run."""
    argv = ["compare", f"data={shapes_data}", f"teacher={teacher_pt}", f"model={PICO}", "arms=none,kd", "seeds=1"]
    argv += ["epochs=1", "imgsz=64", "batch=8", "plots=False", f"project={tmp_path}", "name=plan", "device=cpu,cpu"]
    assert main([*argv, "--plan"]) == 0
    commands = [ln for ln in capsys.readouterr().out.splitlines() if " -m ikd_yolo compare " in ln]
    folder = tmp_path / "plan"
    assert len(commands) == 3 and commands[0].endswith(f"folder={folder} run=none:0") and not any(folder.glob("*_s0"))
    assert main(["compare", f"folder={folder}", "run=none:0"]) == 0
    record = json.loads((folder / "none_s0" / "compare_run.json").read_text())
    assert record["settings"]["device"] == "cpu" and record["scores"]["val"]["map50_95"] >= 0
    assert main(["compare", f"folder={folder}", "--collect"]) == 0
    arms = json.loads((folder / "compare.json").read_text())["arms"]
    assert {a["name"]: a["seeds"] for a in arms} == {"none": [0], "kd": []}  # kd:0 not trained yet
