"""One rank of the two-process gloo check in test_ddp.py (started by torch.distributed.run).

Each rank builds the same teacher and student (same seed), wraps the IKD model in DistributedDataParallel the way
Ultralytics' trainer does, and runs a few training steps with the adversarial term on, each rank on a different
batch. DDP must keep the trained weights identical across ranks; the attack (input gradients only, frozen teacher)
must not disturb its reducer. Rank 0 writes what it found to the json file given as argv[1].
"""

import json
import sys

import torch
import torch.distributed as dist
from torch import nn
from ultralytics.cfg import get_cfg
from ultralytics.nn.tasks import DetectionModel

from ikd_yolo.config import IKDConfig, default_settings
from ikd_yolo.model import IKDDistillationModel


def batch_for(rank: int, n: int = 4, size: int = 64) -> dict:
    g = torch.Generator().manual_seed(100 + rank)
    boxes = torch.rand(n * 3, 2, generator=g) * 0.5 + 0.25
    wh = torch.rand(n * 3, 2, generator=g) * 0.3 + 0.05
    return {
        "img": torch.rand(n, 3, size, size, generator=g),
        "batch_idx": torch.arange(n).repeat_interleave(3).float(),
        "cls": torch.randint(0, 4, (n * 3, 1), generator=g).float(),
        "bboxes": torch.cat([boxes, wh], 1),
    }


def flat(module: nn.Module, prefix: str = "") -> torch.Tensor:
    return torch.cat([p.detach().flatten() for n, p in module.named_parameters() if n.startswith(prefix)])


def main(out: str) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    args = get_cfg(overrides={"imgsz": 64})
    teacher = DetectionModel("yolov8s.yaml", nc=4, verbose=False).eval()
    student = DetectionModel("yolov8n.yaml", nc=4, verbose=False)
    student.args = args
    ikd = IKDConfig.from_mapping({**default_settings(), "adv_steps": 2, "adv_batch_frac": 1.0, "kd_balance_batches": 1})
    model = IKDDistillationModel(teacher_model=teacher, student_model=student, ikd=ikd)
    model.args = args
    for name, p in model.named_parameters():
        if name.startswith("teacher_model.") or ".dfl" in name:
            p.requires_grad = False  # as the trainer's freeze list does
    model.train()
    teacher_before = flat(model.teacher_model)
    trained_before = flat(model.student_model)
    ddp = nn.parallel.DistributedDataParallel(model, find_unused_parameters=True, broadcast_buffers=False)
    params = [p for p in ddp.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    adv_losses = []
    batch = batch_for(rank)
    for _ in range(3):
        loss, items = ddp(batch)
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
        adv_losses.append(items["adv_loss"].item())

    mine = torch.cat([flat(model.student_model), flat(model.projector), model.kd_gain])
    gathered = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, mine)
    if rank == 0:
        result = {
            "world_size": dist.get_world_size(),
            "max_abs_diff_between_ranks": float((gathered[0] - gathered[1]).abs().max()),
            "student_changed": float((flat(model.student_model) - trained_before).abs().max()),
            "teacher_changed": float((flat(model.teacher_model) - teacher_before).abs().max()),
            "adv_losses": adv_losses,
            "adv_skipped": model.adv_skipped,
            "kd_gain": model.kd_gain.tolist(),
            "kd_calibrated": model.kd_calibrated.item(),
        }
        with open(out, "w") as f:
            json.dump(result, f)
    dist.barrier()  # no rank tears gloo down while the other may still send (a CI run saw a rank abort at exit)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
