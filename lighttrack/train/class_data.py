"""ImageNet-layout datasets for phase 1 and phase-4 retrain (train / held-out val).

Training images: random resized crop + horizontal flip (+ AutoAugment, ImageNet policy,
for the phase-4 retrain); held-out images: resize + centre crop. Both normalised with
the ImageNet mean/std (docs/method.md §1).
"""
from __future__ import annotations

import io

from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms

from lighttrack.data import fs
from lighttrack.data.classification import ImageFolderCV

__all__ = ["class_transforms", "class_dataset"]

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def class_transforms(image_size: int, train: bool, autoaugment: bool = False) -> transforms.Compose:
    if train:
        ops = [transforms.RandomResizedCrop(image_size, scale=(0.25, 1.0)), transforms.RandomHorizontalFlip()]
        if autoaugment:
            ops.append(transforms.AutoAugment(transforms.AutoAugmentPolicy.IMAGENET))
    else:
        ops = [transforms.Resize(int(round(image_size / 0.875))), transforms.CenterCrop(image_size)]
    return transforms.Compose(ops + [transforms.ToTensor(), transforms.Normalize(MEAN, STD)])


def class_dataset(root: str, split: str, image_size: int, train: bool, autoaugment: bool = False) -> Dataset:
    """``root/<split>/<class>/*.JPEG`` -> (image (3, S, S) f32, label) items.

    ``root`` is a local path or a pyarrow.fs URI (``s3://bucket/imagenet``): every node of
    a cluster reads the same bucket. Images are decoded with PIL, as torchvision's
    ``ImageFolder`` does, so the transforms see the same pixels either way.
    """
    folder = fs.join(root, split)
    if not fs.is_dir(folder):
        raise FileNotFoundError(f"{folder}: no such folder (expected ImageNet layout <root>/{split}/<class>/*.JPEG)")
    return ImageFolderCV(folder, class_transforms(image_size, train, autoaugment), loader=_pil_rgb)


def _pil_rgb(location: str) -> Image.Image:
    with Image.open(io.BytesIO(fs.read_bytes(location))) as img:
        return img.convert("RGB")
