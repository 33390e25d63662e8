"""Track every sequence of a split in lockstep: the search's and the validations' evaluator.

``K`` slots advance together. A sequence takes a free slot; the templates of the sequences
starting at one step are one batched pass; then every step runs one batched search forward
per crop side (256, and 288 for small targets) over the running slots and updates the
per-slot state (centre, size: ``(K, 2)`` float64 tensors) for all at once. A finished
sequence frees its slot for the next one. The post-processing is the one-sequence
tracker's (:func:`lighttrack.tracker.decode.decode`, here on the slots' tensors), so the
boxes agree with it up to the float rounding of a batched forward (tested to 1e-3 px).

Frames and crops come one of two ways:

- **host** (default): a small thread pool reads and decodes each slot's next frame while
  the network runs (OpenCV releases the GIL) and cuts the crops with
  :func:`lighttrack.geometry.crop`: the one-sequence tracker's crops, bit for bit.
- **device** (``device_crops=True``, a torch module): JPEG bytes are decoded by
  ``torchvision.io.decode_jpeg`` on the module's device and cropped there by
  :func:`crop_batch` (one ``grid_sample`` a step, the OpenCV crop's geometry); the
  state and the post-processing stay there too, so on a GPU only boxes come back, once
  per sequence.

Per-frame times are the wall time of the step that tracked the frame (crops, network,
post-processing and any wait for a frame) divided by the frames of that step.
"""
from __future__ import annotations

import os
import time
import warnings
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from lighttrack.geometry import IMAGENET_MEAN, IMAGENET_STD, TEMPLATE_SIZE, crop, normalize
from lighttrack.tracker.decode import ScoreGrid, context_size, decode, score_grid
from lighttrack.tracker.params import TrackerParams
from lighttrack.tracker.runtime import as_numpy_net
from lighttrack.tracker.tracker import first_box, search_side

__all__ = ["SequenceResult", "track_lockstep", "auto_batch", "crop_batch", "crop_tensor", "CPU_MAX_BATCH"]

# Batches above 8 were slower per frame on this 2-core CPU (bench/bench_eval.py); a GPU
# takes as many slots as its memory holds.
CPU_MAX_BATCH = 8
GPU_MAX_BATCH = 256
# Working memory of one slot's search forward (activations of a 288 crop at the widest
# supernet path, rounded up), on top of its frames.
_SLOT_ACTIVATION_BYTES = 64 << 20


@dataclass
class SequenceResult:
    """One tracked sequence: boxes (N, 4) x, y, w, h (frame 0 = the given box), seconds (N,)."""

    index: int
    name: str
    boxes: np.ndarray
    times: np.ndarray


def auto_batch(sequences: int, frame_bytes: int, device: torch.device) -> int:
    """Slots that fit: a quarter of free memory over a slot's frames and activations, at
    most ``CPU_MAX_BATCH`` on a CPU, ``GPU_MAX_BATCH`` on a GPU, at most ``sequences``.
    A slot's frames: the current and the next as uint8, and on the device two float32
    copies of the current one while it is cropped (3 + 2 * 4 bytes a pixel channel)."""
    per_slot = 11 * frame_bytes + _SLOT_ACTIVATION_BYTES
    if device.type == "cuda":
        free, cap = torch.cuda.mem_get_info(device)[0], GPU_MAX_BATCH
    else:
        free, cap = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), CPU_MAX_BATCH
    return max(1, min(sequences, cap, int(free // 4 // per_slot)))


def crop_batch(images: torch.Tensor, centers: torch.Tensor, sides: torch.Tensor, out: int,
               pads: torch.Tensor) -> torch.Tensor:
    """:func:`lighttrack.geometry.crop` on a batch of frames of one size: images (B, 3, H, W)
    uint8 or float, centres (B, 2), sides (B,), pad colours (B, 3) -> (B, 3, out, out)
    float32 in 0..255, in one ``grid_sample``.

    Output pixel j samples source ``(j + 0.5) * size / out + c - size / 2 - 0.5`` (pixel
    centres at integers, as ``cv2.warpAffine`` maps them); outside the frame the bilinear
    sample blends with ``pad``: sampling ``image - pad`` with zero padding, then adding
    ``pad``, is exactly that. OpenCV rounds coordinates to 1/32 px and the result to uint8,
    so the two differ by about a grey level.
    """
    b, _, h, w = images.shape
    c, s = centers.to(torch.float32), sides.to(torch.float32)
    # affine_grid's output grid is the normalised centre of output pixel j; theta (B, 2, 3)
    # maps it to the normalised source coordinate of the formula above.
    theta = torch.zeros(b, 2, 3, dtype=torch.float32, device=images.device)
    theta[:, 0, 0], theta[:, 0, 2] = s / w, 2 * c[:, 0] / w - 1
    theta[:, 1, 1], theta[:, 1, 2] = s / h, 2 * c[:, 1] / h - 1
    grid = F.affine_grid(theta, [b, 3, out, out], align_corners=False)
    pad = pads.to(torch.float32).view(b, 3, 1, 1)
    x = images.to(torch.float32) - pad
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + pad


def crop_tensor(image: torch.Tensor, center: torch.Tensor, size: torch.Tensor, out: int,
                pad: torch.Tensor) -> torch.Tensor:
    """:func:`crop_batch` of one frame: image (3, H, W), centre (2,), side (), pad (3,) ->
    (3, out, out) float32 in 0..255."""
    return crop_batch(image[None], center[None], size.reshape(1), out, pad.reshape(1, 3))[0]


# -- networks: crops in, maps out as tensors on the state's device ----------------------------
class _HostNet:
    """Any tracker network (torch module, TorchNet, ExportedNet) fed uint8 (B, S, S, 3) NumPy crops."""

    device = torch.device("cpu")

    def __init__(self, net):
        self.net = as_numpy_net(net)
        self.raw = bool(getattr(self.net, "takes_raw_crops", False))
        self.max_batch = getattr(self.net, "max_batch", None)  # an exported graph may fix it at 1

    def _input(self, crops: np.ndarray) -> np.ndarray:
        return crops if self.raw else normalize(crops)

    def template(self, z: np.ndarray):
        return self.net.template(self._input(z))  # (B, C, s, s): a tensor or an array

    def search(self, zf, x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        cls, reg = self.net.search(zf, self._input(x))
        return torch.as_tensor(np.asarray(cls)), torch.as_tensor(np.asarray(reg))


class _DeviceNet:
    """A torch module fed float (B, 3, S, S) crops in 0..255 on its own device."""

    max_batch = None

    def __init__(self, module: torch.nn.Module):
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"device crops need a torch module, got {type(module).__name__}")
        as_numpy_net(module)  # refuses BN in training mode
        self.module = module
        self.device = next(module.parameters()).device
        self.mean = torch.from_numpy(255.0 * IMAGENET_MEAN).to(self.device).view(1, 3, 1, 1)
        self.std = torch.from_numpy(255.0 * IMAGENET_STD).to(self.device).view(1, 3, 1, 1)

    def template(self, z: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.module.template((z - self.mean) / self.std)

    def search(self, zf: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            return self.module.search(zf, (x - self.mean) / self.std)


def _cat(parts: list):
    return torch.cat(parts) if isinstance(parts[0], torch.Tensor) else np.concatenate(parts)


# -- frames ---------------------------------------------------------------------------------
def _host_frame(seq, k: int) -> tuple[np.ndarray, tuple[float, float, float]]:
    image = seq.read_frame(k)  # (H, W, 3) uint8 RGB
    return image, cv2.mean(image)[:3]  # the pad colour, off the critical path too


def _device_frames(datas: list[bytes], device: torch.device) -> list[torch.Tensor]:
    """Encoded frames -> (3, H, W) uint8 RGB on ``device``: JPEGs in one batched
    ``decode_jpeg`` there, anything else (PNG, BMP) decoded on the host and moved."""
    from torchvision.io import ImageReadMode, decode_image, decode_jpeg

    tensors = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas]
    jpeg = [i for i, d in enumerate(datas) if d[:2] == b"\xff\xd8"]
    out: list = [None] * len(datas)
    with warnings.catch_warnings():  # torchvision 0.29 points to torchcodec; decode_jpeg still works
        warnings.simplefilter("ignore", DeprecationWarning)
        if jpeg:
            for i, im in zip(jpeg, decode_jpeg([tensors[i] for i in jpeg], mode=ImageReadMode.RGB, device=device)):
                out[i] = im
        for i in set(range(len(datas))) - set(jpeg):
            out[i] = decode_image(tensors[i], mode=ImageReadMode.RGB).to(device)
    return out


# -- the loop -------------------------------------------------------------------------------
@dataclass
class _Slot:
    index: int  # position of the sequence in the split
    seq: object
    offset: int  # first row of this sequence in the box buffer
    search_size: int
    k: int = 0  # next frame to track
    next: Future | None = None  # the next frame, being read


class _Lockstep:
    def __init__(self, net, sequences: Sequence, params: TrackerParams, batch: int | str,
                 device_crops: bool, threads: int):
        self.p = params
        self.seqs = list(sequences)
        self.net = _DeviceNet(net) if device_crops else _HostNet(net)
        self.device_crops = device_crops
        dev = self.net.device
        if batch == "auto":
            h, w = self.seqs[0].read_frame(0).shape[:2] if self.seqs else (1, 1)
            batch = auto_batch(len(self.seqs), h * w * 3, dev)
        if int(batch) < 1:
            raise ValueError(f"batch must be 'auto' or a positive number of sequences, got {batch!r}")
        self.K = min(int(batch), self.net.max_batch or int(batch), max(len(self.seqs), 1))
        f64 = dict(dtype=torch.float64, device=dev)
        self.center = torch.zeros(self.K, 2, **f64)  # frame px
        self.size = torch.zeros(self.K, 2, **f64)  # w, h frame px
        self.frame_size = torch.ones(self.K, 2, **f64)  # W, H
        lengths = [len(s.frames) for s in self.seqs]
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(int)
        self.boxes = torch.zeros(int(self.offsets[-1]), 4, **f64)  # every frame of every sequence
        self.times = np.zeros(int(self.offsets[-1]))
        self.zf: list = [None] * self.K  # per slot (1, C, s, s)
        self.slots: list[_Slot | None] = [None] * self.K
        self.grids: dict[tuple[int, int], ScoreGrid] = {}  # by (S, crop side), on the state's device
        # Readers and croppers apart: a crop must not queue behind the next step's reads.
        self.readers = ThreadPoolExecutor(max(1, threads), thread_name_prefix="lt-read")
        self.croppers = ThreadPoolExecutor(max(1, threads), thread_name_prefix="lt-crop")

    # frames ------------------------------------------------------------------------------
    def _read(self, seq, k: int) -> Future:
        if self.device_crops:
            from lighttrack.data import fs

            return self.readers.submit(fs.read_bytes, seq.frames[k])
        return self.readers.submit(_host_frame, seq, k)

    def _frames(self, futures: list[Future]) -> list:
        """Host: [(image (H, W, 3) uint8, pad)]; device: [(image (3, H, W) uint8 on the
        device, None)]: its pad colour is taken where it is cropped (:meth:`_crops`)."""
        got = [f.result() for f in futures]
        if not self.device_crops:
            return got
        return [(im, None) for im in _device_frames(got, self.net.device)]

    def _crops(self, frames: list, slots: list[int], sides: torch.Tensor, out: int):
        centers = self.center[slots]
        if self.device_crops:  # one grid_sample per frame size: launches, not pixels, cost here
            crops = torch.empty(len(frames), 3, out, out, device=self.net.device)
            by_shape: dict[tuple, list[int]] = {}
            for n, (im, _) in enumerate(frames):
                by_shape.setdefault(tuple(im.shape), []).append(n)
            for rows in by_shape.values():
                images = torch.stack([frames[n][0] for n in rows]).to(torch.float32)  # (b, 3, H, W)
                pads = images.mean((2, 3))  # (b, 3): the frame's mean colour
                crops[rows] = crop_batch(images, centers[rows], sides[rows], out, pads)
            return crops  # (B, 3, out, out)
        c, s = centers.tolist(), sides.tolist()
        jobs = [self.croppers.submit(crop, im, tuple(c[i]), s[i], out, pad) for i, (im, pad) in enumerate(frames)]
        return np.stack([j.result() for j in jobs])  # (B, out, out, 3) uint8

    # post-processing: the one-sequence tracker's decode over the slots -------------------
    def _post(self, slots: list[int], cls: torch.Tensor, reg: torch.Tensor, search_size: int) -> None:
        """cls (B, 1, S, S) logits, reg (B, 4, S, S) ltrb crop px -> new centre and size."""
        dev, s = self.center.device, cls.shape[-1]
        if (s, search_size) not in self.grids:
            self.grids[s, search_size] = score_grid(s, search_size, dev)
        d = decode(cls.to(dev, torch.float64), reg.to(dev, torch.float64), self.center[slots], self.size[slots],
                   self.frame_size[slots], self.grids[s, search_size], self.p)
        self.center[slots], self.size[slots] = d.center, d.size

    def _record(self, slots: list[int], seconds: float, n: int) -> None:
        rows = [self.slots[i].offset + self.slots[i].k for i in slots]
        self.boxes[rows] = torch.cat([self.center[slots] - self.size[slots] / 2, self.size[slots]], 1)
        self.times[rows] = seconds / n
        for i in slots:
            self.slots[i].k += 1

    # steps -------------------------------------------------------------------------------
    def _start(self, free: list[int], pending: deque, first: dict[int, Future]) -> list[int]:
        """Put the next sequences in the free slots; one batched template pass for them."""
        t0 = time.perf_counter()
        started = []
        for i in free:
            if not pending:
                break
            j = pending.popleft()
            seq = self.seqs[j]
            self.slots[i] = _Slot(j, seq, int(self.offsets[j]), self.p.search_size)
            started.append(i)
        if not started:
            return []
        frames = self._frames([first.pop(self.slots[i].index) for i in started])
        for i, (image, _) in zip(started, frames):
            slot = self.slots[i]
            h, w = (image.shape[1:] if self.device_crops else image.shape[:2])
            try:
                x, y, bw, bh = first_box(slot.seq.boxes[0], w, h)
            except ValueError as e:
                raise ValueError(f"sequence {slot.seq.name}: {e}") from None
            slot.search_size = search_side(bw, bh, w, h, self.p)
            self.center[i] = torch.tensor([x + bw / 2, y + bh / 2], dtype=torch.float64)
            self.size[i] = torch.tensor([bw, bh], dtype=torch.float64)
            self.frame_size[i] = torch.tensor([w, h], dtype=torch.float64)
            if len(slot.seq.frames) > 1:
                slot.next = self._read(slot.seq, 1)
        z = self._crops(frames, started, context_size(self.size[started], self.p.context), TEMPLATE_SIZE)
        zf = self.net.template(z)  # computed once per sequence
        for n, i in enumerate(started):
            self.zf[i] = zf[n:n + 1]
        self._record(started, time.perf_counter() - t0, len(started))
        return started

    def _step(self, running: list[int]) -> None:
        """Track the next frame of every running slot: one forward per crop side."""
        t0 = time.perf_counter()
        futures = [self.slots[i].next for i in running]
        frames = self._frames(futures)
        for i in running:  # read one frame ahead while the network runs
            slot = self.slots[i]
            slot.next = self._read(slot.seq, slot.k + 1) if slot.k + 1 < len(slot.seq.frames) else None
        for side in sorted({self.slots[i].search_size for i in running}):
            group = [n for n, i in enumerate(running) if self.slots[i].search_size == side]
            slots = [running[n] for n in group]
            s_x = context_size(self.size[slots], self.p.context) * side / TEMPLATE_SIZE  # (B,) frame px
            x = self._crops([frames[n] for n in group], slots, s_x, side)
            cls, reg = self.net.search(_cat([self.zf[i] for i in slots]), x)
            self._post(slots, cls, reg, side)
        if self.center.device.type == "cuda":
            torch.cuda.synchronize(self.center.device)  # honest per-frame times
        self._record(running, time.perf_counter() - t0, len(running))

    def run(self) -> Iterator[SequenceResult]:
        pending = deque(range(len(self.seqs)))
        first: dict[int, Future] = {}
        try:
            while pending or any(self.slots):
                for j in list(pending)[:self.K]:  # the next sequences' first frames, read ahead
                    if j not in first:
                        first[j] = self._read(self.seqs[j], 0)
                free = [i for i, s in enumerate(self.slots) if s is None]
                if free and pending:
                    self._start(free, pending, first)
                running = [i for i, s in enumerate(self.slots) if s is not None and s.k < len(s.seq.frames)]
                if running:
                    self._step(running)
                for i, slot in enumerate(self.slots):
                    if slot is not None and slot.k == len(slot.seq.frames):
                        self.slots[i], self.zf[i] = None, None
                        yield self._result(slot)
        finally:
            for pool in (self.readers, self.croppers):
                pool.shutdown(wait=True, cancel_futures=True)

    def _result(self, slot: _Slot) -> SequenceResult:
        rows = slice(slot.offset, slot.offset + len(slot.seq.frames))
        boxes = self.boxes[rows].cpu().numpy()
        boxes[0] = np.asarray(slot.seq.boxes[0], np.float64)  # frame 0 is the given box, as given
        return SequenceResult(slot.index, slot.seq.name, boxes, self.times[rows].copy())


def track_lockstep(net, sequences: Sequence, params: TrackerParams, batch: int | str = "auto",
                   device_crops: bool = False, threads: int = 2) -> Iterator[SequenceResult]:
    """Track ``sequences`` (readers' ``Sequence`` objects) ``batch`` at a time; yields one
    :class:`SequenceResult` per sequence as it finishes (not in split order).

    ``net``: a torch module (``template``/``search``), a :class:`TorchNet` or an
    :class:`ExportedNet`; ``batch``: slots, or ``auto`` (:func:`auto_batch`); ``threads``: the
    frame readers (and host croppers).
    """
    return _Lockstep(net, sequences, params, batch, device_crops, threads).run()
