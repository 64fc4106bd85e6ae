"""Teacher-refined labels: the teacher's detections correct the boxes of the batch and add the objects it misses.

Real annotations are imperfect: box edges a few pixels off, some objects never labelled. A student trained on them
learns the noise (it is told that an unlabelled object is background); a teacher trained on more images has
averaged most of it out. Its dense outputs are a poor target for a much smaller student (the soft KD terms of this
project lost accuracy as their weight grew: benchmarks/HISTORY.md), but its *detections* are targets in the form the
student's own loss already takes. So, for each training image (once, on the image as loaded, before the first
epoch):

- **refine**: a label whose box overlaps a confident teacher detection of the same class (IoU >= ``match_iou``)
  moves towards the detection's box: ``(1 - mix) * label + mix * teacher`` (``mix = kd_labels``);
- **add**: a confident detection (score >= ``conf``) that overlaps no label (IoU < ``new_iou`` with every box of its
  image) becomes a label, with the detection's class;
- labels the teacher does not see are kept as they are.

The student's detection loss (Ultralytics' own assigner and losses) then runs on these targets; no loss term is
added. Refined once, the labels go through mosaic, affine, flips and the frequency augmentation as the original
labels would, and the teacher costs one inference pass over the training set instead of a forward per batch; the
label files on disk are never written. Semi-supervised detectors train on a teacher's thresholded detections the
same way (Unbiased Teacher, Liu et al., ICLR 2021; Soft Teacher, Xu et al., ICCV 2021), here on labelled images, to
clean their labels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
from ultralytics.utils.metrics import box_iou
from ultralytics.utils.nms import non_max_suppression
from ultralytics.utils.ops import xywh2xyxy, xyxy2xywh

from .settings import SETTINGS

MATCH_IOU = SETTINGS["kd_label_iou"].default  # the rule's defaults are the settings' (declared once there)
NEW_IOU = SETTINGS["kd_label_new_iou"].default


def teacher_detections(
    decoded: torch.Tensor, conf: float, classes: list[int] | None = None, iou: float = 0.7, max_det: int = 300
) -> list:
    """Per image, the teacher's detections after NMS: (n, 6) ``x1, y1, x2, y2, score, class`` in input pixels.

    Args:
        decoded: The teacher's eval-mode Detect output, (B, 4 + nc, A): xywh in pixels, then class probabilities.
        classes: The classes kept (the training's ``classes=``, whose other labels Ultralytics drops); None: all.
    """
    return non_max_suppression(
        decoded.detach().float(), conf_thres=conf, iou_thres=iou, classes=classes, max_det=max_det
    )


def refine_targets(
    cls: torch.Tensor,
    boxes: torch.Tensor,
    det: torch.Tensor,
    mix: float,
    match_iou: float = MATCH_IOU,
    new_iou: float = NEW_IOU,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One image's labels refined by its detections: the rule of this module.

    Args:
        cls: (n,) label classes.
        boxes: (n, 4) label boxes, normalised xywh; the ones no detection refines are returned bit for bit.
        det: (m, 6) detections ``x1, y1, x2, y2, score, class`` with the box normalised like ``boxes`` (IoU does not
            change when x and y are scaled separately, so normalised boxes match as pixel boxes do).

    Returns:
        The refined classes (n + added,) and boxes (n + added, 4): the labels first, then the added detections.
    """
    cls, det = cls.view(-1).float(), det.to(boxes.device).float()
    new = det
    if len(det) and len(boxes):
        xyxy = xywh2xyxy(boxes.float())
        iou = box_iou(xyxy, det[:, :4])  # (n_labels, n_det)
        same = cls.view(-1, 1) == det[:, 5].view(1, -1)
        best, j = torch.where(same, iou, torch.zeros_like(iou)).max(1)
        hit = best >= match_iou
        if hit.any():
            boxes = boxes.clone()
            boxes[hit] = xyxy2xywh((1 - mix) * xyxy[hit] + mix * det[j[hit], :4]).to(boxes.dtype)
        new = det[iou.max(0).values < new_iou]
    return torch.cat([cls, new[:, 5]]), torch.cat([boxes, xyxy2xywh(new[:, :4]).to(boxes.dtype)]).clamp(0.0, 1.0)


class _TeacherInputs(torch.utils.data.Dataset):
    """A training set's images as the teacher sees them in one pass: long side resized to the training size (the
    dataset's own ``load_image``), RGB, padded at the right and bottom to a square."""

    def __init__(self, dataset):
        from ultralytics.data.augment import LetterBox

        self.dataset = dataset
        size = dataset.imgsz
        size = max(size) if isinstance(size, (tuple, list)) else int(size)
        self.pad = LetterBox((size, size), scaleup=False, center=False)  # already resized: pads right and bottom

    def __len__(self) -> int:
        return len(self.dataset.labels)

    def __getitem__(self, i: int):
        im, _, (h, w) = self.dataset.load_image(i)
        im = self.pad(image=im)
        im = im[..., None] if im.ndim == 2 else im
        if im.shape[2] == 3:
            im = im[..., ::-1]  # BGR -> RGB, as Ultralytics' Format transform
        image = torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1)
        return i, image, torch.tensor([w, h, w, h, 1, 1], dtype=torch.float32)


@torch.no_grad()
def refine_dataset(
    dataset,
    teacher: torch.nn.Module,
    conf: float,
    mix: float,
    match_iou: float = MATCH_IOU,
    new_iou: float = NEW_IOU,
    batch: int = 32,
    workers: int = 0,
    after_batch=None,
    classes: list[int] | None = None,
) -> dict:
    """Refine the labels of an Ultralytics detection dataset in memory with the teacher's detections on its images.

    The teacher runs once per image (not per augmented batch); ``dataset.labels`` then holds the refined boxes,
    which the augmentations transform as they transform any label. No file is written. ``after_batch``: called
    after each teacher forward (to empty the distillation hooks). In a distributed run (``torch.distributed``
    initialised) each rank runs the teacher on its share of the images (every world-size-th) and the ranks
    exchange the refined labels, so that every rank's copy of the dataset ends up the same. ``classes``: only
    detections of these classes refine or add labels (the training's ``classes=``); ``match_iou`` and ``new_iou``:
    the rule of :func:`refine_targets`.

    Returns:
        Counts: ``images``, ``labels`` (before), ``refined`` (labels moved), ``added`` (objects added).
    """
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    inputs = _TeacherInputs(dataset)
    share = torch.utils.data.Subset(inputs, range(dist.get_rank() if world > 1 else 0, len(inputs), world))
    loader = torch.utils.data.DataLoader(share, batch_size=batch, num_workers=workers)
    param = next(teacher.parameters())
    refined = []  # (image index, classes, normalised xywh boxes) of this rank's images
    for index, imgs, scale in loader:
        out = teacher(imgs.to(param.device, non_blocking=True).to(param.dtype) / 255)
        if after_batch is not None:
            after_batch()
        decoded = out[0] if isinstance(out, (tuple, list)) else out
        for i, det, s in zip(index.tolist(), teacher_detections(decoded, conf, classes), scale, strict=True):
            label = dataset.labels[i]
            boxes = torch.from_numpy(np.asarray(label["bboxes"], dtype=np.float32).reshape(-1, 4))
            cls = torch.from_numpy(np.asarray(label["cls"], dtype=np.float32).reshape(-1))
            new_cls, new_boxes = refine_targets(cls, boxes, det.cpu().float() / s, mix, match_iou, new_iou)
            refined.append((i, new_cls.numpy(), new_boxes.numpy()))
    if world > 1:
        shares = [None] * world
        dist.all_gather_object(shares, refined)
        refined = [r for part in shares for r in part]
    stats = dict(images=0, labels=0, refined=0, added=0)
    for i, new_cls, new_boxes in refined:
        label = dataset.labels[i]
        boxes = np.asarray(label["bboxes"], dtype=np.float32).reshape(-1, 4)
        stats["images"] += 1
        stats["labels"] += len(boxes)
        stats["refined"] += int((new_boxes[: len(boxes)] != boxes).any(1).sum())
        stats["added"] += len(new_boxes) - len(boxes)
        label["cls"] = new_cls.reshape(-1, 1).astype(np.float32)
        label["bboxes"] = new_boxes.astype(np.float32)
        if len(new_boxes) != len(boxes) and len(label.get("segments") or []):
            label["segments"] = []  # polygons of the original objects only: no longer one per box
    return stats
