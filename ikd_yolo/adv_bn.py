"""The student's BatchNorm on the adversarial images (``adv_bn``), and the slicing of one forward into two groups.

By default (``split``) the adversarial images run in the same student forward as the clean batch (one student pass
fewer: the step on a GPU is bound by the CPU's launches), but every BatchNorm layer normalises each group by its own
batch statistics and updates the running statistics from the clean group only (:func:`split_bn_statistics`), so
evaluation statistics describe clean images. ``running`` gives them a forward of their own, normalised by the
running statistics (:func:`running_bn_statistics`), as the reference's frozen BatchNorm does. Removed
(benchmarks/HISTORY.md): ``joint`` (one forward, statistics shared) lost on every benchmark; ``batch`` (a forward of
their own, their own statistics) computed the numbers of ``split`` at more time and memory.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn


@contextlib.contextmanager
def running_bn_statistics(model: nn.Module):
    """Run ``model`` with its BatchNorm layers normalising by their running statistics (eval mode), which stay as
    they are; every other layer keeps its mode. Gradients flow through the fixed normalisation."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    for m in bns:
        m.eval()
    try:
        yield
    finally:
        for m in bns:
            m.train()


@contextlib.contextmanager
def split_bn_statistics(model: nn.Module, n_first: int):
    """Run ``model`` in train mode on a batch whose first ``n_first`` samples and the rest are each normalised by
    their own batch statistics, in one forward: the running statistics move with the first group only. The same
    numbers as two forwards, the second in train mode with the running statistics held, with one pass through the
    model."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]

    def grouped(m):
        plain = type(m).forward

        def forward(x):
            first = plain(m, x[:n_first])  # as the module's own forward: running statistics, num_batches_tracked
            rest = F.batch_norm(x[n_first:], None, None, m.weight, m.bias, True, 0.0, m.eps)
            return torch.cat([first, rest])

        return forward

    for m in bns:
        m.forward = grouped(m)
    try:
        yield
    finally:
        for m in bns:
            vars(m).pop("forward", None)


def take(obj, index: slice):
    """``obj`` (a tensor, or lists, tuples and dicts of them, as Ultralytics' training outputs) sliced on the batch
    dimension."""
    if isinstance(obj, torch.Tensor):
        return obj[index]
    if isinstance(obj, dict):
        return {k: take(v, index) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(take(v, index) for v in obj)
    return obj
