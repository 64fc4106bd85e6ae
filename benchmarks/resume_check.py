"""Does a cached training that stopped at a snapshot and resumed (``train_cached(..., until=N)``, then without
``until``) end with the weights of the same training run in one go? It matters for the textured benchmark's strong
teacher: a cache built headline first stops the teacher's training at the typical snapshot and resumes it later.

    python benchmarks/resume_check.py            # tiny trainings (3 epochs, 64 px, 40 images), about a minute

Like the teacher's training (63 batches of 32, nbs 64: an optimizer step every 2 batches), the tiny one has an odd
number of batches per epoch (5 of 8 images) and steps every 2 batches (nbs=16), so a step spans an epoch's end.

Prints, per saved epoch, the largest absolute weight difference between the stopped-and-resumed training and the
one-go training, and the same for a second one-go training (the machine's own repeatability).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import common
from common import ROOT


def weights(path: Path) -> dict:
    """The float state dict of a checkpoint (its ``model``, or ``ema`` where the model was stripped)."""
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return (ckpt.get("model") or ckpt["ema"]).float().state_dict()


def largest_difference(x: dict, y: dict) -> float:
    return max((x[k] - y[k]).abs().max().item() for k in x)


def main() -> None:
    from ikd_yolo.demo.shapes import make_shapes_dataset

    with tempfile.TemporaryDirectory() as tmp:
        common.CACHE = Path(tmp) / "cache"
        data = make_shapes_dataset(Path(tmp) / "data", n_train=40, n_val=8, imgsz=64, seed=0)
        args = dict(imgsz=64, batch=8, nbs=16, warmup_epochs=0, epochs=3, close_mosaic=1, save_period=1, val=False)
        pico = str(ROOT / "cfg" / "yolov8-pico.yaml")
        whole = common.train_cached("s", "whole", pico, data, "cpu", **args).parent
        again = common.train_cached("s", "again", pico, data, "cpu", **args).parent
        common.train_cached("s", "stopped", pico, data, "cpu", 0, **args)  # stops once epoch0.pt is saved
        resumed = common.train_cached("s", "stopped", pico, data, "cpu", **args).parent
        print("epoch  stopped-and-resumed vs one go  one go vs one go (largest absolute weight difference)")
        for e in range(args["epochs"]):
            f = f"epoch{e}.pt"
            one_go = weights(whole / f)  # loaded once, compared twice
            print(f"{e:>5}  {largest_difference(one_go, weights(resumed / f)):>29.3g}", end="")
            print(f"  {largest_difference(one_go, weights(again / f)):>16.3g}")


if __name__ == "__main__":
    main()
