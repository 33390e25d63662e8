"""Export a found tracker network for deployment: BN folded, two graphs, model card.

The template branch (``z -> zf``) and the search branch (``zf, x -> cls, reg``) become
separate graphs, both with ``torch.export`` (``.pt2``) and ONNX (opset pinned). Their
image inputs are the raw crops the tracker cuts, ``uint8 (1, H, W, 3)`` RGB: the
ImageNet normalisation is folded into the stem convolution (per-input-channel weight
scale, exact with zero padding, after subtracting 255 * mean), which saves the tracker a
float conversion and a layout change per frame. One search graph per crop side (256 and
288, the large region for small targets).

``onnx``, ``onnxscript`` and ``onnxruntime`` are the optional ``deploy`` extra, imported
lazily. Files written to ``out_dir``::

    template.onnx  search_256.onnx  search_288.onnx  [*.int8.onnx]
    template.pt2   search_256.pt2   search_288.pt2   model_card.json
"""
from __future__ import annotations

import copy
import hashlib
import io
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from torch import nn

from lighttrack.geometry import CONTEXT, IMAGENET_MEAN, IMAGENET_STD, SEARCH_SIZE, TEMPLATE_SIZE
from lighttrack.models.static import SearchBranch, fold_bn, tile_se_gates
from lighttrack.tracker.params import TrackerParams
from lighttrack.tracker.ort import CARD_NAME, ort_session
from lighttrack.tracker.runtimes import OPSET, RUNTIMES, Graph, get_runtime, onnx_export

__all__ = ["OPSET", "RawInputNet", "OrtEvalNet", "onnx_export", "tracker_graphs", "export_tracker", "calibration_crops", "dataset_samples",
           "quantize_int8", "write_card"]

SEARCH_SIZES = (SEARCH_SIZE, 288)


def _stem_conv(net: nn.Module) -> nn.Conv2d:
    """The first convolution that reads the RGB image (3 input channels)."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            if m.in_channels != 3 or m.groups != 1:
                break
            return m
    raise ValueError(f"{type(net).__name__}: first convolution does not take 3 RGB channels")


class RawInputNet(nn.Module):
    """``net`` (BN folded) taking raw uint8 (B, H, W, 3) crops, or with ``planar`` float
    (B, 3, H, W) pixel values (0-255); normalisation in the stem; SE gates tiled
    (``lighttrack.models.static.tile_se_gates``) unless ``tile_se`` is False.

    conv(W, (x/255 - m)/s) = conv(W / (255 s), x - 255 m): the scale goes into the stem
    weights; the zero padding of the normalised image is the zero of ``x - 255 m``.
    """

    def __init__(self, net: nn.Module, tile_se: bool = True, planar: bool = False):
        super().__init__()
        self.planar = planar
        self.net = tile_se_gates(net) if tile_se else copy.deepcopy(net).eval()
        stem = _stem_conv(self.net)
        scale = torch.from_numpy(1.0 / (255.0 * IMAGENET_STD)).to(stem.weight)
        with torch.no_grad():
            stem.weight.mul_(scale.view(1, 3, 1, 1))
        self.register_buffer("offset", torch.from_numpy(255.0 * IMAGENET_MEAN).view(1, 3, 1, 1))

    def _image(self, x: torch.Tensor) -> torch.Tensor:
        if self.planar:
            return x - self.offset
        return x.permute(0, 3, 1, 2).to(torch.float32) - self.offset  # (B, 3, H, W)

    def template(self, z: torch.Tensor) -> torch.Tensor:
        return self.net.template(self._image(z))

    def search(self, zf: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.search(zf, self._image(x))


class _Template(nn.Module):
    def __init__(self, net: RawInputNet):
        super().__init__()
        self.net = net

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net.template(z)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class OrtEvalNet:
    """A tracker network (StaticTracker) under ONNX Runtime for evaluation, exported in
    memory as for deployment (BN and normalisation folded, SE gates tiled) but with a
    dynamic batch axis, so the lockstep evaluator can batch it. A search graph per crop
    side is made on first use (a second each).

    ``threads`` lanes, not intra-op threads: each lane is its own one-thread session and a
    batch is split across the lanes, which run at once (ONNX Runtime releases the GIL).
    The graph's ~150 small ops leave an intra-op pool waiting on hand-offs: 2 lanes ran
    search crops in 5.9-6.0 ms a crop (batches 2-8), one session of 2 threads in 10.3 (batch
    8). The arithmetic per crop is the same either way: every lane runs the same graph.
    """

    takes_raw_crops = True
    max_batch = None
    # Crops per session run. Per crop, batches of 8 ran 1.25x slower than 1-2 here (12.1
    # against 9.5 ms at one thread: the activations of 8 search crops leave the 2 MB L2).
    RUN_BATCH = 2

    def __init__(self, net: nn.Module, threads: int = 1, sides: Iterable[int] = ()):
        self.lanes = max(1, int(threads))
        self.raw = RawInputNet(fold_bn(net)).eval()
        z = torch.zeros(1, TEMPLATE_SIZE, TEMPLATE_SIZE, 3, dtype=torch.uint8)
        with torch.no_grad():
            self._zf = self.raw.template(z)
        self._pool = ThreadPoolExecutor(self.lanes, thread_name_prefix="lt-ort") if self.lanes > 1 else None
        self._template = self._export(_Template(self.raw).eval(), (z,), ["z"], ["zf"])
        self._search: dict[int, list] = {}
        for side in sides:  # exported now rather than on first use
            self._search_graph(side)

    def _export(self, module: nn.Module, args: tuple, inputs: list[str], outputs: list[str]) -> list:
        """One session per lane over the same graph."""
        buf = io.BytesIO()
        onnx_export(module, args, buf, inputs, outputs, dynamic_batch=True)
        return [ort_session(buf.getvalue(), 1) for _ in range(self.lanes)]

    def _run(self, sessions: list, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Split the batch into one contiguous share per lane, run the lanes at once, each
        its share ``RUN_BATCH`` crops a run; concatenate in order."""
        n = len(next(iter(feeds.values())))
        bounds = np.linspace(0, n, min(len(sessions), n) + 1).astype(int)

        def lane(session, a: int, b: int) -> list[np.ndarray]:
            runs = [session.run(None, {k: v[i:min(i + self.RUN_BATCH, b)] for k, v in feeds.items()})
                    for i in range(a, b, self.RUN_BATCH)]
            return [np.concatenate(outs) for outs in zip(*runs)] if len(runs) > 1 else runs[0]

        if len(bounds) == 2:
            return lane(sessions[0], 0, n)
        jobs = [self._pool.submit(lane, s, a, b) for s, a, b in zip(sessions, bounds[:-1], bounds[1:])]
        parts = [j.result() for j in jobs]
        return [np.concatenate(outs) for outs in zip(*parts)]

    def template(self, z: np.ndarray) -> np.ndarray:
        return self._run(self._template, {"z": np.ascontiguousarray(z, np.uint8)})[0]

    def _search_graph(self, side: int) -> list:
        if side not in self._search:
            example = torch.zeros(1, side, side, 3, dtype=torch.uint8)
            self._search[side] = self._export(SearchBranch(self.raw).eval(), (self._zf, example),
                                              ["zf", "x"], ["cls", "reg"])
        return self._search[side]

    def search(self, zf: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cls, reg = self._run(self._search_graph(x.shape[1]), {"zf": np.ascontiguousarray(zf, np.float32),
                                                              "x": np.ascontiguousarray(x, np.uint8)})
        return cls, reg


def tracker_graphs(net: nn.Module, search_sizes: Iterable[int] = SEARCH_SIZES, *, tile_se: bool = True,
                   planar: bool = False) -> list[Graph]:
    """The template graph and a search graph per crop side of a StaticTracker ``net``
    (BN and normalisation folded), with example inputs (zeros; ``planar``: float images)."""
    raw = RawInputNet(fold_bn(net), tile_se=tile_se, planar=planar).eval()

    def image(side: int) -> torch.Tensor:
        shape = (1, 3, side, side) if planar else (1, side, side, 3)
        return torch.zeros(shape, dtype=torch.float32 if planar else torch.uint8)

    z = image(TEMPLATE_SIZE)
    with torch.no_grad():
        # contiguous: torch.export records the example's memory order, and ExecuTorch reads
        # its inputs in it (a channels-last example zf made it misread every NCHW zf)
        zf = raw.template(z).contiguous()
    # Wrappers in eval mode too: the ONNX exporter restores each module's mode after export,
    # which for a wrapper left in training mode would switch every BN below it to training.
    graphs = [Graph("template", _Template(raw).eval(), (z,), ("z",), ("zf",))]
    graphs += [Graph(f"search_{s}", SearchBranch(raw).eval(), (zf, image(s)), ("zf", "x"), ("cls", "reg"))
               for s in search_sizes]
    return graphs


def export_tracker(net: nn.Module, out_dir: str | Path, *, search_sizes: Iterable[int] = SEARCH_SIZES,
                   onnx: bool = True, torch_export: bool = True, runtimes: Iterable[str] = ()) -> dict:
    """Fold BN, fold normalisation, write the template/search graphs; returns the file map
    {group: {graph: file relative to out_dir}}.

    ``net`` is a StaticTracker (``template(z)``, ``search(zf, x)``); BN is folded with
    ``lighttrack.models.static.fold_bn``. ``onnx``: the ONNX graphs (ONNX Runtime's,
    group "onnx"); ``runtimes``: other runtimes' graphs, each in its own subfolder and group
    (tracker/runtimes.py). The model card is written by :func:`write_card`.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runtimes = [get_runtime(r) for r in runtimes if r != "onnxruntime"]
    for r in runtimes:  # before anything is written
        r.require()
    files: dict[str, dict[str, str]] = {"onnx": {}, "torch_export": {}, "onnx_int8": {}}
    for g in tracker_graphs(net, search_sizes):
        if torch_export:
            torch.export.save(torch.export.export(g.module, g.example), str(out_dir / f"{g.name}.pt2"))
            files["torch_export"][g.name] = f"{g.name}.pt2"
        if onnx:
            files["onnx"][g.name] = RUNTIMES["onnxruntime"].build(g, out_dir)
    for r in runtimes:
        sub = out_dir / r.name
        sub.mkdir(exist_ok=True)
        files[r.name] = {g.name: f"{r.name}/{r.build(g, sub)}"
                         for g in tracker_graphs(net, search_sizes, tile_se=r.tile_se, planar=r.planar)}
    return files


def calibration_crops(samples: Iterable[tuple[np.ndarray, np.ndarray]], search_size: int = SEARCH_SIZE
                      ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(template, search) uint8 crops cut around ``(image, box xywh)`` samples as the tracker does."""
    import cv2

    from lighttrack.geometry import context_size, crop

    out = []
    for image, box in samples:
        x, y, w, h = (float(v) for v in box)
        c, s_z = (x + w / 2, y + h / 2), context_size(w, h)
        pad = cv2.mean(image)[:3]
        out.append((crop(image, c, s_z, TEMPLATE_SIZE, pad),
                    crop(image, c, s_z * search_size / TEMPLATE_SIZE, search_size, pad)))
    return out


def dataset_samples(dataset, n: int = 32, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` (frame, box) pairs with the target present, spread over the dataset's sequences."""
    rng = np.random.default_rng(seed)
    out = []
    for i in rng.permutation(len(dataset)).tolist() * n:
        if len(out) >= n:
            break
        seq = dataset.sequence(i)
        present = np.flatnonzero(~np.asarray(seq.absent, bool) & (np.asarray(seq.boxes)[:, 2:] > 0).all(1))
        if present.size:
            k = int(rng.choice(present))
            out.append((seq.read_frame(k), np.asarray(seq.boxes[k], np.float64)))
    return out


class _Calibration:
    """ONNX Runtime calibration reader over a list of feeds."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self._it = iter(feeds)

    def get_next(self):
        return next(self._it, None)


def quantize_int8(out_dir: str | Path, files: dict, crops: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """Static int8 (QDQ, per-channel weights) of every ONNX graph, calibrated on
    ``crops`` = [(template uint8 (128, 128, 3), search uint8 (S, S, 3))]; returns the file map."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out_dir = Path(out_dir)
    if not crops:
        raise ValueError("int8 quantisation needs at least one calibration crop pair")
    template = ort_session(out_dir / files["onnx"]["template"], 1)
    zfs = [template.run(None, {"z": z[None]})[0] for z, _ in crops]
    int8 = {}
    for name, fname in files["onnx"].items():
        if name == "template":
            feeds = [{"z": z[None]} for z, _ in crops]
        else:
            side = int(name.split("_")[1])
            feeds = [{"zf": zf, "x": _resize(x, side)[None]} for zf, (_, x) in zip(zfs, crops)]
        pre = out_dir / f"{name}.pre.onnx"
        quant_pre_process(str(out_dir / fname), str(pre), skip_symbolic_shape=True)
        target = f"{name}.int8.onnx"
        quantize_static(str(pre), str(out_dir / target), _Calibration(feeds), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        pre.unlink()
        int8[name] = target
    return int8


def _resize(x: np.ndarray, side: int) -> np.ndarray:
    import cv2

    return x if x.shape[0] == side else cv2.resize(x, (side, side), interpolation=cv2.INTER_LINEAR)


def write_card(out_dir: str | Path, *, arch, files: dict, params: TrackerParams,
               complexity: dict | None = None, scores: dict | None = None,
               source: dict | None = None, runtimes: dict | None = None, extra: dict | None = None) -> Path:
    """``model_card.json`` beside the artifacts.

    ``complexity`` = {"params", "macs"}; ``scores`` = {"ao", "split", ...} measured with
    these artifacts; ``source`` = where the weights came from (supernet, run id, checkpoint);
    ``runtimes`` = {runtime: {"version", "image_input", "parity", "latency_ms", ...}}.
    """
    out_dir = Path(out_dir)
    listed = [f for group in files.values() for f in group.values()]
    # weights files beside a graph file (OpenVINO's .xml + .bin, ncnn's .param + .bin)
    listed += [str(Path(f).with_suffix(".bin")) for f in listed
               if Path(f).suffix in (".xml", ".param") and (out_dir / f).with_suffix(".bin").is_file()]
    card = {
        "format": "lighttrack-tracker/1",
        "arch": str(arch),
        "arch_released": arch.to_released() if hasattr(arch, "to_released") else None,
        **(complexity or {}),
        "scores": scores or {},
        "tracker": asdict(params),
        "preprocessing": {
            "color": "RGB", "crop_dtype": "uint8", "crop_layout": "(1, H, W, 3)",
            "normalisation": "inside the graph: (x / 255 - mean) / std",
            "mean": IMAGENET_MEAN.tolist(), "std": IMAGENET_STD.tolist(),
            "template_size": TEMPLATE_SIZE, "search_sizes": sorted(int(k.split("_")[1])
                                                                  for k in files["onnx"] if k != "template")
            or [SEARCH_SIZE], "context": CONTEXT, "pad": "frame mean colour",
        },
        "stride": arch.stride,
        "outputs": {"zf": f"raw template features (1, {arch.out_channels}, {arch.template_feature_size}, "
                          f"{arch.template_feature_size})",
                    "cls": f"logits (1, 1, S/{arch.stride}, S/{arch.stride})",
                    "reg": f"ltrb distances in crop px (1, 4, S/{arch.stride}, S/{arch.stride})"},
        "source": source or {},
        "opset": OPSET,
        "versions": {"torch": torch.__version__},
        "files": files,
        "runtimes": runtimes or {},
        "sha256": {f: _sha256(out_dir / f) for f in listed},
        **(extra or {}),
    }
    path = out_dir / CARD_NAME
    path.write_text(json.dumps(card, indent=2))
    return path
