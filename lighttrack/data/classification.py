"""Phase-1 classification data: the ImageNet folder layout read by torchvision ``ImageFolder``.

``<root>/train/<class>/*.JPEG`` and ``<root>/val/<class>/*.JPEG``; images decoded with OpenCV
(RGB). The root may be a local path or a ``pyarrow.fs`` URI: listing and reading go through
:mod:`lighttrack.data.fs`. Transforms: train = random resized crop + horizontal flip, eval =
resize + centre crop, both ending in ImageNet normalisation; ``size`` is configurable so small
configs can train on 64-128 px images.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch
from torchvision import datasets
from torchvision.transforms import v2

from ..config import PosInt, Range
from ..geometry import IMAGENET_MEAN, IMAGENET_STD
from . import fs
from .fs import DataError
from .readers import IMAGE_EXTENSIONS

__all__ = ["ClassificationConfig", "ImageFolderCV", "train_transform", "eval_transform", "build_classification"]


@dataclass
class ClassificationConfig:
    """ImageNet-layout data for phase 1."""
    root: str = "data/synth/imagenet"  # folder with train/ and val/: local path or pyarrow.fs URI
    size: PosInt = 224  # network input side, pixels
    min_scale: Annotated[float, Range(gt=0, le=1)] = 0.08  # RandomResizedCrop smallest area fraction


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))  # (3, H, W) uint8


def train_transform(size: int, min_scale: float = 0.08) -> v2.Compose:
    return v2.Compose([v2.Lambda(_to_tensor), v2.RandomResizedCrop(size, scale=(min_scale, 1.0), antialias=True),
                       v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize(IMAGENET_MEAN.tolist(), IMAGENET_STD.tolist())])


def eval_transform(size: int) -> v2.Compose:
    return v2.Compose([v2.Lambda(_to_tensor), v2.Resize(int(round(size / 0.875)), antialias=True),
                       v2.CenterCrop(size), v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize(IMAGENET_MEAN.tolist(), IMAGENET_STD.tolist())])


def class_index_location(folder: str) -> str:
    """Where ``lighttrack data index <root> --kind imagenet`` puts the index of ``<root>/<split>``."""
    from .index import default_index
    root, _, split = str(folder).rstrip("/\\").replace("\\", "/").rpartition("/")
    return default_index(root or ".", "imagenet", split)


class ImageFolderCV(datasets.ImageFolder):
    """``ImageFolder`` whose listing and reading go through pyarrow.fs; decoded with OpenCV
    (RGB ndarray) unless another ``loader(location)`` is given.

    The listing comes from an index (``lighttrack data index ROOT --kind imagenet``) when
    one is found beside the data or given as ``index``: ImageNet's 1.28M files are then one
    Parquet read instead of a walk of 1,000 folders (which on a bucket is thousands of
    requests, per rank). ``index=None`` always walks the folders."""

    def __init__(self, root: str, transform=None, loader=fs.read_image, index: str | None = ""):
        self._listing = None
        location = class_index_location(root) if index == "" else index
        if location and (index or fs.exists(location)):
            from .index import read_class_index
            self._listing = read_class_index(location)[:2]
        super().__init__(str(root), transform=transform, loader=loader)

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        if self._listing is not None:
            classes = self._listing[0]
            return classes, {c: i for i, c in enumerate(classes)}
        classes = [c for c in fs.list_dir(directory) if fs.is_dir(fs.join(directory, c))]
        if not classes:
            raise DataError(f"{directory}: no class folders (expected <split>/<class>/*.JPEG)")
        return classes, {c: i for i, c in enumerate(classes)}

    def make_dataset(self, directory: str, class_to_idx: dict[str, int], extensions=None, is_valid_file=None,
                     allow_empty: bool = False) -> list[tuple[str, int]]:
        if self._listing is not None:
            return [(fs.join(directory, *rel.split("/")), label) for rel, label in self._listing[1]]
        samples = []
        for c, idx in sorted(class_to_idx.items(), key=lambda kv: kv[1]):
            files = [n for n in fs.list_dir(fs.join(directory, c)) if n.lower().endswith(IMAGE_EXTENSIONS)]
            if not files and not allow_empty:
                raise DataError(f"{fs.join(directory, c)}: class folder without images")
            samples += [(fs.join(directory, c, n), idx) for n in files]
        return samples


def build_classification(cfg: ClassificationConfig) -> tuple[ImageFolderCV, ImageFolderCV]:
    """(train, val) datasets; val classes must be the train classes."""
    train = ImageFolderCV(fs.join(cfg.root, "train"), train_transform(cfg.size, cfg.min_scale))
    val = ImageFolderCV(fs.join(cfg.root, "val"), eval_transform(cfg.size))
    if val.classes != train.classes:
        raise DataError(f"{cfg.root}: val classes {val.classes} differ from train classes {train.classes}")
    return train, val
