"""The ONNX Runtime backend: an export directory's graphs behind `rnnt.decoding.Runtime`.

numpy and onnxruntime only (no torch), so it deploys without PyTorch.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from rnnt.config import ModelConfig
from rnnt.runtimes import GRAPH_OUTPUTS, ModelLoadError, ZeroStates, as_float32, existing_graph_file
from rnnt.state import LstmState


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as error:
        raise ModelLoadError(f"the onnx backend needs onnxruntime installed ({error})") from error
    return onnxruntime


def cpu_session(ort: Any, path: Path, threads: int) -> Any:
    """A CPU session running on `threads` intra-op threads (0: one per physical core).

    The predictor and joint get one: called per token on tiny inputs, they run on the
    calling thread, with no pool of their own to wake or spin (three spinning pools on
    two cores multiply latency). The encoder keeps ONNX Runtime's spinning workers, which
    it wakes once per LSTM time step.
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own types, not RuntimeError
        raise ModelLoadError(f"{path}: onnxruntime cannot load it ({error})") from error


class OnnxRuntime(ZeroStates):
    """The exported encoder, decoder (predictor) and joint on ONNX Runtime's CPU provider.

    `precision` "int8" loads the dynamically quantised graphs (`*.int8.onnx`).
    """

    def __init__(self, directory: str | Path, config: ModelConfig, precision: str = "fp32", threads: int = 0):
        if precision not in ("fp32", "int8"):
            raise ModelLoadError(
                f"the onnx backend runs fp32 or int8; for {precision} use the openvino backend"
            )
        ort = import_onnxruntime()
        directory = Path(directory)
        self.config = config
        self.time_reduction = config.time_reduction
        graph = functools.partial(existing_graph_file, directory, "onnx", precision=precision)
        self._encoder = cpu_session(ort, graph("encoder"), threads)
        self._decoder = cpu_session(ort, graph("decoder"), 1)
        self._joint = cpu_session(ort, graph("joint"), 1)

    def encode(self, features: np.ndarray, state: LstmState) -> tuple[np.ndarray, LstmState]:
        """(B, T, D) frames -> (B, T', J) and the new state."""
        inputs = {"features": as_float32(features), "h": as_float32(state.h), "c": as_float32(state.c)}
        out, h, c = self._encoder.run(GRAPH_OUTPUTS["encoder"], inputs)
        return out, LstmState(h, c)

    def predict(self, tokens: np.ndarray, state: LstmState) -> tuple[np.ndarray, LstmState]:
        """(B,) tokens -> (B, J) and the new state."""
        tokens = np.ascontiguousarray(tokens, dtype=np.int64).reshape(-1, 1)
        inputs = {"tokens": tokens, "h": as_float32(state.h), "c": as_float32(state.c)}
        out, h, c = self._decoder.run(GRAPH_OUTPUTS["decoder"], inputs)
        return out[:, 0], LstmState(h, c)

    def join(self, encoder_out: np.ndarray, predictor_out: np.ndarray) -> np.ndarray:
        """(N, J) and (N, J) -> (N, V) logits."""
        inputs = {"encoder_out": as_float32(encoder_out), "predictor_out": as_float32(predictor_out)}
        return self._joint.run(GRAPH_OUTPUTS["joint"], inputs)[0]
