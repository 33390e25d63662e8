"""Deployment runtimes: how each one builds a tracker graph, and runs it.

A runtime turns one graph of an export (the template branch ``z -> zf``, or a search
branch ``zf, x -> cls, reg``) into its own file format, and runs that file on NumPy
feeds. :class:`ExportedNet` runs a whole export folder on one runtime, with the
``template``/``search`` interface every tracker network has, so tracking, evaluation and
the parity check share the tracker's one post-processing path.

    runtime   converter (source)                        file           image input
    onnxruntime  torch.onnx (TorchScript exporter)      .onnx          uint8 (1, H, W, 3)
    openvino  openvino.convert_model (the ONNX graph)   .xml + .bin    uint8 (1, H, W, 3)
    ncnn      pnnx (the ONNX graph)                     .param + .bin  float (1, 3, H, W)
    executorch  torch.export + XNNPACK partitioner      .pte           uint8 (1, H, W, 3)
    tensorrt  TensorRT ONNX parser (needs a CUDA GPU)   .engine        uint8 (1, H, W, 3)

Every graph computes in float32: fp16/bf16 storage (ncnn's default on CPUs with F16C,
OpenVINO's on CPUs with AMX) is switched off, since it broke the 1e-3 parity (ncnn fp16:
3e-3 on LightTrack-Mobile's cls map). ncnn takes no uint8 tensors, so its image inputs
are planar float pixel values (0-255): the normalisation stays inside the graph. The
SE-gate tiling (``models.static.TiledGateSE``) is ONNX Runtime's alone: it made the
OpenVINO and ncnn graphs slower (measured side by side: 26 -> 30 and 35 -> 45 ms).

Each runtime is an optional extra (``pip install -e '.[openvino]'``), imported lazily;
:meth:`Runtime.missing` says why one cannot run here.
"""
from __future__ import annotations

import importlib
import io
import importlib.metadata
import json
import shutil
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from lighttrack.tracker.ort import CARD_NAME, ort_session

__all__ = ["OPSET", "onnx_export", "Graph", "Runtime", "RUNTIMES", "get_runtime", "ExportedNet", "RuntimeUnavailable", "card_group"]

Session = Callable[[dict], list]  # feeds {input name: array} -> outputs in the graph's order


OPSET = 17


def onnx_export(module: torch.nn.Module, args: tuple, path, inputs: list[str], outputs: list[str],
                dynamic_batch: bool = False) -> None:
    # The TorchScript exporter: exact opset 17 and seconds per graph (the dynamo exporter
    # needs opset 18 for these graphs and takes ~10x longer); its deprecation and tracer
    # warnings are expected here. ``path`` may be a file-like object.
    axes = {name: {0: "batch"} for name in inputs + outputs} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(module, args, path if isinstance(path, io.BytesIO) else str(path), input_names=inputs,
                          output_names=outputs, opset_version=OPSET, dynamo=False, dynamic_axes=axes)
    if isinstance(path, io.BytesIO):
        return
    import onnx  # deploy extra

    onnx.checker.check_model(onnx.load(str(path)))


class RuntimeUnavailable(RuntimeError):
    """A runtime that is not installed (or has no device) here."""


@dataclass(frozen=True)
class Graph:
    """One graph to build: ``module(*example)``, its input and output names in order."""

    name: str  # "template", "search_256", ...
    module: torch.nn.Module
    example: tuple
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    def onnx(self, path: Path) -> Path:
        onnx_export(self.module, self.example, path, list(self.inputs), list(self.outputs))
        return path


class Runtime:
    name = ""
    extra = ""  # the pip extra that installs it
    packages: tuple[str, ...] = ()  # import names it needs
    planar = False  # image inputs float (1, 3, H, W) instead of uint8 (1, H, W, 3)
    tile_se = False  # export with TiledGateSE
    suffix = ""

    def missing(self) -> str | None:
        """Why this runtime cannot run here, or None."""
        for p in self.packages:
            try:
                importlib.import_module(p)
            except ImportError as e:
                return f"{self.name}: {p} is not installed ({e}); pip install -e '.[{self.extra}]'"
        return None

    def require(self) -> None:
        reason = self.missing()
        if reason:
            raise RuntimeUnavailable(reason)

    def version(self) -> str:
        return importlib.metadata.version(self.packages[0])

    def build(self, graph: Graph, out_dir: Path) -> str:
        """Write ``graph`` in this runtime's format under ``out_dir``; the main file's name."""
        raise NotImplementedError

    def load(self, path: Path, graph_inputs: tuple[str, ...], threads: int) -> Session:
        raise NotImplementedError


class OnnxRuntime(Runtime):
    name, extra, packages, tile_se, suffix = "onnxruntime", "deploy", ("onnxruntime",), True, ".onnx"

    def build(self, graph: Graph, out_dir: Path) -> str:
        graph.onnx(out_dir / f"{graph.name}.onnx")
        return f"{graph.name}.onnx"

    def load(self, path: Path, graph_inputs, threads: int) -> Session:
        session = ort_session(path, threads)
        return lambda feeds: session.run(None, feeds)


class OpenVino(Runtime):
    name, extra, packages, suffix = "openvino", "openvino", ("openvino",), ".xml"

    def build(self, graph: Graph, out_dir: Path) -> str:
        import openvino as ov

        with tempfile.TemporaryDirectory(prefix="lighttrack-ov-") as tmp:
            model = ov.convert_model(str(graph.onnx(Path(tmp) / "g.onnx")))
        ov.save_model(model, str(out_dir / f"{graph.name}.xml"), compress_to_fp16=False)
        return f"{graph.name}.xml"

    def load(self, path: Path, graph_inputs, threads: int) -> Session:
        import openvino as ov

        compiled = ov.Core().compile_model(str(path), "CPU", {
            "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32"})
        request = compiled.create_infer_request()
        outputs = list(compiled.outputs)

        def run(feeds: dict) -> list:
            result = request.infer(feeds)
            return [np.array(result[o]) for o in outputs]
        return run


class Ncnn(Runtime):
    name, extra, packages, planar, suffix = "ncnn", "ncnn", ("ncnn", "pnnx"), True, ".param"

    def version(self) -> str:
        return f"ncnn {importlib.metadata.version('ncnn')}, pnnx {importlib.metadata.version('pnnx')}"

    def build(self, graph: Graph, out_dir: Path) -> str:
        import pnnx

        shapes = ",".join(f"[{','.join(map(str, t.shape))}]f32" for t in graph.example)
        with tempfile.TemporaryDirectory(prefix="lighttrack-pnnx-") as tmp:
            src = graph.onnx(Path(tmp) / "g.onnx")  # pnnx writes its by-products beside it
            p = subprocess.run([pnnx.EXEC_PATH, str(src), f"inputshape={shapes}", "fp16=0"], cwd=tmp,
                               capture_output=True, text=True)
            if p.returncode or not (Path(tmp) / "g.ncnn.param").is_file():
                raise RuntimeError(f"pnnx failed on {graph.name} (exit {p.returncode}): {p.stderr[-800:]}")
            for ext in ("param", "bin"):
                shutil.move(Path(tmp) / f"g.ncnn.{ext}", out_dir / f"{graph.name}.ncnn.{ext}")
        return f"{graph.name}.ncnn.param"

    def load(self, path: Path, graph_inputs, threads: int) -> Session:
        import ncnn

        net = ncnn.Net()
        net.opt.num_threads = threads
        for k in ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic", "use_bf16_storage"):
            setattr(net.opt, k, False)
        if net.load_param(str(path)) or net.load_model(str(path.with_suffix(".bin"))):
            raise RuntimeError(f"{path}: ncnn could not load this graph")
        ins, outs = net.input_names(), net.output_names()  # pnnx names them in0.., out0.. in order

        def run(feeds: dict) -> list:
            ex = net.create_extractor()
            # ncnn's Mat has no batch axis. Mat(array) borrows the array's memory without a
            # reference to it: the arrays are held until the Mats are cloned (ncnn works in
            # place on its input blobs, so it gets copies it owns)
            arrays = [np.ascontiguousarray(feeds[n][0], np.float32) for n in graph_inputs]
            mats = [ncnn.Mat(a).clone() for a in arrays]
            for name, mat in zip(ins, mats):
                ex.input(name, mat)
            out = []
            for name in outs:
                rc, mat = ex.extract(name)
                if rc:
                    raise RuntimeError(f"{path}: ncnn failed on {name} (code {rc})")
                out.append(np.array(mat)[None])
            return out
        return run


class ExecuTorch(Runtime):
    name, extra, packages, suffix = "executorch", "executorch", ("executorch",), ".pte"

    def build(self, graph: Graph, out_dir: Path) -> str:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        program = torch.export.export(graph.module, graph.example)
        lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
        (out_dir / f"{graph.name}.pte").write_bytes(lowered.buffer)
        return f"{graph.name}.pte"

    def load(self, path: Path, graph_inputs, threads: int) -> Session:
        from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
        from executorch.runtime import Runtime as ETRuntime

        # XNNPACK's thread pool is one per process: the last net loaded sets it.
        _unsafe_reset_threadpool(threads)
        program = ETRuntime.get().load_program(str(path))  # the method's memory: kept with it
        method = program.load_method("forward")

        def run(feeds: dict) -> list:
            out = method.execute([torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in graph_inputs])
            # copies: the outputs live in the method's planned memory, rewritten by its next run
            return [t.numpy().copy() for t in out]
        run.program = program
        return run


class TensorRT(Runtime):
    """An engine built for the GPU at hand from the ONNX graph, float32 (TF32 off).
    Engines are device- and version-specific: build on the machine that runs them."""

    name, extra, packages, suffix = "tensorrt", "tensorrt", ("tensorrt",), ".engine"

    def missing(self) -> str | None:
        if not torch.cuda.is_available():
            return "tensorrt: needs a CUDA GPU (none here)"
        return super().missing()

    def build(self, graph: Graph, out_dir: Path) -> str:
        import tensorrt as trt

        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        with tempfile.TemporaryDirectory(prefix="lighttrack-trt-") as tmp:
            if not parser.parse(graph.onnx(Path(tmp) / "g.onnx").read_bytes()):
                raise RuntimeError(f"TensorRT could not parse {graph.name}: "
                                   + "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors)))
        config = builder.create_builder_config()
        config.clear_flag(trt.BuilderFlag.TF32)
        engine = builder.build_serialized_network(network, config)
        if engine is None:
            raise RuntimeError(f"TensorRT could not build {graph.name}")
        (out_dir / f"{graph.name}.engine").write_bytes(bytes(engine))
        return f"{graph.name}.engine"

    def load(self, path: Path, graph_inputs, threads: int) -> Session:
        import tensorrt as trt

        engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(path.read_bytes())
        context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        stream = torch.cuda.Stream()

        def run(feeds: dict) -> list:
            keep = {n: torch.from_numpy(np.ascontiguousarray(feeds[n])).cuda() for n in graph_inputs}
            for n in outputs:
                keep[n] = torch.empty(tuple(engine.get_tensor_shape(n)), dtype=torch.float32, device="cuda")
            for n, t in keep.items():
                context.set_tensor_address(n, t.data_ptr())
            context.execute_async_v3(stream.cuda_stream)
            stream.synchronize()
            return [keep[n].cpu().numpy() for n in outputs]
        return run


RUNTIMES: dict[str, Runtime] = {r.name: r for r in (OnnxRuntime(), OpenVino(), Ncnn(), ExecuTorch(), TensorRT())}


def get_runtime(name: str) -> Runtime:
    if name not in RUNTIMES:
        raise ValueError(f"unknown runtime {name!r}; one of {sorted(RUNTIMES)}")
    return RUNTIMES[name]


def card_group(runtime: str, int8: bool = False) -> str:
    """The model card's files group of a runtime's graphs (ONNX Runtime's are the "onnx" ones)."""
    group = "onnx" if runtime == "onnxruntime" else runtime
    return f"{group}_int8" if int8 else group


class ExportedNet:
    """An export folder's template and search graphs on one runtime.

    ``directory`` holds the graphs and ``model_card.json`` (tracker/export.py); ``int8``
    selects ONNX Runtime's quantised graphs. Crops come in as the tracker cuts them, uint8
    (1, H, W, 3); a planar runtime (ncnn) gets them as float (1, 3, H, W).
    """

    takes_raw_crops = True

    def __init__(self, directory: str | Path, runtime: str = "onnxruntime", threads: int = 1, int8: bool = False):
        directory = Path(directory)
        card_path = directory / CARD_NAME
        if not card_path.is_file():
            raise FileNotFoundError(f"{card_path}: not an exported tracker (no {CARD_NAME})")
        self.card = json.loads(card_path.read_text())
        self.runtime = get_runtime(runtime)
        self.runtime.require()
        group = card_group(runtime, int8)
        files = self.card["files"].get(group) or {}
        if not files:
            have = sorted(g for g, f in self.card["files"].items() if f)
            raise FileNotFoundError(f"{card_path}: no {runtime}{' int8' if int8 else ''} graphs in this export "
                                    f"(it has {have}); export with --runtime {runtime}")
        self._template = self.runtime.load(directory / files["template"], ("z",), threads)
        # search graphs keyed by crop side, e.g. {256: session, 288: session}
        self._search = {int(k.split("_")[1]): self.runtime.load(directory / v, ("zf", "x"), threads)
                        for k, v in files.items() if k.startswith("search_")}
        self.max_batch = 1  # deployed graphs take one crop; the lockstep evaluator asks

    def _image(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.uint8)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2), np.float32) if self.runtime.planar else x

    def template(self, z: np.ndarray) -> np.ndarray:
        return self._template({"z": self._image(z)})[0]

    def search(self, zf: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        side = x.shape[1]
        if side not in self._search:
            raise ValueError(f"no exported search graph for {side}x{side} crops; have {sorted(self._search)}")
        cls, reg = self._search[side]({"zf": np.ascontiguousarray(zf, np.float32), "x": self._image(x)})
        return cls, reg
