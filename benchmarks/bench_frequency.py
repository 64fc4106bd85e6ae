"""Cost of the frequency augmentation per 640x640 image: the branch decision plus noise, and the crop branch.

    python benchmarks/bench_frequency.py [--n 200] [--json out.json]

Calls the transform through Ultralytics' Albumentations wrapper, exactly as the training pipeline does, and prints
the median milliseconds per image with the machine it ran on.
"""

import argparse
import datetime
import json
import os
import platform
import time

import albumentations as A
import common  # noqa: F401  (this checkout's ikd_yolo, offline)
import numpy as np
import torch
from ultralytics.data.augment import Albumentations
from ultralytics.utils.instance import Instances

from ikd_yolo.frequency import SizeAwareFrequencyAug


def median_ms(wrapper, img, boxes, n):
    times = []
    for _ in range(n):
        labels = {
            "img": img.copy(),
            "cls": np.zeros((len(boxes), 1), np.float32),
            "instances": Instances(
                bboxes=boxes.copy(), segments=np.zeros((0, 1000, 2)), bbox_format="xyxy", normalized=False
            ),
        }
        t = time.perf_counter()
        wrapper(labels)
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--json")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (640, 640, 3), dtype=np.uint8)
    small = np.array([[100, 100, 120, 120], [300, 300, 325, 322]], np.float32)  # all small: noise branch
    large = np.array([[100, 100, 400, 380]], np.float32)  # a large object: crop branch
    results = {}
    for name, boxes, kw in (
        ("decision+noise", small, dict(noise_p=1.0)),
        ("decision+crop", large, dict(crop_p=1.0)),
        ("decision only (no branch fires)", small, dict(noise_p=0.0)),
    ):
        wrapper = Albumentations(p=1.0, transforms=[SizeAwareFrequencyAug(**kw)])
        results[name] = median_ms(wrapper, img, boxes, args.n)
    baseline = Albumentations(p=1.0, transforms=[A.NoOp()])
    results["Ultralytics wrapper with a no-op transform (overhead)"] = median_ms(baseline, img, small, args.n)
    machine = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "albumentations": A.__version__,
        "date": datetime.date.today().isoformat(),
    }
    for k, v in results.items():
        print(f"{k:<55} {v:7.3f} ms / 640x640 image (median of {args.n})")
    print(machine)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"ms_per_image": results, "machine": machine}, f, indent=2)
