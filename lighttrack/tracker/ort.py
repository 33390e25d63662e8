"""ONNX Runtime, the one module that opens its sessions: the session options the tracker
runs with, the exported model card's name, and :class:`OrtNet` over an export folder.
A leaf: the exporter, the runtime and the latency profiler all import it, it imports
none of them. ``onnxruntime`` is the optional ``deploy`` extra, imported lazily.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["CARD_NAME", "ort_session", "OrtNet"]

CARD_NAME = "model_card.json"


def ort_session(model: str | Path | bytes, threads: int):
    """An ONNX Runtime CPU session over a model file (or its bytes), as the tracker runs it."""
    import onnxruntime as ort  # optional 'deploy' extra

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    # Spin while a run is in progress (the ~150 small ops hand work to the pool threads
    # every few microseconds; without spinning every hand-off is a sleep and a wake-up,
    # and 2 threads were slower than 1: 8.4 vs 7.4 ms, with spinning 4.2 ms), but stop
    # spinning as soon as the run returns: a tracker shares the CPU with decoding and
    # cropping, and threads left spinning between runs stole the eager tracker's cores
    # in bench/bench_tracker.py (11 instead of 27 fps at 2 threads).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1")
    opts.add_session_config_entry("session.force_spinning_stop", "1")
    opts.log_severity_level = 3
    model = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


class OrtNet:
    """The exported template and search graphs of one tracker under ONNX Runtime.

    ``directory`` holds the artifacts and ``model_card.json`` (see export.py);
    ``int8`` selects the quantised graphs. One search graph per search size (256, 288).
    """

    takes_raw_crops = True

    def __init__(self, directory: str | Path, threads: int = 1, int8: bool = False):
        directory = Path(directory)
        card_path = directory / CARD_NAME
        if not card_path.is_file():
            raise FileNotFoundError(f"{card_path}: not an exported tracker (no {CARD_NAME})")
        self.card = json.loads(card_path.read_text())
        files = self.card["files"]["onnx_int8" if int8 else "onnx"]
        if not files:
            raise FileNotFoundError(f"{card_path}: no {'int8 ' if int8 else ''}ONNX graphs were exported")
        self._template = ort_session(directory / files["template"], threads)
        # search graphs keyed by crop side, e.g. {256: session, 288: session}
        self._search = {int(k.split("_")[1]): ort_session(directory / v, threads)
                        for k, v in files.items() if k.startswith("search_")}
        # Deployed graphs take one crop (batch axis fixed at 1); the lockstep evaluator asks.
        batch = self._template.get_inputs()[0].shape[0]
        self.max_batch = batch if isinstance(batch, int) else None

    def template(self, z: np.ndarray) -> np.ndarray:
        return self._template.run(None, {"z": np.ascontiguousarray(z, np.uint8)})[0]

    def search(self, zf: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        side = x.shape[1]
        if side not in self._search:
            raise ValueError(f"no exported search graph for {side}x{side} crops; have {sorted(self._search)}")
        cls, reg = self._search[side].run(None, {"zf": zf, "x": np.ascontiguousarray(x, np.uint8)})
        return cls, reg
