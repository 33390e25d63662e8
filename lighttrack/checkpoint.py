"""What a checkpoint file holds, read before any work: which phase wrote it, whether it is
a supernet, and whether it is a checkpoint at all.

``inspect(path)`` memory-maps the file (``torch.load(mmap=True)``: the tensors stay on disk,
only the pickled structure is read, ~1 s for a 220 MB phase-1 checkpoint) and names the
phase from the weights' keys, so checkpoints written before the loops stamped a phase are
told apart too:

===========================  ====================  ===========================
weights                      ``backbone.blocks.``  phase
===========================  ====================  ===========================
classifier (``classifier.``)  ``.choices.`` inside  pretrain (phase 1 supernet)
tracker (``cls_head.``)       ``.choices.`` inside  supernet (phase 2)
classifier                    static                retrain (phase 4, retrain stage)
tracker                       static                retrain (phase 4, fine-tuned tracker)
===========================  ====================  ===========================
"""
from __future__ import annotations

import io
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["CheckpointError", "CheckpointInfo", "inspect", "load", "weights", "require_phase", "DESCRIPTIONS"]

DESCRIPTIONS = {
    ("pretrain", True): "a phase-1 backbone supernet",
    ("supernet", True): "a phase-2 tracking supernet",
    ("retrain", False): "a phase-4 static network",
}


class CheckpointError(ValueError):
    """A file that is not a checkpoint, a truncated one, or one of the wrong phase (a
    missing file is a FileNotFoundError)."""


@dataclass(frozen=True)
class CheckpointInfo:
    path: str
    phase: str  # pretrain | supernet | retrain
    supernet: bool  # weights of every choice (phases 1, 2) or of one architecture
    head: str  # "classifier" or "tracker"
    epoch: int | None  # last finished epoch (training checkpoints)

    def __str__(self) -> str:
        net = "supernet" if self.supernet else "static"
        done = "" if self.epoch is None else f", epoch {self.epoch + 1}"
        return f"{self.path}: {self.phase} checkpoint ({net} {self.head}{done})"


def load(path: str | Path | bytes, mmap: bool = False, weights_only: bool = False) -> dict:
    """The checkpoint's object (a dict), or a :class:`CheckpointError` naming the file.
    ``path`` may be the file's bytes (a checkpoint handed through Ray's object store).
    ``weights_only``: refuse pickled objects other than tensors and plain containers (for
    files from elsewhere; training checkpoints hold numpy scalars in their metrics)."""
    if isinstance(path, bytes):
        return _read(io.BytesIO(path), "checkpoint bytes", weights_only, mmap=False)
    p = Path(path)
    if p.is_dir():
        raise CheckpointError(f"{p}: a folder, not a checkpoint file")
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such checkpoint file")
    if not zipfile.is_zipfile(p):  # torch.save writes a zip archive (its central directory last)
        what = "an empty file" if p.stat().st_size == 0 else "truncated, or another kind of file"
        raise CheckpointError(f"{p}: not a PyTorch checkpoint ({what}: torch.save writes a zip archive)")
    return _read(p, str(p), weights_only, mmap)


def _read(source, name: str, weights_only: bool, mmap: bool) -> dict:
    try:
        obj = torch.load(source, map_location="cpu", weights_only=weights_only, mmap=mmap)
    except (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError, AttributeError,
            KeyError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise CheckpointError(f"{name}: not a readable PyTorch checkpoint ({first})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{name}: holds a {type(obj).__name__}, not a checkpoint dict or a state dict")
    return obj


def weights(obj: dict) -> dict:
    """The state dict of a loaded checkpoint (under ``model``/``state_dict``, or bare),
    without DDP's ``module.`` prefix."""
    return {k.removeprefix("module."): v for k, v in _weights(obj).items()}


def _weights(obj: dict) -> dict:
    for key in ("model", "state_dict"):  # training checkpoints wrap the weights
        if isinstance(obj.get(key), dict):
            return obj[key]
    return obj


def inspect(path: str | Path) -> CheckpointInfo:
    """The :class:`CheckpointInfo` of ``path`` (its tensors are not read)."""
    obj = load(path, mmap=True)
    keys = [k.removeprefix("module.") for k in _weights(obj)]
    if not keys or not all(isinstance(k, str) for k in keys):
        raise CheckpointError(f"{path}: holds no network weights (keys {list(obj)[:6]})")
    head = "classifier" if "classifier.weight" in keys else "tracker" if any(
        k.startswith("cls_head.") for k in keys) else ""
    if not head or not any(k.startswith("backbone.") for k in keys):
        raise CheckpointError(f"{path}: weights of something else than a LightTrack network "
                              f"(first keys {keys[:3]})")
    supernet = any(k.startswith("backbone.blocks.") and ".choices." in k for k in keys)
    phase = obj.get("phase") or ("retrain" if not supernet else "pretrain" if head == "classifier" else "supernet")
    epoch = obj.get("epoch")
    return CheckpointInfo(str(path), str(phase), supernet, head, int(epoch) if isinstance(epoch, int) else None)


def require_phase(path: str | Path, phase: str, what: str = "") -> CheckpointInfo:
    """:func:`inspect`, refusing a checkpoint of another phase; ``what`` names the input
    (``init``, ``--supernet``) in the message."""
    try:
        info = inspect(path)
    except (CheckpointError, FileNotFoundError) as e:
        raise type(e)(f"{what}: {e}" if what else str(e)) from None
    if info.phase != phase:
        wanted = DESCRIPTIONS.get((phase, phase != "retrain"), f"a {phase} checkpoint")
        got = DESCRIPTIONS.get((info.phase, info.supernet), f"a {info.phase} checkpoint")
        raise CheckpointError(f"{what + ': ' if what else ''}{path} is {got} ({info.head} weights); "
                              f"this needs {wanted}")
    return info
