"""IKDTrainer end to end on generated data: run.py, the Python APIs, resume, the multi-GPU rebuild, checkpoints."""

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from ikd_yolo.config import IKDConfig
from ikd_yolo.demo.shapes import CLASS_NAMES
from ikd_yolo.model import IKDDistillationModel
from ikd_yolo.trainer import IKDTrainer

from . import helpers
from .helpers import IKD_FAST, IMGSZ, ROOT, SOFT, Interrupt, read_results, run_python

pytestmark = pytest.mark.slow  # every test here trains end to end or starts processes


@pytest.fixture(scope="module")
def cli_run(shapes_data, teacher_pt, tmp_path_factory):
    """python run.py ... for 3 epochs with the adversarial term on for the first one only."""
    project = tmp_path_factory.mktemp("cli")
    args = [f"{k}={v}" for k, v in IKD_FAST.items()] + [
        f"data={shapes_data}",
        f"teacher={teacher_pt}",
        "model=yolov8n.yaml",
        "epochs=3",
        f"project={project}",
        "name=ikd",
        "adv_steps=1",
        "adv_epochs=0.34",
        "kd_warmup_epochs=0",  # this test checks every term from epoch 1 on (the resume test keeps the warm-up)
        *(f"{k}={v}" for k, v in SOFT.items()),  # and the soft terms, off by default
        "freq_noise_p=1.0",
        "freq_crop_p=1.0",
        "export=onnx",
        "save_period=2",
    ]
    proc = subprocess.run([sys.executable, "run.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return project / "ikd", proc.stdout + proc.stderr


def test_run_py_trains_with_both_mechanisms(cli_run):
    run, log = cli_run
    rows = read_results(run)
    assert len(rows) == 3
    kd_cols = ("train/dis_loss", "train/cls_kd", "train/dfl_kd", "train/adv_loss")
    for col in ("train/box_loss", "train/cls_loss", "train/dfl_loss", *kd_cols):
        assert all(math.isfinite(r[col]) for r in rows), col
    assert all(r["train/dis_loss"] > 0 and r["train/cls_kd"] > 0 and r["train/dfl_kd"] > 0 for r in rows)
    # adversarial phase: round(0.34 * 3) = 1 epoch on, then off
    assert rows[0]["train/adv_loss"] > 0
    assert rows[1]["train/adv_loss"] == 0 and rows[2]["train/adv_loss"] == 0
    assert "adversarial term off from epoch 2" in log
    # frequency augmentation: on for round(0.667 * 3) = 2 epochs (logged), then out of the pipeline
    assert log.count("frequency augmentation this epoch") == 2
    assert all(r["freq/noise"] + r["freq/crop"] > 0 for r in rows[:2])
    assert rows[2]["freq/noise"] == 0 and rows[2]["freq/crop"] == 0
    assert "frequency augmentation off from epoch 3" in log
    assert "kd_labels: the teacher refined" in log  # once, before the first epoch
    assert log.count("kd_labels: the teacher refined") == 1
    saved = yaml.safe_load((run / "ikd.yaml").read_text())
    gains = saved.pop("kd_gains")  # the kd_balance calibration's gains, also in the log
    assert set(gains) == {"dis_loss", "cls_kd", "dfl_kd", "adv_loss"}
    assert all(math.isfinite(v) and v > 0 for v in gains.values())
    assert f"kd_balance=0.03 calibrated gains: dis_loss x{gains['dis_loss']:.4g}" in log
    assert saved["adv_steps"] == 1 and saved["adv_epochs"] == 0.34 and saved == IKDConfig.from_mapping(saved).to_dict()
    assert (run / "weights" / "best.pt").exists() and (run / "weights" / "last.pt").exists()
    assert f"IKD student: {run / 'weights' / 'best.pt'}" in log


def test_run_py_export_writes_the_student_next_to_best_pt(cli_run):
    """export=onnx: best.onnx sits beside best.pt, holds the student only, and matches it under onnxruntime."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch
    from ultralytics import YOLO

    run, log = cli_run
    f = run / "weights" / "best.onnx"
    assert f.exists() and f"exported: {f}" in log
    student = YOLO(run / "weights" / "best.pt").model.float().eval()
    n_student = sum(p.numel() for p in student.parameters())
    n_onnx = sum(int(np.prod(t.dims)) for t in onnx.load(str(f)).graph.initializer)
    assert 0.9 * n_student < n_onnx < 1.1 * n_student, (n_onnx, n_student)  # no teacher, no projector
    x = torch.rand(1, 3, IMGSZ, IMGSZ)
    with torch.no_grad():
        ref = student(x)[0].numpy()
    sess = ort.InferenceSession(str(f), providers=["CPUExecutionProvider"])
    out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    assert out.shape == ref.shape and np.abs(out - ref).max() < 1e-3 * max(1.0, float(np.abs(ref).max()))


def test_best_pt_is_plain_ultralytics_without_ikd_yolo(cli_run, shapes_data, tmp_path):
    """best.pt loads, validates and exports to ONNX in a process where ikd_yolo cannot be imported; so do the
    save_period snapshots (epochN.pt) load."""
    best = cli_run[0] / "weights" / "best.pt"
    snapshots = sorted(str(p) for p in (cli_run[0] / "weights").glob("epoch*.pt"))
    assert len(snapshots) == 2, snapshots  # save_period=2 over 3 epochs: epochs 1 and 3
    code = f"""
import sys
sys.modules["ikd_yolo"] = None  # make `import ikd_yolo` fail
try:
    import ikd_yolo
    raise SystemExit("ikd_yolo importable")
except ImportError:
    pass
import numpy as np, onnxruntime as ort, torch
from ultralytics import YOLO
m = YOLO({str(best)!r})
assert type(m.model).__name__ == "DetectionModel", type(m.model)
for f in {snapshots!r}:
    assert type(YOLO(f).model).__name__ == "DetectionModel", f
assert m.names == {dict(enumerate(CLASS_NAMES))!r}, m.names  # the data's classes travel with the student
m.val(data={str(shapes_data)!r}, imgsz={IMGSZ}, batch=8, plots=False, workers=0)
f = m.export(format="onnx", imgsz={IMGSZ})
x = torch.rand(1, 3, {IMGSZ}, {IMGSZ})
net = YOLO({str(best)!r}).model.float().eval()
with torch.no_grad():
    ref = net(x)[0].numpy()
sess = ort.InferenceSession(f, providers=["CPUExecutionProvider"])
out = sess.run(None, {{sess.get_inputs()[0].name: x.numpy()}})[0]
assert out.shape == ref.shape, (out.shape, ref.shape)
err = float(np.abs(out - ref).max())
print("max abs diff", err)
assert err < 1e-3 * max(1.0, float(np.abs(ref).max())), err
"""
    out = run_python(code, cwd=tmp_path).stdout
    assert "max abs diff" in out


def test_python_api_via_yolo_train(shapes_data, teacher_pt, tmp_path):
    from ultralytics import YOLO

    model = YOLO("yolov8n.yaml")
    model.train(
        trainer=IKDTrainer,
        data=str(shapes_data),
        teacher=str(teacher_pt),
        epochs=1,
        project=str(tmp_path),
        name="api",
        freq_aug=False,
        adv_aug=False,
        kd_loss="pkd",
        **IKD_FAST,
    )
    assert isinstance(model.trainer.model, IKDDistillationModel)
    assert model.trainer.ikd.adv_aug is False and model.trainer.ikd.freq_aug is False
    rows = read_results(tmp_path / "api")
    assert rows[0]["train/adv_loss"] == 0 and rows[0]["train/dis_loss"] > 0 and "freq/noise" not in rows[0]
    assert type(model.model).__name__ == "DetectionModel"  # Ultralytics reloads the plain best.pt


@pytest.mark.parametrize("form", ["resume=True model=PATH", "resume=PATH"])
def test_resume_continues_the_run_it_names(form, shapes_data, tmp_path, monkeypatch):
    """Two interrupted runs, A then B (the newest last.pt under the working folder): naming A resumes A, not B; and
    naming a copy of A resumes the copy, not A (whose folder the checkpoint records)."""
    from ikd_yolo.cli import main

    def interrupted(name):
        trainer = helpers.trainer(
            tmp_path,
            data=shapes_data,
            model="yolov8n.yaml",
            epochs=3,
            name=name,
            adv_steps=1,
            adv_epochs=0.67,
            freq_noise_p=0.9,
            kd_loss="pkd",
        )

        def stop(tr):
            if tr.epoch == 0:
                raise Interrupt

        trainer.add_callback("on_fit_epoch_end", stop)
        with pytest.raises(Interrupt):
            trainer.train()
        last = tmp_path / name / "weights" / "last.pt"
        assert last.exists() and len(read_results(tmp_path / name)) == 1
        return last

    a, b = interrupted("A"), interrupted("B")
    monkeypatch.chdir(tmp_path)
    from ikd_yolo.frequency import SourceImageFrequency

    reseeded = []
    real_reset = SourceImageFrequency.reset_stream
    monkeypatch.setattr(SourceImageFrequency, "reset_stream", lambda hook: reseeded.append(1) or real_reset(hook))
    run = tmp_path / "A"
    if form == "resume=PATH":
        shutil.copytree(run, tmp_path / "C")
        run = tmp_path / "C"
    last = run / "weights" / "last.pt"
    if form == "resume=PATH":  # as a run made before these modes were removed: its arguments carry their keys
        ckpt = torch.load(last, weights_only=False)
        ckpt["train_args"].update(
            kd_labels_mode="dataset", freq_crop_mode="window", adv_target="teacher", freq_stage="source"
        )
        torch.save(ckpt, last)
    argv = ["resume=True", f"model={last}"] if form.startswith("resume=True") else [f"resume={last}"]
    argv.append("imgsz=70")  # resume may change imgsz (Ultralytics allows it); one off the stride is rounded
    assert main(argv) == 0
    rows = read_results(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert rows[1]["train/dis_loss"] > 0 and rows[1]["train/adv_loss"] > 0  # resumed as an IKD run, in its phase
    # the augmentation is on in the resumed epoch, and its stream was seeded again from the resumed epoch's state of
    # `random` (test_frequency: a reseeded stream draws differently). Comparing the two epochs' branch fractions
    # instead failed once in CI: at 16 samples they can coincide.
    assert rows[1]["freq/noise"] + rows[1]["freq/crop"] > 0 and reseeded == [1]
    assert len(read_results(tmp_path / "B")) == 1 and b.exists()
    assert len(read_results(tmp_path / "A")) == (3 if run.name == "A" else 1) and a.exists()
    saved = yaml.safe_load((run / "ikd.yaml").read_text())  # settings restored from the checkpoint
    assert saved["adv_epochs"] == 0.67 and saved["freq_noise_p"] == 0.9 and "kd_gains" in saved


@pytest.mark.parametrize("warmup, calibration, said", [(1.0, 1, True), (0.0, 1, False), (0.0, 3, True)])
def test_a_run_too_short_for_the_adversarial_term_says_so(shapes_data, tmp_path, warmup, calibration, said):
    """epochs=2 of 2 batches with the defaults: the term is on in epoch 1 only (adv_epochs 0.667), which is the
    warm-up, so it never acts, and the log says so; without the warm-up it acts from batch 2, after one calibration
    batch, and nothing is said; three calibration batches outlast epoch 1 again. The log tells the truth: the
    results' adv_loss column is 0 exactly when the warning is given."""
    import logging

    from ultralytics.utils import LOGGER

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    LOGGER.addHandler(handler)
    run = dict(epochs=2, close_mosaic=0, kd_warmup_epochs=warmup, kd_balance_batches=calibration, name="short")
    try:
        helpers.trainer(tmp_path, data=shapes_data, **run).train()
    finally:
        LOGGER.removeHandler(handler)
    warned = [r.getMessage() for r in records if "never acts" in r.getMessage()]
    assert len(warned) == int(said), warned
    adv = [row["train/adv_loss"] for row in read_results(tmp_path / "short")]
    assert (max(adv) == 0) == said, adv


@pytest.mark.parametrize("existing", [False, True])
def test_a_run_that_fails_before_its_first_epoch_removes_only_a_folder_it_created(shapes_data, tmp_path, existing):
    """A crash (or Ctrl-C) before the first epoch is saved removes the run folder that the run made, and never one
    that was there before (save_dir= can name any folder)."""
    folder = tmp_path / "mine"
    if existing:
        folder.mkdir()
        (folder / "notes.txt").write_text("the user's")
    trainer = helpers.trainer(tmp_path, data=shapes_data, save_dir=folder)
    assert folder.is_dir()

    def crash(tr):
        raise Interrupt

    trainer.add_callback("on_pretrain_routine_end", crash)
    with pytest.raises(Interrupt):
        trainer.train()
    assert folder.is_dir() == existing
    if existing:
        assert (folder / "notes.txt").read_text() == "the user's"


def test_frequency_augments_source_images_in_the_first_epochs_only(shapes_data, tmp_path):
    """The transform is hooked into the training set's image loading (so mosaic's tiles pass through it), not into
    the albumentations list, and is taken out after freq_epochs."""
    from ikd_yolo.frequency import SizeAwareFrequencyAug, SourceImageFrequency

    trainer = helpers.trainer(
        tmp_path,
        data=shapes_data,
        model="yolov8n.yaml",
        epochs=2,
        name="src",
        adv_aug=False,
        freq_epochs=0.5,
        freq_noise_p=1.0,
        freq_crop_p=1.0,
    )
    hooked, draws = [], []

    def look(tr):
        hook = tr.train_loader.dataset.__dict__.get("get_image_and_label")
        hooked.append(isinstance(hook, SourceImageFrequency))
        if hooked[-1] and not draws:  # one training sample: mosaic loads its 4 source images through the hook
            before = int(hook.transform.branch_counts.sum())
            tr.train_loader.dataset[0]
            draws.append(int(hook.transform.branch_counts.sum()) - before)

    trainer.add_callback("on_train_epoch_start", look)
    trainer.train()
    assert hooked == [True, False] and draws == [4]
    pipeline = trainer.train_loader.dataset.transforms.transforms  # Ultralytics' own, built from its arguments
    albumentations = next(t for t in pipeline if type(t).__name__ == "Albumentations")
    assert getattr(trainer.args, "augmentations", None) is None  # the albumentations list left as Ultralytics has it
    assert not any(isinstance(t, SizeAwareFrequencyAug) for t in albumentations.transform.transforms)
    rows = read_results(tmp_path / "src")
    assert rows[0]["freq/noise"] + rows[0]["freq/crop"] > 0 and rows[1]["freq/noise"] == rows[1]["freq/crop"] == 0


def test_multi_gpu_rebuild_keeps_ikd_settings(shapes_data, tmp_path):
    """Ultralytics' DDP launcher rebuilds the trainer in a new process from vars(args): run that exact file."""
    from ultralytics.utils.dist import generate_ddp_file

    trainer = helpers.trainer(
        tmp_path,
        data=shapes_data,
        model="yolov8n.yaml",
        name="ddp",
        adv_steps=3,
        freq_noise_p=0.5,
        adv_loss="cwd",
    )
    file = Path(generate_ddp_file(trainer))
    text = file.read_text()
    assert "    trainer.train()\n" in text, "Ultralytics changed its DDP file: review the rebuild path"
    probe = (
        "    import json\n"
        "    print('IKD=' + json.dumps({'ikd': trainer.ikd.to_dict(), 'cls': type(trainer).__name__}))\n"
    )
    file.write_text(text.replace("    trainer.train()\n", probe))
    out = subprocess.run([sys.executable, str(file)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(next(line[4:] for line in out.stdout.splitlines() if line.startswith("IKD=")))
    assert got["cls"] == "IKDTrainer"
    assert got["ikd"] == trainer.ikd.to_dict() and got["ikd"]["adv_loss"] == "cwd"


def test_nan_recovery_restores_the_kd_module(shapes_data, tmp_path):
    """After a NaN epoch, Ultralytics reloads student and projector from last.pt (whose student and IKD state are
    stored apart); MGD's generator must follow."""
    import torch
    from ultralytics.utils.torch_utils import unwrap_model

    from ikd_yolo.checkpoint import wrapper_state

    trainer = helpers.trainer(
        tmp_path, data=shapes_data, model="yolov8n.yaml", name="nan", kd_loss="mgd", adv_aug=False, freq_aug=False
    )
    trainer.train()
    trainer.save_model()  # a mid-run last.pt (the final one is stripped to the plain student)
    model = unwrap_model(trainer.model)
    ckpt = torch.load(trainer.last, weights_only=False)
    assert type(ckpt["ema"]).__name__ == "DetectionModel"  # the student alone; the rest as tensors beside it
    saved = {k: v.clone() for k, v in wrapper_state(ckpt).items()}
    with torch.no_grad():
        for part in (model.kd_module, model.projector, model.student_model):
            for p in part.parameters():
                p.fill_(float("nan"))  # what a diverged epoch leaves behind
    trainer.loss = torch.tensor(float("nan"))
    assert trainer._handle_nan_recovery(epoch=trainer.start_epoch + 1)
    for k, v in model.state_dict().items():
        if k.startswith(("kd_module.", "projector.", "student_model.")):
            assert torch.equal(v.float(), saved[k].float()), k


def test_frequency_stop_at_close_mosaic_keeps_the_run_paired_with_one_without_it(shapes_data, tmp_path):
    """The frequency augmentation draws from a stream of its own, so a run with it sees the mosaics and affines of a
    run without it. Its stop restarts the loader; in the close_mosaic epoch that is the restart the run without it
    makes too (Ultralytics' reset only drops the iterator, so two in one epoch are one). With both branches at
    probability 0 it changes no image, so the two runs end with the same weights; stopped an epoch earlier, its
    restart gives the loader new workers (new random streams) and the runs part: what the benchmark's arms with the
    augmentation differ by after its stop, besides the augmentation itself."""

    def train(name, **ikd):
        trainer = helpers.trainer(
            tmp_path, data=shapes_data, epochs=3, close_mosaic=1, name=name, adv_aug=False, workers=2, **ikd
        )  # workers: loader workers, what a restart renews
        trainer.train()
        ckpt = torch.load(tmp_path / name / "weights" / "last.pt", weights_only=False)
        return torch.cat([v.float().flatten() for v in ckpt["model"].state_dict().values()])

    idle = dict(freq_aug=True, freq_noise_p=0.0, freq_crop_p=0.0)
    plain = train("plain", freq_aug=False)
    assert torch.equal(train("with_close", freq_epochs=0.667, **idle), plain)  # stops at epoch 3 = close_mosaic's
    assert not torch.equal(train("before_close", freq_epochs=0.333, **idle), plain)  # stops at epoch 2: own restart


def test_a_new_run_checks_its_inputs_once(shapes_data, tmp_path, monkeypatch):
    """The trainer takes what the preflight loaded and checked (settings, teacher, data, student) instead of doing
    it again."""
    import collections

    import ikd_yolo.config
    import ikd_yolo.preflight
    import ikd_yolo.trainer

    calls = collections.Counter()

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    for name in ("resolve_aliases", "check_teacher_data", "check_teacher_student", "load_teacher"):
        modules = [m for m in (ikd_yolo.config, ikd_yolo.preflight, ikd_yolo.trainer) if hasattr(m, name)]
        wrapper = counted(name, getattr(modules[0], name))
        for module in modules:
            monkeypatch.setattr(module, name, wrapper)
    from_mapping = IKDConfig.from_mapping.__func__
    monkeypatch.setattr(IKDConfig, "from_mapping", classmethod(counted("from_mapping", from_mapping)))
    trainer = helpers.trainer(tmp_path, data=shapes_data)
    trainer.setup_model()
    assert isinstance(trainer.model, IKDDistillationModel)
    names = ("resolve_aliases", "from_mapping", "check_teacher_data", "check_teacher_student", "load_teacher")
    assert calls == dict.fromkeys(names, 1), calls
