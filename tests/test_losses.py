"""Losses of phases 2 and 4 (docs/method.md §9; §15: the released weighted BCE's defects)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lighttrack.train.losses import iou_loss, tracking_loss, weighted_bce


def _bce(x: float, y: float) -> float:
    return F.binary_cross_entropy_with_logits(torch.tensor(float(x)), torch.tensor(float(y))).item()


def test_weighted_bce_is_half_positive_half_negative_mean():
    logits = torch.tensor([[[2.0, -1.0], [0.5, -3.0]]])  # (1, 2, 2)
    label = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    pos = (_bce(2.0, 1) + _bce(0.5, 1)) / 2
    neg = (_bce(-1.0, 0) + _bce(-3.0, 0)) / 2
    assert math.isclose(weighted_bce(logits, label).item(), 0.5 * pos + 0.5 * neg, rel_tol=1e-6)
    # (B, 1, H, W) logits are accepted as the network returns them
    assert math.isclose(weighted_bce(logits[:, None], label).item(), 0.5 * pos + 0.5 * neg, rel_tol=1e-6)


def test_weighted_bce_zero_positives_is_finite_with_gradient():
    logits = torch.randn(2, 1, 16, 16, requires_grad=True)
    label = torch.zeros(2, 16, 16)
    loss = weighted_bce(logits, label)
    assert torch.isfinite(loss)
    neg = F.binary_cross_entropy_with_logits(logits.detach().reshape(label.shape), label)
    assert math.isclose(loss.item(), 0.5 * neg.item(), rel_tol=1e-6)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_weighted_bce_one_positive_counts():
    logits = torch.zeros(1, 1, 4, 4, requires_grad=True)
    label = torch.zeros(1, 4, 4)
    label[0, 2, 1] = 1.0
    loss = weighted_bce(logits, label)
    # every cell has BCE log(2) at logit 0: 0.5*log2 + 0.5*log2
    assert math.isclose(loss.item(), math.log(2.0), rel_tol=1e-6)
    loss.backward()
    assert logits.grad[0, 0, 2, 1] < 0  # the single positive pulls its logit up


def test_iou_loss_matches_formula_on_one_cell():
    pred = torch.tensor([10.0, 10.0, 10.0, 10.0]).view(1, 4, 1, 1)   # 20x20 box at the grid point
    target = torch.tensor([5.0, 10.0, 15.0, 10.0]).view(1, 4, 1, 1)  # 20x20 shifted 5 px right
    mask = torch.ones(1, 1, 1)
    inter = 15.0 * 20.0
    union = 400.0 + 400.0 - inter
    assert math.isclose(iou_loss(pred, target, mask).item(), -math.log((inter + 1) / (union + 1)), rel_tol=1e-6)
    assert iou_loss(target, target, mask).item() < 1e-6  # perfect box -> 0


def test_iou_loss_only_counts_masked_cells_and_empty_mask_is_zero():
    pred = torch.rand(2, 4, 8, 8) * 30
    target = torch.rand(2, 4, 8, 8) * 30
    mask = torch.zeros(2, 8, 8)
    mask[1, 3, 4] = 1
    only = iou_loss(pred[1:2, :, 3:4, 4:5], target[1:2, :, 3:4, 4:5], torch.ones(1, 1, 1))
    assert math.isclose(iou_loss(pred, target, mask).item(), only.item(), rel_tol=1e-6)
    p = pred.clone().requires_grad_(True)
    empty = iou_loss(p, target, torch.zeros(2, 8, 8))
    assert empty.item() == 0.0
    empty.backward()  # still attached to the graph
    assert p.grad.abs().sum() == 0


def test_tracking_loss_is_cls_plus_reg():
    torch.manual_seed(0)
    batch = {"cls_label": (torch.rand(2, 16, 16) > 0.9).float(),
             "reg_target": torch.rand(2, 4, 16, 16) * 40, "reg_mask": (torch.rand(2, 16, 16) > 0.5).float()}
    cls, reg = torch.randn(2, 1, 16, 16), torch.rand(2, 4, 16, 16) * 40
    out = tracking_loss(cls, reg, batch)
    assert math.isclose(out.total.item(), out.cls.item() + out.reg.item(), rel_tol=1e-6)
    assert out.cls.item() > 0 and out.reg.item() > 0


def test_iou_loss_ignores_garbage_outside_the_mask():
    pred = torch.full((1, 4, 2, 2), 10.0, requires_grad=True)
    target = torch.full((1, 4, 2, 2), -50.0)  # outside the box the ltrb targets are negative
    target[0, :, 0, 0] = 10.0
    mask = torch.zeros(1, 2, 2)
    mask[0, 0, 0] = 1
    loss = iou_loss(pred, target, mask)
    assert torch.isfinite(loss) and loss.item() < 1e-6
    loss.backward()
    assert torch.isfinite(pred.grad).all()


def test_labels_for_a_stride8_map_come_from_the_search_box():
    """The loader makes stride-16 labels; a wide-space stride-8 path (32x32 maps) gets
    labels from the same search box by the same rule."""
    from lighttrack.data.labels import make_labels
    from lighttrack.train.losses import labels_for

    boxes = np.array([[100.0, 90.0, 60.0, 40.0], [30.0, 150.0, 20.0, 70.0]], np.float32)
    l16 = [make_labels(b, 256, 16) for b in boxes]
    batch = {"search": torch.zeros(2, 3, 256, 256), "search_box": torch.from_numpy(boxes),
             "cls_label": torch.from_numpy(np.stack([x[0] for x in l16])),
             "reg_target": torch.from_numpy(np.stack([x[1] for x in l16])),
             "reg_mask": torch.from_numpy(np.stack([x[2] for x in l16]))}
    same = labels_for(batch, 16)
    assert same[0] is batch["cls_label"]
    cls8, reg8, mask8 = labels_for(batch, 32)
    assert cls8.shape == (2, 32, 32) and reg8.shape == (2, 4, 32, 32) and mask8.shape == (2, 32, 32)
    for i, b in enumerate(boxes):
        c, r, m = make_labels(b, 256, 8)
        assert np.array_equal(cls8[i].numpy(), c) and np.array_equal(reg8[i].numpy(), r)
        assert np.array_equal(mask8[i].numpy(), m) and c.sum() == 5
    loss = tracking_loss(torch.zeros(2, 1, 32, 32), torch.full((2, 4, 32, 32), 10.0), batch)
    assert torch.isfinite(loss.total) and loss.reg > 0
    with pytest.raises(ValueError, match="does not divide"):
        labels_for(batch, 30)
