"""Running an exported ONNX model with OpenVINO or ONNX Runtime, and choosing between them.

Measured on the project's 2-core AVX-512/AMX machine with Lite0 at batch 32
(``bench/bench_encoders.py``, runtimes interleaved, medians): OpenVINO bf16 runs at 3.7-4.0x and
OpenVINO f32 at 1.7x the throughput of ONNX Runtime f32 (torch eager: 0.25-0.4x), and bf16 keeps
the embedding cosine to fp32 at 0.9993 on average (min 0.998, top-1 class agreement 97%).
``runtime="auto"`` therefore means OpenVINO when it is importable and ONNX Runtime otherwise;
``precision="auto"`` means bf16 where the CPU executes it natively and f32 elsewhere. Nothing is
timed at start-up: the choice is a fixed rule derived from that measurement.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from tastegraph.errors import ModelUnavailable

__all__ = [
    "CompiledModel",
    "OnnxRuntimeModel",
    "OpenVinoModel",
    "RuntimeChoice",
    "cpu_supports_bf16",
    "load_compiled",
    "resolve_runtime",
]

RuntimeName = Literal["openvino", "onnxruntime"]
Precision = Literal["f32", "bf16"]


class CompiledModel(Protocol):
    """An exported model ready to run: named numpy inputs in, named numpy outputs out."""

    runtime: RuntimeName
    precision: Precision

    def run(self, inputs: dict[str, NDArray[np.generic]]) -> dict[str, NDArray[np.float32]]: ...


@dataclass(frozen=True)
class RuntimeChoice:
    runtime: RuntimeName
    precision: Precision


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


@lru_cache(maxsize=1)
def cpu_supports_bf16() -> bool:
    """Whether OpenVINO's CPU plugin executes bf16 natively (AVX-512 BF16 or AMX)."""
    if not _has_module("openvino"):
        return False
    import openvino as ov

    try:
        caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except RuntimeError:  # no CPU plugin: treat as no bf16 rather than fail here
        return False
    return "BF16" in caps


def resolve_runtime(runtime: str = "auto", precision: str = "auto") -> RuntimeChoice:
    """Turn the ``runtime`` / ``precision`` settings into a concrete choice.

    ONNX Runtime is always f32 here: its CPU provider has no bf16 kernels for these convolutions,
    and its int8 path loses too much embedding fidelity for search (cosine 0.82-0.98).
    """
    if runtime not in ("auto", "openvino", "onnxruntime"):
        raise ValueError(f"unknown runtime {runtime!r}")
    if precision not in ("auto", "f32", "bf16"):
        raise ValueError(f"unknown precision {precision!r}")
    if runtime == "auto":
        runtime = "openvino" if _has_module("openvino") else "onnxruntime"
    if runtime == "onnxruntime":
        return RuntimeChoice("onnxruntime", "f32")
    if precision == "auto":
        precision = "bf16" if cpu_supports_bf16() else "f32"
    return RuntimeChoice("openvino", "bf16" if precision == "bf16" else "f32")


class OpenVinoModel:
    """An ONNX file compiled by OpenVINO for the CPU.

    Batches are split across OpenVINO's throughput streams (one per core pair or core) and run
    concurrently; on two cores this is ~25% faster than one latency-mode stream using both cores,
    because small late layers do not parallelise well inside one image. Each stream gets
    ``chunks_per_stream`` smaller pieces from a shared queue rather than one fixed half: when
    another process (ingest's decode workers) takes a core, the stream on the other core takes
    more pieces instead of waiting for the stalled one at the end of the batch. Two pieces per
    stream measured ~5% more ingest throughput than one (EfficientNet-Lite2, batch 32,
    ``bench/bench_ingest.py``, alternating runs); four were no better than one. Single images
    go to a separate latency-mode compilation (compiled on first use) so they use every core.

    The precision hint is always set explicitly: on CPUs with AMX, OpenVINO otherwise defaults to
    bf16, which would make "f32" silently mean bf16. ``cache_dir`` keeps the compiled blobs so
    later start-ups skip graph compilation.
    """

    runtime: RuntimeName = "openvino"

    def __init__(
        self,
        path: Path,
        precision: Precision = "f32",
        cache_dir: Path | None = None,
        threads: int = 0,
        chunks_per_stream: int = 2,
    ) -> None:
        import openvino as ov

        self._core = ov.Core()
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
            self._core.set_property({"CACHE_DIR": str(cache_dir)})
        self._path = str(path)
        self._base: dict[str, object] = {
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"
        }
        if threads > 0:
            self._base["INFERENCE_NUM_THREADS"] = threads
        self.precision: Precision = precision
        self._batch = self._core.compile_model(
            self._path, "CPU", {**self._base, "PERFORMANCE_HINT": "THROUGHPUT"}
        )
        self._streams = max(1, int(self._batch.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        # With one stream, splitting a batch only adds calls.
        self._pieces = max(1, int(chunks_per_stream)) * self._streams if self._streams > 1 else 1
        self._queue = ov.AsyncInferQueue(self._batch, self._streams)
        self._queue.set_callback(self._collect)
        self._done: dict[int, list[NDArray[np.float32]]] = {}
        self._outputs = [o.get_any_name() for o in self._batch.outputs]
        self._single: Any = None

    def _single_request(self) -> Any:
        if self._single is None:
            compiled = self._core.compile_model(
                self._path, "CPU", {**self._base, "PERFORMANCE_HINT": "LATENCY"}
            )
            self._single = compiled.create_infer_request()
        return self._single

    def _collect(self, request: Any, piece: int) -> None:
        # Copies: the request's output buffers are reused by its next piece.
        self._done[piece] = [np.array(t.data, np.float32) for t in request.output_tensors]

    def run(self, inputs: dict[str, NDArray[np.generic]]) -> dict[str, NDArray[np.float32]]:
        n = len(next(iter(inputs.values())))
        if n <= 1:
            req = self._single_request()
            req.infer(inputs, share_inputs=True)
            return {
                name: np.array(t.data, np.float32)
                for name, t in zip(self._outputs, req.output_tensors, strict=True)
            }
        bounds = np.linspace(0, n, min(n, self._pieces) + 1).astype(int)
        self._done = {}
        for i, (a, b) in enumerate(pairwise(bounds)):
            self._queue.start_async({k: v[a:b] for k, v in inputs.items()}, i, True)
        self._queue.wait_all()
        parts = [self._done[i] for i in range(len(bounds) - 1)]
        return {name: np.concatenate([p[i] for p in parts]) for i, name in enumerate(self._outputs)}


class OnnxRuntimeModel:
    """An ONNX file run by ONNX Runtime's CPU provider in f32."""

    runtime: RuntimeName = "onnxruntime"

    def __init__(self, path: Path, threads: int = 0) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads > 0:
            opts.intra_op_num_threads = threads
        self.precision: Precision = "f32"
        self._session = ort.InferenceSession(
            str(path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self._outputs = [o.name for o in self._session.get_outputs()]

    def run(self, inputs: dict[str, NDArray[np.generic]]) -> dict[str, NDArray[np.float32]]:
        values = self._session.run(self._outputs, dict(inputs))
        return {
            name: np.asarray(v, dtype=np.float32)
            for name, v in zip(self._outputs, values, strict=True)
        }


def _threads_from_env() -> int:
    # Lets a benchmark or a co-located service cap inference threads without a settings field.
    value = os.environ.get("TASTEGRAPH_INFERENCE_THREADS", "")
    return int(value) if value.isdigit() else 0


def load_compiled(
    path: Path,
    choice: RuntimeChoice,
    cache_dir: Path | None = None,
    threads: int | None = None,
) -> CompiledModel:
    """Compile ``path`` with the chosen runtime; raise ModelUnavailable if it cannot be loaded."""
    n = _threads_from_env() if threads is None else threads
    if choice.runtime == "openvino":
        if not _has_module("openvino"):
            raise ModelUnavailable(
                "runtime 'openvino' requested but OpenVINO is not installed",
                hint="pip install openvino, or set runtime = 'onnxruntime'",
            )
        return OpenVinoModel(path, choice.precision, cache_dir=cache_dir, threads=n)
    if not _has_module("onnxruntime"):
        raise ModelUnavailable(
            "runtime 'onnxruntime' requested but ONNX Runtime is not installed",
            hint="pip install onnxruntime, or set runtime = 'openvino'",
        )
    return OnnxRuntimeModel(path, threads=n)
