"""Test support for the tracker tests: an oracle network and hand-made sequences.

The oracle builds cls/reg maps from the ground truth: it reads where the tracker cut
its last search crop (``tracker.search_crop``), maps the true box into crop pixels and
answers with a score peak on the target centre and exact ltrb distances (clamped at 0
like the real head's ReLU). Everything else (crops, penalty, window, decoding, update)
is the real tracker.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lighttrack.geometry import STRIDE, box_to_crop, grid_points


class OracleNet:
    """numpy-protocol net. Either call ``attach(tracker, boxes)`` before each sequence, or
    give ``boxes_per_sequence`` (in running order) and set ``.tracker`` once."""

    takes_raw_crops = False

    def __init__(self, boxes_per_sequence: list[np.ndarray] | None = None, stride: int = STRIDE) -> None:
        self.stride = stride  # 8: the 2x finer maps of a wide-space stage-2 output
        self.tracker = None
        self.boxes = None
        self.frame = 0
        self._queue = list(boxes_per_sequence or [])

    def attach(self, tracker, boxes: np.ndarray) -> None:
        self.tracker, self.boxes = tracker, np.asarray(boxes, np.float64)

    def template(self, z: np.ndarray) -> np.ndarray:
        self.frame = 0
        if self._queue:  # next sequence of a whole split
            self.boxes = np.asarray(self._queue.pop(0), np.float64)
        return np.zeros((1, 8, 8, 8), np.float32)

    def search(self, zf, x: np.ndarray):
        self.frame += 1
        crop = self.tracker.search_crop
        s = crop.out // self.stride
        bx, by, bw, bh = box_to_crop(self.boxes[self.frame], crop.center, crop.size, crop.out)
        g = grid_points(s, crop.out, self.stride).astype(np.float64)
        gx, gy = np.meshgrid(g, g)  # (S, S) x and y of every cell
        ltrb = np.stack([gx - bx, gy - by, bx + bw - gx, by + bh - gy])
        reg = np.maximum(ltrb, 0.0)[None].astype(np.float32)  # (1, 4, S, S)
        d2 = (gx - (bx + bw / 2)) ** 2 + (gy - (by + bh / 2)) ** 2
        cls = (8.0 * np.exp(-d2 / (2 * STRIDE ** 2)) - 4.0)[None, None].astype(np.float32)
        return cls, reg


@dataclass
class HandSequence:
    """Reader-like sequence: frames rendered on demand from boxes (textured target)."""

    name: str
    boxes: np.ndarray  # (N, 4) xywh
    frame_size: tuple[int, int] = (320, 240)  # (W, H)
    absent: np.ndarray = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.absent is None:
            self.absent = np.zeros(len(self.boxes), bool)
        self.frames = [f"{self.name}/{k:08d}" for k in range(len(self.boxes))]
        rng = np.random.default_rng(len(self.name))
        w, h = self.frame_size
        self._background = rng.integers(0, 120, (h, w, 3), dtype=np.uint8)

    def read_frame(self, k: int) -> np.ndarray:
        img = self._background.copy()
        x, y, w, h = self.boxes[k]
        x0, y0 = max(int(round(x)), 0), max(int(round(y)), 0)
        x1, y1 = int(round(x + w)), int(round(y + h))
        img[y0:y1, x0:x1] = (230, 60 + (k * 7) % 100, 40)
        return img

    def __len__(self) -> int:
        return len(self.frames)


class HandDataset:
    """A list of HandSequences with the reader API used by evaluate_split."""

    def __init__(self, sequences: list[HandSequence]):
        self.sequences = sequences
        self.sequence_names = [s.name for s in sequences]

    def __len__(self) -> int:
        return len(self.sequences)

    def sequence(self, i: int) -> HandSequence:
        return self.sequences[i]


def hand_sequences(n_frames: int = 40) -> list[HandSequence]:
    """Moving, growing, shrinking, tiny (large search region) and border-crossing targets."""
    t = np.arange(n_frames, dtype=np.float64)
    seqs = []
    # steady drift right/down
    seqs.append(HandSequence("drift", np.stack([40 + 3 * t, 50 + 1.5 * t, 0 * t + 60, 0 * t + 40], 1)))
    # growing target
    seqs.append(HandSequence("grow", np.stack([150 - t, 100 - 0.5 * t, 30 + 2 * t, 20 + t], 1)))
    # shrinking, elongated
    seqs.append(HandSequence("shrink", np.stack([100 + t, 60 + 0.5 * t, 90 - 1.2 * t, 40 - 0.4 * t], 1)))
    # tiny target in a big frame (< 0.4% of the frame: 288 search region)
    seqs.append(HandSequence("tiny", np.stack([200 + 2 * t, 150 + np.sin(t / 4) * 10, 0 * t + 14,
                                               0 * t + 12], 1), frame_size=(640, 480)))
    # runs out of the left edge
    seqs.append(HandSequence("border", np.stack([100 - 3 * t, 80 + 0 * t, 0 * t + 50, 0 * t + 50], 1)))
    return seqs


class ColourNet:
    """A crude tracker network in torch whose maps depend on every crop (unlike a random
    supernet, whose maps barely move): cls = closeness of each 16x16 cell's mean colour to
    the template centre's, reg = ltrb distances from the cell colours. Deterministic, and
    batched exactly like one crop at a time, so lockstep and one-sequence runs can be
    compared box for box."""

    def __new__(cls):
        import torch
        import torch.nn.functional as F
        from torch import nn

        class _ColourNet(nn.Module):
            def __init__(self):
                super().__init__()
                self.gain = nn.Parameter(torch.tensor(3.0))  # a parameter: the device is its device

            def template(self, z):  # (B, 3, 128, 128) -> (B, 3, 8, 8)
                return F.avg_pool2d(z, 16)

            def search(self, zf, x):  # (B, 3, S, S) -> (B, 1, S/16, S/16), (B, 4, S/16, S/16)
                f = F.avg_pool2d(x, 16)
                target = zf[:, :, 3:5, 3:5].mean((2, 3), keepdim=True)
                cls = 4.0 - self.gain * ((f - target) ** 2).sum(1, keepdim=True)
                reg = 10.0 + 30.0 * torch.sigmoid(torch.cat([f, f[:, :1]], 1) - target.mean(1, keepdim=True))
                return cls, reg

        return _ColourNet().eval()
