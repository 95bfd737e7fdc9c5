"""The OpenVINO backend: an export directory's IR behind `rnnt.decoding.Runtime`.

numpy and openvino only (no torch). Outputs are read by their tensor names
(`encoder_out`, `h_out`, ...), which `openvino.convert_model` keeps from the ONNX graphs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rnnt.config import ModelConfig
from rnnt.runtimes import GRAPH_OUTPUTS, ModelLoadError, ZeroStates, as_float32, existing_graph_file
from rnnt.state import LstmState

DEVICE = "CPU"


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
    """One compiled graph with a reused infer request; outputs come back by name, copied.

    Inputs are bound as zero-copy tensors by port index and outputs read by port, not passed
    and returned as dicts: that halves OpenVINO's Python overhead per call (a demo joint call,
    alone: 59-72 us against 145 us through `infer(dict)`), which dominates per-token calls.
    """

    def __init__(self, core: Any, path: Path, threads: int, outputs: Sequence[str], precision: str):
        # Without the f32 hint, CPUs with bf16 units (AVX512-BF16, AMX) run in bf16.
        hint = {"fp32": "f32", "bf16": "bf16"}[precision]
        properties: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": hint}
        if threads:
            properties["INFERENCE_NUM_THREADS"] = threads
        try:
            compiled = core.compile_model(core.read_model(str(path)), DEVICE, properties)
        except RuntimeError as error:
            raise ModelLoadError(f"{path}: openvino cannot load it ({error})") from error
        self._request = compiled.create_infer_request()
        self._tensor = import_openvino().Tensor
        self._input_index = {port.get_any_name(): i for i, port in enumerate(compiled.inputs)}
        output_index = {name: i for i, port in enumerate(compiled.outputs) for name in port.get_names()}
        self._output_indices = [output_index[name] for name in outputs]

    def __call__(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        for name, array in inputs.items():
            tensor = self._tensor(np.ascontiguousarray(array), shared_memory=True)
            self._request.set_input_tensor(self._input_index[name], tensor)
        self._request.infer()
        # Copied: the request's output buffers are overwritten by its next call.
        return [self._request.get_output_tensor(i).data.copy() for i in self._output_indices]


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
        self._encoder = self._network(core, directory, "encoder", threads, precision)
        # The predictor and joint get the encoder's threads too: OpenVINO's idle workers do not
        # spin as ONNX Runtime's do. Against one thread each, interleaved: 75.9x against 68.9x
        # real time on 30 demo test utterances, 13.4x against 11.9x for E6D2_LARGE_Batch.
        self._decoder = self._network(core, directory, "decoder", threads, precision)
        self._joint = self._network(core, directory, "joint", threads, precision)

    @staticmethod
    def _network(core: Any, directory: Path, graph: str, threads: int, precision: str) -> CompiledGraph:
        path = existing_graph_file(directory, "openvino", graph, "fp32")
        return CompiledGraph(core, path, threads, GRAPH_OUTPUTS[graph], precision)

    def encode(self, features: np.ndarray, state: LstmState) -> tuple[np.ndarray, LstmState]:
        """(B, T, D) frames -> (B, T', J) and the new state."""
        out, h, c = self._encoder(
            {"features": as_float32(features), "h": as_float32(state.h), "c": as_float32(state.c)}
        )
        return out, LstmState(h, c)

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
