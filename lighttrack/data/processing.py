"""Template/search crops with augmentation that carries the box, and the training item.

Geometry is ONE affine warp per crop: the crop window is centred on the target, its side is
the context size (template ``s_z``, search ``s_z * 256/128``) times a per-axis scale factor,
and its centre is shifted; the box goes through exactly the same map
(:func:`lighttrack.geometry.box_to_crop`), so image and box cannot disagree. Flip mirrors
both crops and both boxes. Every on/off choice (blur, colour, grayscale, flip) and every
amount is drawn per sample from the generator passed in (the released code drew the on/off
choices once per dataset and did not move the box on flip: docs/method.md §15).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from .. import geometry
from ..config import Count, Fraction, NonNegFloat, PosInt, Probability
from .labels import make_labels

__all__ = ["CropAugment", "ProcessingConfig", "PairProcessor", "augmented_crop", "normalize_images"]


@dataclass
class CropAugment:
    """Augmentation of one crop; probabilities are per sample."""
    shift: NonNegFloat = 0.0  # max shift of the target, output pixels (uniform in +-shift per axis)
    scale: Fraction = 0.0  # max relative scale change per axis (uniform in 1 +- scale)
    blur: Probability = 0.0  # probability of a Gaussian blur
    color: Probability = 1.0  # probability of colour jitter (per-channel gain, brightness, contrast)
    gray: Probability = 0.0  # probability of converting to grayscale


@dataclass
class ProcessingConfig:
    """Crop sizes and augmentation (defaults: Ocean's training settings, docs/method.md §9)."""
    template_size: PosInt = geometry.TEMPLATE_SIZE  # template crop side, pixels
    search_size: PosInt = geometry.SEARCH_SIZE  # search crop side, pixels
    context: NonNegFloat = geometry.CONTEXT  # context amount in s_z
    stride: PosInt = geometry.STRIDE  # total network stride (score map = search_size / stride)
    radius: Count = 1  # Manhattan radius of the positive cells
    flip: Probability = 0.0  # probability of mirroring template and search together
    reduced_decode: bool = True  # decode a frame at 1/2, 1/4 or 1/8 size when its crop shrinks it that much
    template: CropAugment = field(default_factory=lambda: CropAugment(shift=4, scale=0.05))
    search: CropAugment = field(default_factory=lambda: CropAugment(shift=64, scale=0.18, blur=0.2))


def augmented_crop(image: np.ndarray, box, out: int, context_factor: float, aug: CropAugment,
                   rng: np.random.Generator, context: float = geometry.CONTEXT,
                   pad: tuple[float, float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Crop of side ``context_size(box) * context_factor`` around the box, shifted and scaled
    per ``aug`` -> ((out, out, 3) uint8, box (4,) xywh in crop pixels)."""
    x, y, w, h = (float(v) for v in box)
    side = geometry.context_size(w, h, context) * context_factor
    sx, sy = 1.0 + aug.scale * rng.uniform(-1, 1, 2)  # per-axis scale of the window
    size = (side * sx, side * sy)
    # Shift in output pixels; the target centre lands at out/2 - shift, kept on the crop.
    dx, dy = np.clip(aug.shift * rng.uniform(-1, 1, 2), -out / 2, out / 2)
    center = (x + w / 2 + dx * size[0] / out, y + h / 2 + dy * size[1] / out)
    patch = geometry.crop(image, center, size, out, pad)
    return patch, geometry.box_to_crop((x, y, w, h), center, size, out)


def _photometric(img: np.ndarray, aug: CropAugment, rng: np.random.Generator) -> np.ndarray:
    # Draws are made whether or not they are used, so one switch does not shift the others.
    do_color, do_blur, do_gray = rng.random(3) < (aug.color, aug.blur, aug.gray)
    gains = rng.uniform(0.75, 1.25, 3)  # per-channel gain
    brightness, contrast = rng.uniform(-25, 25), rng.uniform(0.75, 1.25)
    sigma = rng.uniform(0.5, 2.0)
    if do_color:
        # gain, contrast about the gained image's mean, brightness: one affine map per channel,
        # applied as a 256-entry table (5x faster than float arithmetic on the whole crop).
        mean = float((np.array(cv2.mean(img)[:3]) * gains).mean())
        levels = np.arange(256, dtype=np.float64)[:, None] * gains
        table = np.clip((levels - mean) * contrast + mean + brightness, 0, 255).astype(np.uint8)
        img = cv2.LUT(img, table.reshape(256, 1, 3))
    if do_blur:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    if do_gray:
        img = np.repeat(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    return img


def _flip(img: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    out = img.shape[1]
    x, y, w, h = box
    return np.ascontiguousarray(img[:, ::-1]), np.array([out - x - w, y, w, h])


class PairProcessor:
    """(template frame, box, search frame, box, rng) -> training item (see docs/interfaces.md)."""

    def __init__(self, cfg: ProcessingConfig | None = None):
        self.cfg = cfg or ProcessingConfig()

    def reduction(self, box, search: bool) -> int:
        """The largest JPEG decode reduction (1, 2, 4, 8) that still gives the crop of ``box`` at
        least one source pixel per output pixel, whatever the scale augmentation draws."""
        c = self.cfg
        if not c.reduced_decode:
            return 1
        aug, out = (c.search, c.search_size) if search else (c.template, c.template_size)
        factor = c.search_size / c.template_size if search else 1.0
        side = geometry.context_size(float(box[2]), float(box[3]), c.context) * factor * (1 - aug.scale)
        r = 1
        while r < 8 and side / out >= 2 * r:
            r *= 2
        return r

    def crops(self, z_img: np.ndarray, z_box, x_img: np.ndarray, x_box,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Augmented uint8 crops and their boxes: (z (T,T,3), z_box, x (S,S,3), x_box)."""
        c = self.cfg
        z, zb = augmented_crop(z_img, z_box, c.template_size, 1.0, c.template, rng, c.context,
                               _mean(z_img))
        x, xb = augmented_crop(x_img, x_box, c.search_size, c.search_size / c.template_size,
                               c.search, rng, c.context, _mean(x_img))
        if rng.random() < c.flip:
            (z, zb), (x, xb) = _flip(z, zb), _flip(x, xb)
        return _photometric(z, c.template, rng), zb, _photometric(x, c.search, rng), xb

    def __call__(self, z_img: np.ndarray, z_box, x_img: np.ndarray, x_box,
                 rng: np.random.Generator) -> dict[str, torch.Tensor]:
        c = self.cfg
        z, zb, x, xb = self.crops(z_img, z_box, x_img, x_box, rng)
        cls, reg, mask = make_labels(xb, c.search_size, c.stride, c.radius)
        # Crops stay uint8 (a quarter of the bytes to collate, pin and copy to the device);
        # the consumer normalises them there with normalize_images.
        return {
            "template": torch.from_numpy(np.ascontiguousarray(z.transpose(2, 0, 1))),  # (3, T, T) uint8
            "search": torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))),  # (3, S, S) uint8
            "cls_label": torch.from_numpy(cls),  # (S/16, S/16) {0, 1}
            "reg_target": torch.from_numpy(reg),  # (4, S/16, S/16) ltrb crop px
            "reg_mask": torch.from_numpy(mask),  # (S/16, S/16)
            "search_box": torch.from_numpy(xb.astype(np.float32)),  # (4,) xywh crop px
            "template_box": torch.from_numpy(zb.astype(np.float32)),  # (4,) xywh crop px
        }


_MEAN = torch.from_numpy(geometry.IMAGENET_MEAN).view(3, 1, 1)
_STD = torch.from_numpy(geometry.IMAGENET_STD).view(3, 1, 1)


def normalize_images(x: torch.Tensor) -> torch.Tensor:
    """uint8 ``(..., 3, H, W)`` crops -> float32 with ImageNet mean/std, on ``x``'s device
    (the same values as :func:`lighttrack.geometry.normalize`); float input is returned as is."""
    if x.dtype != torch.uint8:
        return x
    return (x.float() / 255.0 - _MEAN.to(x.device)) / _STD.to(x.device)


def _mean(img: np.ndarray) -> tuple[float, float, float]:
    return tuple(cv2.mean(img)[:3])
