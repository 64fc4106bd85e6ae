"""Teacher-refined labels: the teacher's detections correct the boxes of the batch and add the objects it misses.

Real annotations are imperfect: box edges a few pixels off, some objects never labelled. A student trained on them
learns the noise (it is told that an unlabelled object is background); a teacher trained on more images has
averaged most of it out. Its dense outputs are a poor target for a much smaller student (every soft KD term of this
project lost accuracy on the benchmark as its weight grew), but its *detections* are targets in the form the
student's own loss already takes. So, per training batch, after the teacher's forward:

- **refine**: a label whose box overlaps a confident teacher detection of the same class (IoU >= ``match_iou``)
  moves towards the detection's box: ``(1 - mix) * label + mix * teacher`` (``mix = kd_labels``);
- **add**: a confident detection (score >= ``conf``) that overlaps no label (IoU < ``new_iou`` with every box of its
  image) becomes a label, with the detection's class;
- labels the teacher does not see are kept as they are.

The student's detection loss (Ultralytics' own assigner and losses) then runs on these targets; no loss term is
added. Semi-supervised detectors train on a teacher's thresholded detections the same way (Unbiased Teacher, Liu et
al., ICLR 2021; Soft Teacher, Xu et al., ICCV 2021), here on labelled images, to clean their labels.
"""

from __future__ import annotations

import torch
from ultralytics.utils.metrics import box_iou
from ultralytics.utils.nms import non_max_suppression
from ultralytics.utils.ops import xywh2xyxy, xyxy2xywh


def teacher_detections(decoded: torch.Tensor, conf: float, iou: float = 0.7, max_det: int = 300) -> list:
    """Per image, the teacher's detections after NMS: (n, 6) ``x1, y1, x2, y2, score, class`` in input pixels.

    Args:
        decoded: The teacher's eval-mode Detect output, (B, 4 + nc, A): xywh in pixels, then class probabilities.
    """
    return non_max_suppression(decoded.detach().float(), conf_thres=conf, iou_thres=iou, max_det=max_det)


def refine_labels(
    batch: dict,
    detections: list[torch.Tensor],
    mix: float,
    match_iou: float = 0.5,
    new_iou: float = 0.3,
) -> dict:
    """A copy of the batch's targets (``batch_idx``, ``cls``, ``bboxes``: normalised xywh) refined by ``detections``
    (from :func:`teacher_detections`); the other keys are the batch's own."""
    h, w = batch["img"].shape[2:]
    scale = torch.tensor([w, h, w, h], device=batch["bboxes"].device, dtype=torch.float32)
    idx_all, cls_all, box_all = [], [], []
    for i, det in enumerate(detections):
        keep = batch["batch_idx"] == i
        cls = batch["cls"][keep].view(-1).float()
        labels = batch["bboxes"][keep].float()  # normalised xywh; only the refined ones are rewritten
        det = det.to(labels.device).float()
        new = det
        if len(det) and len(labels):
            boxes = xywh2xyxy(labels * scale)  # pixels
            iou = box_iou(boxes, det[:, :4])  # (n_labels, n_det)
            same = cls.view(-1, 1) == det[:, 5].view(1, -1)
            best, j = torch.where(same, iou, torch.zeros_like(iou)).max(1)
            hit = best >= match_iou
            if hit.any():
                labels = labels.clone()
                labels[hit] = xyxy2xywh((1 - mix) * boxes[hit] + mix * det[j[hit], :4]) / scale
            new = det[iou.max(0).values < new_iou]
        cls_all.append(torch.cat([cls, new[:, 5]]))
        box_all.append(torch.cat([labels, xyxy2xywh(new[:, :4]) / scale]))
        idx_all.append(torch.full_like(cls_all[-1], i))
    out = dict(batch)
    out["batch_idx"] = torch.cat(idx_all).to(batch["batch_idx"].dtype)
    out["cls"] = torch.cat(cls_all).view(-1, 1).to(batch["cls"].dtype)
    out["bboxes"] = torch.cat(box_all).clamp(0.0, 1.0).to(batch["bboxes"].dtype)
    return out
