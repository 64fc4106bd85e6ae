"""Export a student and compare the exported model with the PyTorch one: same outputs, and latency.

    python benchmarks/bench_export.py WEIGHTS.pt [--imgsz 640] [--device 0] [--formats onnx,engine] [--half]

For each format, the student is exported through Ultralytics (the file lands next to WEIGHTS.pt), loaded back with
``YOLO(file)`` and run on the same images as the PyTorch student: the script prints the largest difference of the
raw outputs (PyTorch vs the exported runtime, same input tensor) and the median latency of one 1-image forward pass,
PyTorch fp32 (and fp16 on CUDA) included. A format whose runtime is missing (TensorRT without the ``tensorrt``
package, say) is reported as skipped with the reason, not as a failure.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")


def median_ms(fn, n: int, sync) -> float:
    times = []
    for i in range(n + 5):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        if i >= 5:
            times.append(time.perf_counter() - t)
    times.sort()
    return 1000 * times[len(times) // 2]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("weights")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--device", default="cpu")
    p.add_argument("--formats", default="onnx")
    p.add_argument("--half", action="store_true", help="fp16 export (TensorRT engine) and fp16 PyTorch row")
    p.add_argument("--n", type=int, default=50, help="timed runs per row")
    p.add_argument("--json")
    return p.parse_args()


def export_row(fmt: str, a, x, ref, dev, sync) -> dict:
    """Export the student to ``fmt``, run it on ``x``: its row (latency, largest difference from ``ref``), or the
    reason it was skipped."""
    import numpy as np
    import torch
    from ultralytics import YOLO
    from ultralytics.nn.autobackend import AutoBackend

    try:
        f = YOLO(a.weights).export(
            format=fmt, imgsz=a.imgsz, quantize=16 if a.half and fmt == "engine" else None, device=a.device
        )
    except Exception as e:  # a missing runtime or toolkit is a result to report, not a crash
        return {"format": fmt, "skipped": f"{type(e).__name__}: {str(e)[:200]}"}
    backend = AutoBackend(f, device=dev, fp16=a.half and fmt == "engine", verbose=False)
    xin = x.half() if backend.fp16 else x
    with torch.no_grad():
        out = backend(xin)
        out = out[0] if isinstance(out, (list, tuple)) else out
        out = torch.as_tensor(np.asarray(out.cpu()) if not isinstance(out, torch.Tensor) else out).float().to(dev)
        return {
            "format": fmt + (" fp16" if backend.fp16 else ""),
            "file": str(f),
            "ms": median_ms(lambda b=backend, xi=xin: b(xi), a.n, sync),
            "max_abs_diff": float((out - ref).abs().max()),
        }


def main() -> None:
    import torch
    from ultralytics.nn.autobackend import AutoBackend

    a = parse_args()
    cuda = a.device != "cpu" and torch.cuda.is_available()
    dev = torch.device(f"cuda:{a.device}" if cuda else "cpu")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    x = torch.rand(1, 3, a.imgsz, a.imgsz, generator=torch.Generator().manual_seed(0)).to(dev)
    rows = []

    torch_model = AutoBackend(a.weights, device=dev, fp16=False, fuse=True, verbose=False).eval()
    with torch.no_grad():
        ref = torch_model(x)
        ref = (ref[0] if isinstance(ref, (list, tuple)) else ref).float()
        rows.append({"format": "pytorch fp32", "ms": median_ms(lambda: torch_model(x), a.n, sync), "max_abs_diff": 0.0})
        if cuda:
            half_model = AutoBackend(a.weights, device=dev, fp16=True, fuse=True, verbose=False).eval()
            out = half_model(x.half())
            out = (out[0] if isinstance(out, (list, tuple)) else out).float()
            rows.append(
                {
                    "format": "pytorch fp16",
                    "ms": median_ms(lambda: half_model(x.half()), a.n, sync),
                    "max_abs_diff": float((out - ref).abs().max()),
                }
            )

    for fmt in a.formats.split(","):
        rows.append(export_row(fmt, a, x, ref, dev, sync))
    device = torch.cuda.get_device_name(dev) if cuda else (platform.processor() or platform.machine())
    print(f"\n{a.weights}, imgsz {a.imgsz}, batch 1, {device}, {datetime.date.today()}; median of {a.n} runs")
    print(f"{'format':<16} {'ms':>8} {'max |diff| vs fp32':>20}")
    for r in rows:
        if "skipped" in r:
            print(f"{r['format']:<16} skipped: {r['skipped']}")
        else:
            print(f"{r['format']:<16} {r['ms']:>8.2f} {r['max_abs_diff']:>20.4g}")
    if a.json:
        Path(a.json).write_text(json.dumps({"device": device, "imgsz": a.imgsz, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
