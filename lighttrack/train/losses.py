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

import torch
import torch.nn.functional as F

__all__ = ["weighted_bce", "iou_loss", "TrackingLoss", "tracking_loss"]


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` is true; 0 (with a graph) when the mask is empty."""
    mask = mask.bool()
    count = mask.sum().to(values.dtype)
    # indexing (not a product with the mask): cells outside the mask may hold NaN/inf (e.g. log of a negative
    # union for targets that are meaningless there) and must not poison the sum.
    # clamp_min keeps the empty case finite: 0 / 1 = 0, still with a grad_fn.
    return values[mask].sum() / count.clamp_min(1.0)


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


def tracking_loss(cls_logits: torch.Tensor, reg: torch.Tensor, batch: dict,
                  cls_weight: float = 1.0, reg_weight: float = 1.0) -> TrackingLoss:
    """Total = cls_weight * weighted BCE + reg_weight * IoU loss (1:1 as in Ocean).

    ``batch`` holds ``cls_label`` (B, H, W), ``reg_target`` (B, 4, H, W), ``reg_mask`` (B, H, W).
    """
    c = weighted_bce(cls_logits, batch["cls_label"])
    r = iou_loss(reg, batch["reg_target"], batch["reg_mask"])
    return TrackingLoss(cls_weight * c + reg_weight * r, c, r)
