"""``export=FORMAT``: refused before any training time is spent when the export could not succeed at the end of the run.

Ultralytics' exporter checks (and, online, installs) each format's packages only when it runs, after training. Here
the same requirements are checked up front, with Ultralytics' own ``check_requirements`` in its no-install mode:
the packages of :data:`EXPORT_NEEDS` are those that the exporter of Ultralytics 8.4 checks for each format (its
``export_*`` methods, the ONNX step of the formats built from ONNX included). A missing package refuses the run
unless Ultralytics could install it itself (online, ``YOLO_AUTOINSTALL`` not off).
"""

from __future__ import annotations

import re
import shlex

from .errors import UserError

ONNXRUNTIME = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-qnn", "onnxruntime-vitisai", "onnxruntime-windowsml")
ONNX = ("onnx>=1.12.0,<2.0.0", ONNXRUNTIME, "onnxslim>=0.1.82")  # with simplify=True (the default): onnxslim, ort
TENSORFLOW = (
    "tensorflow",
    "onnx2tf>=1.26.3,<1.29.0",
    "tf_keras",
    "sng4onnx>=1.0.1",
    "onnx_graphsurgeon>=0.3.26",
    "ai-edge-litert>=1.2.0",
    *ONNX,
)
EXPORT_NEEDS = {
    "torchscript": (),
    "onnx": ONNX,
    "openvino": ("openvino>=2024.0.0",),
    "engine": ONNX,  # and TensorRT with a CUDA GPU: check_export_format
    "coreml": ("coremltools>=9.0",),
    "coreai": ("coreai-torch>=0.4.3",),
    "saved_model": TENSORFLOW,
    "pb": TENSORFLOW,
    "edgetpu": TENSORFLOW,  # and the edgetpu_compiler program
    "litert": (("litert-torch>=0.10.0", "ai-edge-litert>=2.3.0"),),
    "paddle": (("paddlepaddle>=3.0.0,<3.3.0", "paddlepaddle-gpu>=3.0.0,<3.3.0"), "x2paddle"),
    "mnn": (*ONNX, "MNN>=2.9.6"),
    "ncnn": ("ncnn", "pnnx"),
    "imx": ("model-compression-toolkit>=2.4.1", "edge-mdt-cl>=1.1.0", "edge-mdt-tpc>=1.2.0", "imx500-converter"),
    "rknn": ("onnx>=1.16.1,<1.19.0", "rknn-toolkit2>=2.3.2,<2.5"),
    "executorch": ("executorch",),
    "axelera": ("axelera-devkit", "onnx>=1.12.0,<2.0.0", "onnxslim>=0.1.71"),
    "deepx": ("dx_com>=2.4.1", *ONNX),
    "qnn": (*ONNX, "onnxruntime-qnn"),
    "hailo": (*ONNX, "hailo_sdk_client"),  # Hailo's Dataflow Compiler, from Hailo's developer zone
    "ascend": ONNX,  # and Huawei's atc program
    "xilinx": ("amd-quark>=0.13.0,<0.14.0", *ONNX),
}
# formats whose ONNX step reads simplify=: without it, only onnx itself
SIMPLIFIED = {"onnx", "engine", "mnn", "deepx", "qnn", "hailo", "ascend", "xilinx"}


def missing_packages(fmt: str, simplify=True) -> list:
    """The requirements of ``export=fmt`` that are not installed (each a string, or a tuple of interchangeable
    packages), as Ultralytics' ``check_requirements`` judges them."""
    from ultralytics.utils.checks import check_requirements

    needs = EXPORT_NEEDS.get(fmt, ())
    if fmt in SIMPLIFIED and simplify is False:
        needs = tuple(r for r in needs if r not in ONNX[1:])
    return [r for r in needs if not check_requirements([r], install=False)]


def check_export_format(fmt, device=None, simplify=True) -> None:
    """Refuse an ``export=`` that cannot succeed (an unknown format, TensorRT without a CUDA GPU, a package that is not
    installed) before any training time is spent, with the command that installs what is missing."""
    import importlib.util

    import torch
    from ultralytics.engine.exporter import export_formats
    from ultralytics.utils import AUTOINSTALL, ONLINE

    fmt = str(fmt)
    known = [f for f in export_formats()["Argument"] if f != "-"]
    if fmt not in known:
        raise UserError(f"export={fmt} is not an Ultralytics export format; use one of {', '.join(known)}")
    if fmt == "engine":
        if str(device).lower() in {"cpu", "mps"} or not torch.cuda.is_available():
            raise UserError(
                "export=engine builds a TensorRT engine, which needs a CUDA GPU: train with device=0, or use "
                "export=onnx and build the engine on the GPU machine (trtexec --onnx=best.onnx)"
            )
        if importlib.util.find_spec("tensorrt") is None:
            raise UserError(
                "export=engine needs TensorRT, which is not installed: pip install tensorrt, or use export=onnx"
            )
    missing = missing_packages(fmt, simplify)
    if missing and not (AUTOINSTALL and ONLINE):
        first = [r if isinstance(r, str) else r[0] for r in missing]
        names = ", ".join(re.match(r"[\w.-]+", r).group(0) for r in first)
        extra = " (or pip install -e '.[export]' in a clone of ikd_yolo)" if fmt == "onnx" else ""
        raise UserError(
            f"export={fmt} needs {names}, which Ultralytics cannot install here (offline, or YOLO_AUTOINSTALL=false): "
            f"pip install {' '.join(shlex.quote(r) for r in first)}{extra}, or leave out export="
        )
