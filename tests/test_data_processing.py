"""Crops, augmentation and labels: the box follows the pixels, the labels follow the box."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lighttrack import geometry
from lighttrack.data.labels import center_cell, make_labels
from lighttrack.data.processing import CropAugment, PairProcessor, ProcessingConfig, augmented_crop, normalize_images

torch.set_num_threads(1)

BOX = (150.0, 90.0, 60.0, 40.0)  # painted object, image pixels


def painted(h: int = 240, w: int = 320, box=BOX) -> np.ndarray:
    """Black frame with a white solid rectangle exactly covering ``box`` (integer edges)."""
    img = np.zeros((h, w, 3), np.uint8)
    x, y, bw, bh = (int(v) for v in box)
    img[y:y + bh, x:x + bw] = 255
    return img


def bright_box(crop: np.ndarray, thr: int = 128) -> np.ndarray:
    """(x, y, w, h) of the pixels brighter than ``thr`` (pixel i covers [i, i+1))."""
    ys, xs = np.nonzero(crop.mean(-1) > thr)
    return np.array([xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()], float)


def test_context_size_matches_reference_formula():
    w, h = 60.0, 40.0
    p = (w + h) / 2
    assert geometry.context_size(w, h) == pytest.approx(math.sqrt((w + p) * (h + p)))
    assert geometry.context_size(w, h) == pytest.approx(math.sqrt(110 * 90))


def test_unaugmented_crops_follow_reference_sizes():
    cfg = ProcessingConfig(template=CropAugment(color=0), search=CropAugment(color=0))
    proc = PairProcessor(cfg)
    img = painted()
    z, zb, x, xb = proc.crops(img, BOX, img, BOX, np.random.default_rng(0))
    s_z = geometry.context_size(60, 40)
    # Template: s_z -> 128, target centred; search: s_z * 256/128 -> 256, same scale factor.
    a = 128 / s_z
    np.testing.assert_allclose(zb, [64 - 30 * a, 64 - 20 * a, 60 * a, 40 * a], atol=1e-9)
    np.testing.assert_allclose(xb, [128 - 30 * a, 128 - 20 * a, 60 * a, 40 * a], atol=1e-9)
    assert z.shape == (128, 128, 3) and x.shape == (256, 256, 3)
    np.testing.assert_allclose(bright_box(z), zb, atol=1.0)
    np.testing.assert_allclose(bright_box(x), xb, atol=1.0)


def test_padding_is_the_frame_mean_colour():
    img = np.full((100, 100, 3), (10, 200, 30), np.uint8)
    img[40:60, 40:60] = 250
    out, _ = augmented_crop(img, (90, 90, 10, 10), 128, 1.0, CropAugment(color=0), np.random.default_rng(0))
    mean = img.reshape(-1, 3).mean(0)
    np.testing.assert_allclose(out[-1, -1], mean, atol=1.0)  # corner is beyond the frame


@pytest.mark.parametrize("seed", range(12))
def test_box_stays_on_object_through_geometric_augmentation(seed):
    # Large shift and per-axis scale, flip on: the bright pixels and the box agree within 1 px.
    aug = CropAugment(shift=64, scale=0.3, color=0)
    cfg = ProcessingConfig(template=CropAugment(shift=4, scale=0.05, color=0), search=aug, flip=0.5)
    img = painted()
    z, zb, x, xb = PairProcessor(cfg).crops(img, BOX, img, BOX, np.random.default_rng(seed))
    np.testing.assert_allclose(bright_box(x), xb, atol=1.0)
    np.testing.assert_allclose(bright_box(z), zb, atol=1.0)


@pytest.mark.parametrize("seed", range(8))
def test_box_stays_on_object_through_every_augmentation(seed):
    # Everything on (blur, colour jitter, grayscale, flip): the object's pixels stay inside the box.
    every = CropAugment(shift=64, scale=0.18, blur=1.0, color=1.0, gray=1.0)
    cfg = ProcessingConfig(template=CropAugment(shift=4, scale=0.05, blur=1.0, color=1.0, gray=1.0),
                           search=every, flip=1.0)
    img = painted(box=(40, 70, 50, 30))  # off-centre in x: a missed flip would show
    z, zb, x, xb = PairProcessor(cfg).crops(img, (40, 70, 50, 30), img, (40, 70, 50, 30),
                                            np.random.default_rng(seed))
    for crop, box in ((x, xb), (z, zb)):
        assert np.ptp(crop, axis=-1).max() <= 1  # grayscale
        lum = crop.mean(-1)
        thr = (lum.max() + lum.min()) / 2
        found = bright_box(crop, thr)
        np.testing.assert_allclose(found, box, atol=3.0)  # blur smears edges by a pixel or two


def test_augmentation_switches_are_drawn_per_sample():
    cfg = ProcessingConfig(search=CropAugment(blur=0.5, color=0, gray=0.5), template=CropAugment(color=0))
    proc = PairProcessor(cfg)
    img = painted() * np.array([1.0, 0.3, 0.0]) + np.array([0, 0, 90])  # red object on blue
    img = img.astype(np.uint8)
    gray, blurred = set(), set()
    for seed in range(40):
        _, _, x, _ = proc.crops(img, BOX, img, BOX, np.random.default_rng(seed))
        gray.add(bool(np.ptp(x.astype(int), axis=-1).max() <= 1))
        lum = x.mean(-1)
        blurred.add(bool(((lum > 32) & (lum < 90)).sum() > 4 * 256))  # soft edges: many in-between pixels
    assert gray == {True, False} and blurred == {True, False}


def test_flip_is_per_sample_and_moves_the_box():
    cfg = ProcessingConfig(template=CropAugment(color=0), search=CropAugment(shift=40, color=0), flip=0.5)
    proc = PairProcessor(cfg)
    img = painted()
    mirrored = []
    for seed in range(30):
        rng = np.random.default_rng(seed)
        _, _, x, xb = proc.crops(img, BOX, img, BOX, rng)
        np.testing.assert_allclose(bright_box(x), xb, atol=1.0)
        # Same draws without flip: the box is mirrored or identical.
        _, _, _, xb0 = PairProcessor(ProcessingConfig(template=cfg.template, search=cfg.search, flip=0.0)
                                     ).crops(img, BOX, img, BOX, np.random.default_rng(seed))
        if not np.allclose(xb, xb0):
            np.testing.assert_allclose(xb, [256 - xb0[0] - xb0[2], xb0[1], xb0[2], xb0[3]], atol=1e-9)
            mirrored.append(True)
        else:
            mirrored.append(False)
    assert any(mirrored) and not all(mirrored)


def test_labels_positive_cells_sit_on_shifted_and_scaled_object():
    cfg = ProcessingConfig(template=CropAugment(color=0), search=CropAugment(shift=64, scale=0.18, color=0))
    proc = PairProcessor(cfg)
    img = painted(box=(100, 60, 24, 24))
    g = geometry.grid_points(16)
    moved = set()
    for seed in range(30):
        item = proc(img, (100, 60, 24, 24), img, (100, 60, 24, 24), np.random.default_rng(seed))
        x_uint8 = item["search"].numpy().transpose(1, 2, 0)
        bx, by, bw, bh = bright_box(x_uint8)
        cx, cy = bx + bw / 2, by + bh / 2  # object centre measured on pixels
        cls = item["cls_label"].numpy()
        rows, cols = np.nonzero(cls)
        assert len(rows) == 5
        r, c = int(np.median(rows)), int(np.median(cols))  # the centre of the plus-shaped positives
        assert abs(g[c] - cx) <= 8 + 1 and abs(g[r] - cy) <= 8 + 1
        moved.add((r, c))
        # Regression targets at masked cells reproduce the box edges.
        reg, mask = item["reg_target"].numpy(), item["reg_mask"].numpy().astype(bool)
        sb = item["search_box"].numpy()
        assert mask.any()
        np.testing.assert_allclose((reg[0] + reg[2])[mask], sb[2], rtol=1e-5)
        np.testing.assert_allclose((reg[1] + reg[3])[mask], sb[3], rtol=1e-5)
    assert len(moved) > 5  # the label really follows the shift


def test_make_labels_cases():
    cls, reg, mask = make_labels((128 - 20, 128 - 10, 40, 20))
    assert cls.shape == (16, 16) and reg.shape == (4, 16, 16)
    assert cls.sum() == 5 and cls[8, 8] == 1 and cls[7, 8] == 1 and cls[8, 9] == 1 and cls[7, 7] == 0
    g = geometry.grid_points(16)
    inside = (g[None, :] > 108) & (g[None, :] < 148) & (g[:, None] > 118) & (g[:, None] < 138)
    np.testing.assert_array_equal(mask.astype(bool), inside)
    assert reg[0, 8, 8] == pytest.approx(128 - 108) and reg[3, 8, 8] == pytest.approx(138 - 128)
    # At the corner the centre cell is clamped and only 3 positives remain.
    cls, _, _ = make_labels((-50, -50, 20, 20))
    assert center_cell(-40, -40) == (0, 0) and cls.sum() == 3
    # 288 search -> 18x18 map.
    cls, reg, mask = make_labels((144 - 10, 144 - 10, 20, 20), search_size=288)
    assert cls.shape == (18, 18) and cls[9, 9] == 1


def test_item_layout_and_normalisation():
    img = painted()
    item = PairProcessor(ProcessingConfig(template=CropAugment(color=0)))(img, BOX, img, BOX,
                                                                           np.random.default_rng(3))
    assert item["template"].shape == (3, 128, 128) and item["search"].shape == (3, 256, 256)
    assert item["cls_label"].shape == (16, 16) and item["reg_target"].shape == (4, 16, 16)
    assert item["reg_mask"].shape == (16, 16) and item["search_box"].shape == (4,)
    assert item["template"].dtype == item["search"].dtype == torch.uint8  # normalised on the device
    assert all(v.dtype == torch.float32 for k, v in item.items() if k not in ("template", "search"))
    black = (0 - geometry.IMAGENET_MEAN) / geometry.IMAGENET_STD
    # A black pixel far from the object (the crop is inside the black frame) normalises to -mean/std.
    t = normalize_images(item["template"]).numpy()
    np.testing.assert_allclose(t[:, 0, 0], black, atol=1e-5)
    # normalize_images (torch, on the device) gives the values of geometry.normalize (NumPy).
    z = item["template"].numpy().transpose(1, 2, 0)
    assert np.array_equal(normalize_images(item["template"]).numpy(), geometry.normalize(z))
