"""ONNX Runtime, the one module that opens its sessions: the session options the tracker
runs with, and the exported model card's name. A leaf: the exporter, the runtimes and
the latency profiler all import it, it imports none of them.
``onnxruntime`` is the optional ``deploy`` extra, imported lazily.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["CARD_NAME", "ort_session"]

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
    # in bench/bench_runtimes.py (11 instead of 27 fps at 2 threads).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1")
    opts.add_session_config_entry("session.force_spinning_stop", "1")
    opts.log_severity_level = 3
    model = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
