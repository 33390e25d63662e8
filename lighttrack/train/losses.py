"""Tracking losses: weighted BCE for classification, IoU loss for box regression.

Both are pooled over every cell of the batch (so "averaged over the batch") and are
well defined on batches the released code got wrong:

* weighted BCE with **no** positive cell: the positive term is 0 (not NaN) and the
  negative term keeps its weight 0.5 (weights are not renormalised, so the gradient
  scale of the negatives does not jump from batch to batch);
* weighted BCE with **exactly one** positive cell: that cell's BCE (the released code
  returned 0 because a squeezed index tensor became 0-dimensional);
* IoU loss with an empty mask: 0, still attached to the graph so ``backward`` works.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from lighttrack.data.labels import make_labels

__all__ = ["weighted_bce", "iou_loss", "TrackingLoss", "tracking_loss", "labels_for", "score_distillation"]


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` is true; 0 (with a graph) when the mask is empty."""
    mask = mask.bool()
    count = mask.sum().to(values.dtype)
    # a select (not a product with the mask): cells outside the mask may hold NaN/inf (e.g. log of a negative
    # union for targets that are meaningless there) and must not poison the sum. Not indexing either:
    # values[mask] has a data-dependent size, so it waits for the device every call.
    # clamp_min keeps the empty case finite: 0 / 1 = 0, still with a grad_fn.
    return torch.where(mask, values, values.new_zeros(())).sum() / count.clamp_min(1.0)


def weighted_bce(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """0.5 * BCE over positive cells + 0.5 * BCE over negative cells.

    logits: (B, 1, H, W) or (B, H, W) raw scores; label: (B, H, W) in {0, 1}.
    """
    logits = logits.reshape(label.shape).float()
    label = label.float()
    bce = F.binary_cross_entropy_with_logits(logits, label, reduction="none")  # (B, H, W)
    pos = label > 0.5
    return 0.5 * _masked_mean(bce, pos) + 0.5 * _masked_mean(bce, ~pos)


def iou_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``-log((I + 1) / (U + 1))`` over the cells whose grid point lies inside the box.

    pred, target: (B, 4, H, W) distances (left, top, right, bottom) in pixels, >= 0;
    mask: (B, H, W), non-zero inside the box.
    """
    pred, target = pred.float(), target.float()
    pl, pt, pr, pb = pred.unbind(1)  # each (B, H, W)
    tl, tt, tr, tb = target.unbind(1)
    pred_area = (pl + pr) * (pt + pb)
    target_area = (tl + tr) * (tt + tb)
    inter = (torch.minimum(pl, tl) + torch.minimum(pr, tr)) * (torch.minimum(pt, tt) + torch.minimum(pb, tb))
    union = pred_area + target_area - inter
    loss = -torch.log((inter + 1.0) / (union + 1.0))  # (B, H, W)
    return _masked_mean(loss, mask > 0)


@dataclass(frozen=True)
class TrackingLoss:
    """The parts of the phase-2/4 loss (tensors, for logging call ``.item()``)."""

    total: torch.Tensor
    cls: torch.Tensor
    reg: torch.Tensor


def labels_for(batch: dict, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(cls_label, reg_target, reg_mask) for a ``size`` x ``size`` score map.

    The loader's labels are made for stride 16; a stride-8 path of the wide space
    (32x32 maps at 256 px) gets its labels here, from the same ``search_box`` by the
    same rule (:func:`lighttrack.data.labels.make_labels`, radius 1 cell).
    """
    label = batch["cls_label"]
    if label.shape[-1] == size:
        return label, batch["reg_target"], batch["reg_mask"]
    search_size = batch["search"].shape[-1]
    if search_size % size:
        raise ValueError(f"score map {size}x{size} does not divide the {search_size}-pixel search crop")
    boxes = batch["search_box"].detach().cpu().numpy()  # (B, 4) xywh crop px
    parts = zip(*(make_labels(b, search_size, search_size // size) for b in boxes))
    return tuple(torch.from_numpy(np.stack(p)).to(label.device) for p in parts)


def tracking_loss(cls_logits: torch.Tensor, reg: torch.Tensor, batch: dict,
                  cls_weight: float = 1.0, reg_weight: float = 1.0) -> TrackingLoss:
    """Total = cls_weight * weighted BCE + reg_weight * IoU loss (1:1 as in Ocean).

    ``batch`` holds ``cls_label`` (B, H, W), ``reg_target`` (B, 4, H, W), ``reg_mask`` (B, H, W)
    for the loader's stride, and ``search_box``/``search`` to make them for another map size.
    """
    cls_label, reg_target, reg_mask = labels_for(batch, cls_logits.shape[-1])
    c = weighted_bce(cls_logits, cls_label)
    r = iou_loss(reg, reg_target, reg_mask)
    return TrackingLoss(cls_weight * c + reg_weight * r, c, r)


def score_distillation(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """In-place distillation of the score map: BCE of the student's logits (B, 1, S, S)
    towards the teacher's probabilities, every cell alike (the teacher is detached)."""
    return F.binary_cross_entropy_with_logits(student.float(), torch.sigmoid(teacher.detach().float()))
