"""The OpenVINO backend: an export directory's IR behind `rnnt.hypothesis.Runtime`.

numpy and openvino only (no torch). Outputs are read by their tensor names
(`encoder_out`, `h_out`, ...), which `openvino.convert_model` keeps from the ONNX graphs.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rnnt.config import ModelConfig
from rnnt.runtimes import (
    ENCODER_CTC_OUTPUT,
    GRAPH_OUTPUTS,
    ModelLoadError,
    ZeroStates,
    as_float32,
    existing_graph_file,
)
from rnnt.state import LstmState

DEVICE = "CPU"
# Graphs with more weights than this run dynamic shapes only. A static copy saves a fixed cost
# per call (~0.3 ms: 1.67 against 1.98 ms per chunk for the demo model's 13 MB encoder, 16%),
# which a large graph does not notice (E6D2_LARGE_Batch's 216 MB encoder: 13.4-14.4 ms either
# way, in two interleaved runs) but pays for in memory (~390 MB more for that encoder).
STATIC_COPY_MAX_BYTES = 64 << 20


def computes_natively(precision: str) -> bool:
    """Whether this CPU has units for `precision`, by OpenVINO's own report of the device.

    bf16 runs everywhere AVX512 does, but only CPUs with AVX512-BF16 or AMX compute it
    natively; elsewhere oneDNN converts to and from f32 around each operation, which made it
    ~4x slower than f32 on a host without them. A benchmark row must say which it measured.
    """
    if precision != "bf16":
        return True
    capabilities = import_openvino().Core().get_property(DEVICE, "OPTIMIZATION_CAPABILITIES")
    return "BF16" in capabilities


def import_openvino() -> Any:
    """The openvino module, keeping the root logger's handlers.

    Importing openvino removes absl's handler from the root logger (a workaround of its
    converter), which would silence the logging of every absl script.
    """
    handlers = list(logging.root.handlers)
    try:
        import openvino
    except ImportError as error:
        raise ModelLoadError(f"the openvino backend needs openvino installed ({error})") from error
    finally:
        for handler in handlers:
            if handler not in logging.root.handlers:
                logging.root.addHandler(handler)
    return openvino


class CompiledGraph:
    """One compiled graph with a reused infer request; outputs come back by name, copied
    (those of `outputs` that the graph has, in order: `self.outputs`).

    Inputs are bound as zero-copy tensors by port index and outputs read by port, not passed
    and returned as dicts: that halves OpenVINO's Python overhead per call (a demo joint call,
    alone: 59-72 us against 145 us through `infer(dict)`), which dominates per-token calls.
    """

    def __init__(
        self,
        core: Any,
        path: Path,
        threads: int,
        outputs: Sequence[str],
        precision: str,
        shapes: dict[str, list[int]] | None = None,
    ):
        """`shapes` fixes the inputs' shapes (by name) instead of the graph's dynamic ones."""
        # Without the f32 hint, CPUs with bf16 units (AVX512-BF16, AMX) run in bf16.
        hint = {"fp32": "f32", "bf16": "bf16"}[precision]
        properties: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": hint}
        if threads:
            properties["INFERENCE_NUM_THREADS"] = threads
        try:
            model = core.read_model(str(path))
            if shapes:
                model.reshape(shapes)
            compiled = core.compile_model(model, DEVICE, properties)
        except RuntimeError as error:
            raise ModelLoadError(f"{path}: openvino cannot load it ({error})") from error
        self._request = compiled.create_infer_request()
        self._tensor = import_openvino().Tensor
        self._input_index = {port.get_any_name(): i for i, port in enumerate(compiled.inputs)}
        output_index = {name: i for i, port in enumerate(compiled.outputs) for name in port.get_names()}
        self.outputs = [name for name in outputs if name in output_index]  # those the graph has
        self._output_indices = [output_index[name] for name in self.outputs]

    def __call__(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        # The tensors share the arrays' memory; `inputs` keeps them alive through infer().
        for name, array in inputs.items():
            tensor = self._tensor(np.ascontiguousarray(array), shared_memory=True)
            self._request.set_input_tensor(self._input_index[name], tensor)
        self._request.infer()
        # Copied: the request's output buffers are overwritten by its next call.
        return [self._request.get_output_tensor(i).data.copy() for i in self._output_indices]


class ShapeSpecializedGraph:
    """A graph compiled for dynamic shapes, plus copies compiled for input shapes that recur.

    OpenVINO re-infers every node's shapes and re-plans its memory on each call of a dynamic
    graph; a copy compiled for fixed shapes skips that, with the same kernels and bitwise the
    same outputs (checked on both models' encoders and predictors, and by identical transcripts
    of 300 demo test utterances). A streaming encoder sees one chunk shape over and over, a
    greedy predictor batch 1, so the second call with a shape compiles a copy for it (for
    the first `max_static` shapes that recur), once: 63 ms and ~32 MB for the demo encoder.
    """

    def __init__(
        self, compile_graph: Callable[[dict[str, list[int]] | None], CompiledGraph], max_static: int
    ):
        self._compile = compile_graph
        self._dynamic = compile_graph(None)
        self._static: dict[tuple[tuple[int, ...], ...], CompiledGraph] = {}
        self._seen: set[tuple[tuple[int, ...], ...]] = set()
        self._max_static = max_static

    @classmethod
    def load(
        cls, core: Any, path: Path, threads: int, outputs: Sequence[str], precision: str, max_static: int
    ) -> ShapeSpecializedGraph:
        """The IR at `path`, with up to `max_static` static copies if its weights are small
        enough (`STATIC_COPY_MAX_BYTES`)."""
        if path.with_suffix(".bin").stat().st_size > STATIC_COPY_MAX_BYTES:
            max_static = 0
        return cls(functools.partial(CompiledGraph, core, path, threads, outputs, precision), max_static)

    def __call__(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        shapes = tuple(array.shape for array in inputs.values())
        graph = self._static.get(shapes)
        if graph is not None:
            return graph(inputs)
        if len(self._static) < self._max_static:
            if shapes in self._seen:
                self._static[shapes] = self._compile({name: list(a.shape) for name, a in inputs.items()})
                return self._static[shapes](inputs)
            self._seen.add(shapes)
        return self._dynamic(inputs)

    @property
    def outputs(self) -> list[str]:
        return self._dynamic.outputs

    @property
    def static_shapes(self) -> list[tuple[tuple[int, ...], ...]]:
        """The input shapes that have a copy compiled for them."""
        return list(self._static)


class OpenVinoRuntime(ZeroStates):
    """The exported encoder, decoder (predictor) and joint compiled for OpenVINO's CPU plugin.

    `precision` "fp32" computes in f32 (parity with PyTorch); "bf16" computes the same IR in
    bfloat16 (fast on CPUs with AMX or AVX512-BF16; OpenVINO emulates it elsewhere).
    """

    def __init__(self, directory: str | Path, config: ModelConfig, precision: str = "fp32", threads: int = 0):
        if precision not in ("fp32", "bf16"):
            raise ModelLoadError(
                f"the openvino backend runs fp32 or bf16; for {precision} use the onnx backend "
                "(ONNX Runtime's dynamic int8 was faster and more accurate than OpenVINO's static int8, "
                "and NNCF's weight compression leaves the LSTM layers in f32)"
            )
        core = import_openvino().Core()
        directory = Path(directory)
        self.config = config
        self.time_reduction = config.time_reduction
        # Static copies (`ShapeSpecializedGraph`): the encoder's for the streaming chunk, the
        # predictor's for its recurring batch sizes, e.g. a single hypothesis (greedy search
        # on one stream; an E6D2_LARGE_Batch predictor call took 0.54 against 0.65 ms, medians
        # over 20 demo test utterances) or a beam's. The first shapes that recur get them.
        # Only small graphs get them (`STATIC_COPY_MAX_BYTES`). The joint stays dynamic: its
        # rows vary from call to call, and static copies of it measured no faster.
        # The predictor and joint get the encoder's threads too: OpenVINO's idle workers do not
        # spin as ONNX Runtime's do. Against one thread each, interleaved: 75.9x against 68.9x
        # real time on 30 demo test utterances, 13.4x against 11.9x for E6D2_LARGE_Batch.
        self._encoder = self._network(core, directory, "encoder", threads, precision, max_static=1)
        self._decoder = self._network(core, directory, "decoder", threads, precision, max_static=4)
        self._joint = self._network(core, directory, "joint", threads, precision, max_static=0)
        self.has_ctc = ENCODER_CTC_OUTPUT in self._encoder.outputs

    @staticmethod
    def _network(
        core: Any, directory: Path, graph: str, threads: int, precision: str, max_static: int
    ) -> ShapeSpecializedGraph:
        path = existing_graph_file(directory, "openvino", graph, "fp32")
        # The encoder's CTC output, if it has one, is copied out on every call: (B, T', V), small.
        outputs = [*GRAPH_OUTPUTS[graph], ENCODER_CTC_OUTPUT] if graph == "encoder" else GRAPH_OUTPUTS[graph]
        return ShapeSpecializedGraph.load(core, path, threads, outputs, precision, max_static)

    def static_shapes(self) -> dict[str, list[tuple[tuple[int, ...], ...]]]:
        """Each graph's input shapes compiled statically so far."""
        graphs = {"encoder": self._encoder, "decoder": self._decoder, "joint": self._joint}
        return {name: graph.static_shapes for name, graph in graphs.items()}

    def encode(self, features: np.ndarray, state: LstmState) -> tuple[np.ndarray, LstmState]:
        """(B, T, D) frames -> (B, T', J) and the new state."""
        out, h, c, *_ = self._encoder(
            {"features": as_float32(features), "h": as_float32(state.h), "c": as_float32(state.c)}
        )
        return out, LstmState(h, c)

    def encode_with_ctc(
        self, features: np.ndarray, state: LstmState
    ) -> tuple[np.ndarray, np.ndarray, LstmState]:
        """`encode` plus the CTC head's (B, T', V) log-probabilities."""
        if not self.has_ctc:
            raise ValueError("this export's encoder has no CTC output")
        out, h, c, ctc_log_probs = self._encoder(
            {"features": as_float32(features), "h": as_float32(state.h), "c": as_float32(state.c)}
        )
        return out, ctc_log_probs, LstmState(h, c)

    def predict(self, tokens: np.ndarray, state: LstmState) -> tuple[np.ndarray, LstmState]:
        """(B,) tokens -> (B, J) and the new state."""
        tokens = np.ascontiguousarray(tokens, dtype=np.int64).reshape(-1, 1)
        out, h, c = self._decoder({"tokens": tokens, "h": as_float32(state.h), "c": as_float32(state.c)})
        return out[:, 0], LstmState(h, c)

    def join(self, encoder_out: np.ndarray, predictor_out: np.ndarray) -> np.ndarray:
        """(N, J) and (N, J) -> (N, V) logits."""
        (logits,) = self._joint(
            {"encoder_out": as_float32(encoder_out), "predictor_out": as_float32(predictor_out)}
        )
        return logits
