"""One rank of the two-process label-refinement check in test_ddp.py (started by torch.distributed.run).

Each rank builds the same training set and refines its labels with the demo teacher under a gloo process group:
each runs the teacher on its share of the images and the ranks exchange the results. Every rank writes the labels
it ends up with, the counts and the number of images it ran the teacher on, to ``<argv[3]>.<rank>.json``.
"""

import json
import sys

import torch.distributed as dist
from ultralytics.cfg import get_cfg
from ultralytics.data import build_yolo_dataset
from ultralytics.data.utils import check_det_dataset

from ikd_yolo.pseudo_labels import refine_dataset
from ikd_yolo.teacher import load_teacher


def refined_labels(data_yaml: str, teacher: str) -> tuple[list, dict, int]:
    """The refined labels of the training split, the counts, and how many images this process ran the teacher on."""
    data = check_det_dataset(data_yaml)
    ds = build_yolo_dataset(get_cfg(overrides={"imgsz": 128}), data["train"], 8, data, mode="train")
    forwards = []
    stats = refine_dataset(
        ds, load_teacher(teacher), conf=0.5, mix=1.0, batch=1, after_batch=lambda: forwards.append(1)
    )
    return [[lb["cls"].ravel().tolist(), lb["bboxes"].tolist()] for lb in ds.labels], stats, len(forwards)


if __name__ == "__main__":
    dist.init_process_group("gloo")
    labels, stats, forwards = refined_labels(sys.argv[1], sys.argv[2])
    with open(f"{sys.argv[3]}.{dist.get_rank()}.json", "w") as f:
        json.dump(
            {"labels": labels, "stats": stats, "teacher_images": forwards, "world_size": dist.get_world_size()}, f
        )
    dist.barrier()  # no rank tears gloo down while the other may still send (a CI run saw a rank abort at exit)
    dist.destroy_process_group()
