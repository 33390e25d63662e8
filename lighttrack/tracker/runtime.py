"""Network backends for the tracker: NumPy in, NumPy out.

The tracker talks to a network through ``template(z) -> zf`` and
``search(zf, x) -> (cls, reg)`` on NumPy arrays. :class:`TorchNet` adapts a torch
module (supernet path, StaticTracker); :class:`ExportedNet` runs an export folder's
graphs on a deployment runtime (tracker/runtimes.py: ONNX Runtime, OpenVINO, ncnn,
ExecuTorch, TensorRT, each an optional extra imported lazily). Exported graphs take the
raw uint8 crop ``(1, H, W, 3)`` and normalise inside (``takes_raw_crops``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lighttrack.tracker.ort import CARD_NAME, ort_session
from lighttrack.tracker.runtimes import RUNTIMES, ExportedNet

__all__ = ["TorchNet", "ExportedNet", "ort_session", "as_numpy_net", "load_torch_net", "load_net", "CARD_NAME"]


class TorchNet:
    """A torch module with ``template``/``search`` run under inference mode on NumPy arrays.

    Crops go to the module's device (its parameters' device unless ``device`` is given)
    and the maps come back to host memory, so a CUDA model tracks like a CPU one.
    """

    takes_raw_crops = False

    def __init__(self, module: torch.nn.Module, device: torch.device | str | None = None):
        # BN in training mode would normalise each crop by its own statistics: refuse.
        if any(m.training for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)):
            raise ValueError(f"{type(module).__name__} has BatchNorm layers in training mode; "
                             "call .eval() before tracking")
        if device is None:
            device = next((p.device for p in module.parameters()), torch.device("cpu"))
        self.module, self.device = module, torch.device(device)

    def template(self, z: np.ndarray) -> torch.Tensor:
        with torch.inference_mode():
            return self.module.template(torch.from_numpy(z).to(self.device))  # (1, C, 8, 8) kept on the device

    def search(self, zf: torch.Tensor, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            cls, reg = self.module.search(zf, torch.from_numpy(x).to(self.device))
        return cls.float().cpu().numpy(), reg.float().cpu().numpy()


def as_numpy_net(net):
    """Wrap torch modules; pass anything else with template/search through."""
    if isinstance(net, torch.nn.Module):
        return TorchNet(net)
    if not (callable(getattr(net, "template", None)) and callable(getattr(net, "search", None))):
        raise TypeError(f"{type(net).__name__} has no template(z) and search(zf, x) methods")
    return net


def _state_dict(path: str | Path) -> dict:
    """Tracker weights from a checkpoint file; classifier weights (phases 1 and 4's retrain
    stage) are refused by name before their tensors are read."""
    from lighttrack import checkpoint

    info = checkpoint.inspect(path)
    if info.head != "tracker":
        raise checkpoint.CheckpointError(
            f"{path}: {checkpoint.DESCRIPTIONS.get((info.phase, info.supernet), info.phase)} with classifier "
            "weights; a tracker needs a phase-2 supernet or a phase-4 fine-tuned tracker checkpoint")
    return checkpoint.weights(checkpoint.load(path, weights_only=True))


def load_torch_net(arch, checkpoint: str | Path | None = None) -> torch.nn.Module:
    """StaticTracker for ``arch`` in eval mode: fresh weights, or from a local checkpoint
    holding a StaticTracker or a TrackSupernet state dict (bare or under ``model``).
    (MLflow URIs are resolved to a local file by ray_jobs before calling this.)"""
    from lighttrack.models.static import StaticTracker
    from lighttrack.models.supernet import TrackSupernet, extract

    net = StaticTracker.build(arch)
    if checkpoint is None:
        return net.eval()
    state = _state_dict(checkpoint)
    if set(state) == set(net.state_dict()):
        net.load_state_dict(state)
        return net.eval()
    supernet = TrackSupernet.for_state_dict(state)
    missing, unexpected = supernet.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{checkpoint}: neither a StaticTracker for this architecture nor a TrackSupernet "
                         f"({len(missing)} missing tensors, e.g. {missing[:2]}; unexpected {unexpected[:2]})")
    return extract(supernet.eval(), arch).eval()


def load_net(arch, checkpoint: str | Path | None = None, backend: str = "torch", threads: int = 1,
             int8: bool = False, work_dir: str | Path | None = None, device: str = "cpu"):
    """A tracker network on ``backend``: ``torch`` (on ``device``) or a runtime of
    :data:`~lighttrack.tracker.runtimes.RUNTIMES`.

    For a runtime, ``checkpoint`` may be an export directory (with model_card.json);
    otherwise the torch net is exported on the fly into ``work_dir`` (a temporary one if None).
    """
    if backend == "torch":
        return load_torch_net(arch, checkpoint).to(device)
    if backend not in RUNTIMES:
        raise ValueError(f"unknown backend {backend!r}; use torch or one of {sorted(RUNTIMES)}")
    if checkpoint is not None and (Path(checkpoint) / CARD_NAME).is_file():
        return ExportedNet(checkpoint, backend, threads, int8)
    if int8:
        raise ValueError("int8 needs an export directory made by 'lighttrack export --int8'")
    RUNTIMES[backend].require()
    import tempfile

    from lighttrack.tracker.export import export_tracker, write_card
    from lighttrack.tracker.params import TrackerParams

    out = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="lighttrack-export-"))
    files = export_tracker(load_torch_net(arch, checkpoint), out, torch_export=False, runtimes=[backend])
    write_card(out, arch=arch, files=files, params=TrackerParams(),
               source={"checkpoint": str(checkpoint) if checkpoint else None})
    return ExportedNet(out, backend, threads)
