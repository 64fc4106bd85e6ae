"""Every bad input: exit code 2, one line naming the problem and the fix, in seconds, and no run folder left."""

import subprocess
import sys
import time

import pytest

from ikd_yolo.cli import main
from ikd_yolo.demo import TEACHER_ASSET

from .helpers import ROOT

T = f"teacher={TEACHER_ASSET}"


@pytest.fixture(scope="module")
def bad_data(shapes_data, tmp_path_factory):
    """Data yamls with a mistake each, by name: a missing training image folder, no val:, invalid yaml, nc: that
    disagrees with names:, and a val split whose every image is corrupt."""
    d = tmp_path_factory.mktemp("bad")
    good = shapes_data.read_text()
    corrupt = d / "corrupt"
    for sub in ("images/val", "labels/val"):
        (corrupt / sub).mkdir(parents=True)
    for i in range(3):
        (corrupt / "images" / "val" / f"x{i}.jpg").write_text("not an image")
        (corrupt / "labels" / "val" / f"x{i}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    train = shapes_data.parent / "images" / "train"
    texts = {
        "missing train images": good.replace("train: images/train", "train: images/nowhere"),
        "no val": "\n".join(ln for ln in good.splitlines() if not ln.startswith("val:")),
        "invalid yaml": good + "bad: [a, b\n",
        "nc and names disagree": good + "nc: 5\n",
        "corrupt val images": f"path: {corrupt}\ntrain: {train}\nval: images/val\n" + good[good.index("names:") :],
    }
    paths = {}
    for name, text in texts.items():
        paths[name] = d / f"{name.replace(' ', '_')}.yaml"
        paths[name].write_text(text)
    return paths


@pytest.fixture(scope="module")
def not_a_checkpoint(tmp_path_factory):
    """A text file named .pt."""
    path = tmp_path_factory.mktemp("text") / "weights.pt"
    path.write_text("hello, I am not a checkpoint\n")
    return path


M = "model=yolov8n.yaml"
CASES = {
    # name: (arguments after data=, the word the one line must hold)
    "empty teacher": (["teacher=", M], "teacher= is empty"),
    "empty model": ([T, "model="], "model= is empty"),
    "empty adv_loss": ([T, M, "adv_loss="], "adv_loss= is empty"),
    "unknown key": ([T, M, "adv_stps=2"], "did you mean adv_steps="),
    "unknown key near an alias": ([T, M, "adv_stepz=2"], "did you mean adv_steps="),
    "bad IKD value": ([T, M, "adv_loss=kl"], "adv_loss=kl"),
    "removed IKD key": ([T, M, "kd_labels_mode=batch"], "'kd_labels_mode=batch' was removed"),
    "removed IKD mode": ([T, M, "adv_bn=joint"], "'adv_bn=joint' was removed"),
    "missing teacher": (["teacher=nowhere.pt", M], "no such file"),
    "autobatch": ([T, M, "batch=-1"], "batch=16"),
    "unknown model yaml": ([T, "model=yolov8zz.yaml"], "no such model yaml"),
    "model yaml without backbone": ([T, f"model={ROOT / 'cfg' / 'ikd.yaml'}"], "missing key 'backbone'"),
    "missing student weights": ([T, "model=nowhere.pt"], "no such file"),
    "stride mismatch": ([T, "model=yolov8n-p2.yaml"], "strides [4, 8, 16, 32]"),
    "engine on cpu": ([T, M, "device=cpu", "export=engine"], "needs a CUDA GPU"),
    "unknown export": ([T, M, "export=zip"], "not an Ultralytics export format"),
    "bare word": ([T, M, "fast"], "not key=value"),
    "bf16 on cpu": ([T, M, "amp=bf16", "device=cpu"], "amp=bf16 needs a CUDA GPU"),
    # more GPUs than this machine has (device=0 on a machine without any: the same message)
    "missing gpus": ([T, M, f"device={','.join(map(str, range(17)))}"], "Invalid CUDA 'device="),
    "single_cls": ([T, M, "single_cls=True"], "single_cls=True trains the student on one class"),
    # Ultralytics' own checks of argument values, made before the run folder exists
    "epochs=0": ([T, M, "epochs=0"], "'epochs' must be >= 1"),
    "epochs=-1": ([T, M, "epochs=-1"], "'epochs' must be >= 1"),
    "imgsz=abc": ([T, M, "imgsz=abc"], "'imgsz=abc' is not a valid image size"),
    "lr0=abc": ([T, M, "lr0=abc"], "'lr0=abc' is of invalid type"),
    "unknown optimizer": ([T, M, "optimizer=adamm"], "optimizer=adamm is not an Ultralytics optimizer"),
    "everything frozen": ([T, M, "freeze=100"], "freeze=100 freezes all 23 layers"),
    # the student is checked like the teacher: it loads, it detects, it has the teacher's strides
    "student not a checkpoint": ([T, "model=TEXT"], "is not a loadable checkpoint"),
    "classify student": ([T, "model=yolov8n-cls.yaml"], "'classify' model"),
    "segment student": ([T, "model=yolov8n-seg.yaml"], "'segment' model"),
    "teacher not a checkpoint": (["teacher=TEXT", M], "could not be read as an Ultralytics checkpoint"),
}
DATA_CASES = {  # a mistake in the data yaml, and the word of the one line
    "missing data yaml": "'nowhere.yaml' does not exist",
    "empty data": "data= is empty",
    "missing train images": "training images",
    "no val": "'val:' key missing",
    "invalid yaml": "YAML syntax error",
    "nc and names disagree": "'names' length 4 and 'nc: 5' must match",
    "corrupt val images": "No valid images found",
}


@pytest.mark.parametrize("case", [*CASES, *DATA_CASES])
def test_bad_input_gets_one_line_and_exit_2(
    case, shapes_data, bad_data, not_a_checkpoint, tmp_path, monkeypatch, capfd
):
    monkeypatch.chdir(tmp_path)
    data = {"missing data yaml": "data=nowhere.yaml", "empty data": "data="}
    data.update({k: f"data={v}" for k, v in bad_data.items()})
    args, word = CASES.get(case, ([T, M], DATA_CASES.get(case)))
    args = [a.replace("TEXT", str(not_a_checkpoint)) for a in args]
    argv = [data.get(case, f"data={shapes_data}"), f"project={tmp_path / 'runs'}", "epochs=1", "workers=0", *args]
    start = time.time()
    assert main(argv) == 2
    assert time.time() - start < 10
    err = [ln for ln in capfd.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("run.py: ") and word in err[0], err
    assert "yolo predict" not in err[0]  # Ultralytics' advice for its own CLI is not repeated
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_exit_code_and_debug_switch_in_a_real_process(tmp_path):
    cmd = [sys.executable, str(ROOT / "run.py"), "data=nowhere.yaml", T, "model=yolov8n.yaml"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "run.py: data=nowhere.yaml: 'nowhere.yaml' does not exist: check the path given in data= and the paths in the "
        "data yaml ('path', 'train', 'val')"
    ]
    debug = subprocess.run(
        cmd,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "IKD_DEBUG": "1"},
    )
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_resume_true_without_any_run_says_so(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    assert main(["resume=True"]) == 2
    assert "found no last.pt" in capfd.readouterr().err


def test_resuming_a_finished_run_says_so_and_leaves_its_folder_alone(teacher_pt, tmp_path, monkeypatch, capfd):
    """A finished run's last.pt (epoch -1, like the shipped teacher's) is refused in one line, before its ikd.yaml or
    anything else in its folder is rewritten."""
    import shutil

    monkeypatch.chdir(tmp_path)
    run = tmp_path / "done"
    (run / "weights").mkdir(parents=True)
    shutil.copy(teacher_pt, run / "weights" / "last.pt")
    (run / "ikd.yaml").write_text("adv_steps: 3\n")
    before = sorted(p.name for p in run.rglob("*"))
    for argv in (["resume=True", f"model={run / 'weights' / 'last.pt'}"], ["resume=True"]):
        assert main(argv) == 2
        err = capfd.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "holds no training state" in err[0] and "model=" in err[0], err
    assert sorted(p.name for p in run.rglob("*")) == before and (run / "ikd.yaml").read_text() == "adv_steps: 3\n"
    assert main([f"resume={run / 'ikd.yaml'}"]) == 2  # not a checkpoint at all
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a checkpoint" in err[0], err


def test_single_cls_with_a_single_class_teacher_passes_the_checks(shapes_data, tmp_path):
    """single_cls=True: a teacher of one class named as Ultralytics names it ('item') is checked against the data
    as Ultralytics will make it, one class, and accepted; a teacher of four classes is refused."""
    import torch
    from ultralytics.nn.tasks import DetectionModel

    from ikd_yolo.preflight import preflight
    from ikd_yolo.teacher import TeacherError

    model = DetectionModel("yolov8n.yaml", nc=1, verbose=False)
    model.names = {0: "item"}
    one = tmp_path / "one_class.pt"
    torch.save({"model": model.half(), "train_args": {}}, one)
    args = dict(data=str(shapes_data), model="yolov8n.yaml", single_cls=True)
    assert preflight({**args, "distill_model": str(one)}) is not None
    with pytest.raises(TeacherError, match="single_cls=True"):
        preflight({**args, "distill_model": str(T.split("=", 1)[1])})


@pytest.mark.slow
def test_imgsz_is_rounded_to_the_stride_before_the_wrapper_probes_it(shapes_data, tmp_path):
    """imgsz=50 trains (at 64, as plain Ultralytics distillation does) instead of crashing in setup_model."""
    import torch

    argv = [
        f"data={shapes_data}",
        T,
        "model=yolov8n.yaml",
        "imgsz=50",
        "epochs=1",
        "batch=8",
        "workers=0",
        "val=False",
        "plots=False",
        f"project={tmp_path}",
        "name=r",
        "kd_balance_batches=1",
    ]
    assert main(argv) == 0
    # up to a multiple of the max stride, 32: what the run trained at, as the checkpoint records it (args.yaml keeps
    # the 50 given: Ultralytics writes it before it rounds)
    assert torch.load(tmp_path / "r" / "weights" / "last.pt", weights_only=False)["train_args"]["imgsz"] == 64


def test_cfg_file_is_read_under_the_command_line(shapes_data, tmp_path, monkeypatch, capfd):
    """cfg=FILE (as yolo train cfg=FILE): its values are train arguments, the command line's win, and a bad key or
    value in it is refused in one line before any model is built."""
    from ikd_yolo.cli import apply_cfg_file

    monkeypatch.chdir(tmp_path)
    f = tmp_path / "mine.yaml"
    f.write_text("adv_steps: 3\nadv_eps: 8.0\nname:\ncfg:\nkd_gains: {adv_loss: 0.5}\n")  # a run's ikd.yaml
    merged = apply_cfg_file({"cfg": str(f), "adv_eps": 2.0, "data": "d.yaml"})  # or yolo copy-cfg's: cfg: is skipped
    assert merged == {"adv_steps": 3, "adv_eps": 2.0, "data": "d.yaml"}
    base = [f"data={shapes_data}", T, "model=yolov8n.yaml", f"project={tmp_path / 'runs'}", "epochs=1"]
    for text, word in (
        ("adv_eps: 999\n", "adv_eps=999"),
        ("adv_stps: 2\n", "did you mean adv_steps="),
        ("- epochs\n", "no key: value pairs"),
        ("path: .\ntrain: images/train\nval: images/val\nnames: {0: a}\n", "is a data yaml"),  # data= meant
    ):
        f.write_text(text)
        assert main([*base, f"cfg={f}"]) == 2
        err = [ln for ln in capfd.readouterr().err.splitlines() if ln.strip()]
        assert len(err) == 1 and word in err[0], err
    assert main([*base, "cfg=nowhere.yaml"]) == 2
    assert "cfg=nowhere.yaml does not exist" in capfd.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_export_packages_are_checked_before_training(shapes_data, tmp_path, monkeypatch, capfd):
    """export=onnx where onnx, onnxslim and onnxruntime are not installed (the README's plain install) and Ultralytics
    cannot install them (offline): one line with the install command, before anything loads; the export would fail
    only after the whole training."""
    from importlib import metadata

    real = metadata.version

    def version(name):
        if name.lower() in {"onnx", "onnxslim", "onnxruntime"}:
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "version", version)  # as Ultralytics' check_requirements sees the install
    monkeypatch.chdir(tmp_path)
    argv = [f"data={shapes_data}", T, M, f"project={tmp_path / 'runs'}", "epochs=1", "workers=0", "export=onnx"]
    start = time.time()
    assert main(argv) == 2
    assert time.time() - start < 10
    err = [ln for ln in capfd.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "export=onnx needs onnx, onnxruntime, onnxslim" in err[0] and "pip install" in err[0], err
    assert not (tmp_path / "runs").exists()


def test_every_export_format_has_its_packages_checked():
    """Each format export= accepts has its packages listed, and its check passes or names what to install."""
    from ultralytics.engine.exporter import export_formats

    from ikd_yolo.errors import UserError
    from ikd_yolo.exports import EXPORT_NEEDS, check_export_format

    formats = [f for f in export_formats()["Argument"] if f != "-"]
    assert set(EXPORT_NEEDS) == set(formats)
    for fmt in formats:
        try:
            check_export_format(fmt, device="cpu")
        except UserError as e:
            assert "pip install" in str(e) or "CUDA GPU" in str(e), (fmt, str(e))


def test_optimizer_names_are_ultralytics_own():
    """The names the preflight accepts are the ones Ultralytics' build_optimizer builds, and no other."""
    import re
    from types import SimpleNamespace

    from ultralytics.engine.trainer import BaseTrainer
    from ultralytics.nn.tasks import DetectionModel

    from ikd_yolo.preflight import OPTIMIZERS

    model = DetectionModel(str(ROOT / "cfg" / "yolov8-pico.yaml"), verbose=False)
    for name in OPTIMIZERS[1:]:  # auto picks one of the others from the data
        assert type(BaseTrainer.build_optimizer(SimpleNamespace(), model, name=name.lower())).__name__ == name
    with pytest.raises(NotImplementedError) as refused:
        BaseTrainer.build_optimizer(SimpleNamespace(), model, name="adamm")
    assert set(re.findall(r"'(\w+)'", str(refused.value).split("optimizers", 1)[1])) == set(OPTIMIZERS)


def test_a_read_only_project_folder_gets_one_line(shapes_data, tmp_path):
    """project= a folder the user cannot write to: one line and exit 2 before anything loads (Ultralytics failed in
    mkdir, after loading the models, with two chained PermissionError tracebacks). Run as root, the test takes from the
    process the capability that lets root write into any folder."""
    import os
    import shutil

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    cmd = [sys.executable, str(ROOT / "run.py"), f"data={shapes_data}", T, M, f"project={ro}", "epochs=1"]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("root writes into any folder, and setpriv is missing to drop that capability")
        caps = "-dac_override,-dac_read_search"
        cmd = ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}", "--", *cmd]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(err) == 1, proc.stderr[-3000:]
    assert err[0].startswith("run.py: cannot create the run folder") and "is not writable" in err[0], err
    assert not any(ro.iterdir())


def test_probe_with_a_missing_model_gets_one_line_without_looking_online(shapes_data, tmp_path, monkeypatch, capfd):
    """Ultralytics looks a missing weights file up on GitHub (two warnings offline); the probe refuses it first."""
    monkeypatch.chdir(tmp_path)
    assert main(["probe", "model=nowhere.pt", f"data={shapes_data}"]) == 2
    out = capfd.readouterr()
    err = [ln for ln in out.err.splitlines() if ln.strip()]
    assert err == ["run.py: probe: model=nowhere.pt: no such file; give a trained .pt checkpoint"], err
    assert "GitHub" not in out.out + out.err


@pytest.mark.parametrize(
    "arg, says",
    [
        ("radii=8,abc", "radii must be positive numbers, e.g. radii=8,16,32, got 8,abc"),
        ("split=test", "split=test: data="),
        ("filter=box", "filter=box is not one of ideal, gaussian"),
    ],
)
def test_probe_bad_values_get_one_line(arg, says, shapes_data, tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    assert main(["probe", f"model={TEACHER_ASSET}", f"data={shapes_data}", arg]) == 2
    err = [ln for ln in capfd.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("run.py: probe: ") and says in err[0], err
    assert not (tmp_path / "runs").exists()


def test_resuming_a_run_that_never_saved_says_so(shapes_data, tmp_path, monkeypatch, capfd):
    """A run killed before the end of its first epoch leaves its folder (args.yaml, ikd.yaml, an empty weights/):
    resume= on its last.pt says that the run never saved a checkpoint and is to be started again."""
    from . import helpers

    monkeypatch.chdir(tmp_path)
    helpers.trainer(tmp_path, data=shapes_data, name="killed")  # what a run killed before its first save leaves
    last = tmp_path / "killed" / "weights" / "last.pt"
    assert (tmp_path / "killed" / "args.yaml").is_file() and not last.exists()
    for argv in ([f"resume={last}"], ["resume=True", f"model={last}"]):
        assert main(argv) == 2
        err = [ln for ln in capfd.readouterr().err.splitlines() if ln.strip()]
        assert len(err) == 1 and "never saved a checkpoint" in err[0] and "start it again" in err[0], err
