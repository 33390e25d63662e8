"""Standard tracking metrics (docs/method.md §14), on ``(N, 4)`` boxes ``(x, y, w, h)``.

GOT-10k (as the official ``got10k`` toolkit computes it): per-frame IoU on boxes
clipped to the image, first frame and absent frames (cover label 0) dropped, IoUs of
all sequences pooled; AO = mean, SR_t = fraction with IoU > t.

OTB / LaSOT one-pass evaluation: per-sequence success curve over 21 IoU thresholds
0, 0.05, ..., 1 (IoU > t), precision curve over centre errors 0..50 px (error <= t),
normalised-precision curve over 0..0.5 in steps of 0.01; curves averaged over
sequences; success score = area under the success curve (its mean), precision at
20 px, normalised precision at 0.2. Absent frames are excluded (LaSOT convention).
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "clip_to_image", "iou", "center_error", "normalized_center_error",
    "got10k_sequence_ious", "got10k_scores", "otb_sequence_curves", "otb_scores",
    "SUCCESS_THRESHOLDS_GOT10K", "SUCCESS_THRESHOLDS_OTB",
]

SUCCESS_THRESHOLDS_GOT10K = np.linspace(0, 1, 101)
SUCCESS_THRESHOLDS_OTB = np.linspace(0, 1, 21)
PRECISION_THRESHOLDS = np.arange(0, 51)  # px
NORM_PRECISION_THRESHOLDS = np.linspace(0, 0.5, 51)


def _boxes(b, name: str) -> np.ndarray:
    b = np.array(b, np.float64, copy=True)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"{name}: expected (N, 4) boxes x, y, w, h; got shape {b.shape}")
    return b


def clip_to_image(boxes: np.ndarray, bound: tuple[float, float]) -> np.ndarray:
    """Clip (N, 4) boxes to an image of ``bound = (width, height)`` the way the GOT-10k
    toolkit does: x, y into [0, W], [0, H], then w, h into [0, W - x], [0, H - y]
    (a box sticking out on the left/top keeps its width: the toolkit's rule, kept as is)."""
    b = _boxes(boxes, "boxes")
    w_img, h_img = float(bound[0]), float(bound[1])
    b[:, 0] = np.clip(b[:, 0], 0, w_img)
    b[:, 1] = np.clip(b[:, 1], 0, h_img)
    b[:, 2] = np.clip(b[:, 2], 0, w_img - b[:, 0])
    b[:, 3] = np.clip(b[:, 3], 0, h_img - b[:, 1])
    return b


def iou(a, b, bound: tuple[float, float] | None = None) -> np.ndarray:
    """(N,) IoU of two (N, 4) box arrays, optionally after :func:`clip_to_image`."""
    a, b = _boxes(a, "predictions"), _boxes(b, "ground truth")
    if a.shape != b.shape:
        raise ValueError(f"predictions {a.shape} and ground truth {b.shape} differ in length")
    if bound is not None:
        a, b = clip_to_image(a, bound), clip_to_image(b, bound)
    iw = np.maximum(np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0)
    ih = np.maximum(np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0)
    inter = iw * ih
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    return np.clip(inter / (union + np.finfo(float).eps), 0.0, 1.0)


def _centers(b: np.ndarray) -> np.ndarray:
    return b[:, :2] + b[:, 2:] / 2


def center_error(a, b) -> np.ndarray:
    """(N,) distance between box centres in px."""
    a, b = _boxes(a, "predictions"), _boxes(b, "ground truth")
    return np.linalg.norm(_centers(a) - _centers(b), axis=1)


def normalized_center_error(a, b) -> np.ndarray:
    """(N,) centre distance with each axis measured in units of the ground-truth size."""
    a, b = _boxes(a, "predictions"), _boxes(b, "ground truth")
    size = np.maximum(b[:, 2:], np.finfo(float).eps)
    return np.linalg.norm((_centers(a) - _centers(b)) / size, axis=1)


def got10k_sequence_ious(pred, gt, absent, bound: tuple[float, float]) -> np.ndarray:
    """IoUs that count for GOT-10k: frames 1.. whose target is present, on clipped boxes."""
    pred, gt = _boxes(pred, "predictions"), _boxes(gt, "ground truth")
    absent = np.asarray(absent, bool)
    if not len(pred) == len(gt) == len(absent):
        raise ValueError(f"lengths differ: {len(pred)} predictions, {len(gt)} ground-truth boxes, "
                         f"{len(absent)} absence flags")
    ious = iou(pred[1:], gt[1:], bound)
    return ious[~absent[1:]]


def got10k_scores(ious: np.ndarray) -> dict:
    """AO, SR_0.5, SR_0.75 and the 101-point success curve of pooled IoUs."""
    ious = np.asarray(ious, np.float64)
    if ious.size == 0:
        raise ValueError("no frames to score (every frame after the first is absent?)")
    curve = (ious[:, None] > SUCCESS_THRESHOLDS_GOT10K[None]).mean(0)
    return {"ao": float(ious.mean()), "sr50": float((ious > 0.5).mean()),
            "sr75": float((ious > 0.75).mean()), "success_curve": curve.tolist()}


def otb_sequence_curves(pred, gt, absent=None) -> dict[str, np.ndarray]:
    """Success, precision and normalised-precision curves of one sequence (present frames)."""
    pred, gt = _boxes(pred, "predictions"), _boxes(gt, "ground truth")
    keep = np.ones(len(gt), bool) if absent is None else ~np.asarray(absent, bool)
    if len(pred) != len(gt) or len(keep) != len(gt):
        raise ValueError(f"lengths differ: {len(pred)} predictions, {len(gt)} ground-truth boxes")
    pred, gt = pred[keep], gt[keep]
    ious = iou(pred, gt)
    ce, nce = center_error(pred, gt), normalized_center_error(pred, gt)
    return {"success": (ious[:, None] > SUCCESS_THRESHOLDS_OTB[None]).mean(0),
            "precision": (ce[:, None] <= PRECISION_THRESHOLDS[None]).mean(0),
            "norm_precision": (nce[:, None] <= NORM_PRECISION_THRESHOLDS[None]).mean(0)}


def otb_scores(curves: list[dict[str, np.ndarray]]) -> dict:
    """Average per-sequence curves; success AUC, precision@20px, normalised precision@0.2."""
    if not curves:
        raise ValueError("no sequences to score")
    mean = {k: np.mean([c[k] for c in curves], axis=0) for k in curves[0]}
    return {"success_auc": float(mean["success"].mean()),
            "precision": float(mean["precision"][20]),
            "norm_precision": float(mean["norm_precision"][20]),
            "success_curve": mean["success"].tolist()}
