"""The ONNX Runtime backend: an export directory's graphs behind `rnnt.hypothesis.Runtime`.

numpy and onnxruntime only (no torch), so it deploys without PyTorch.
"""

from __future__ import annotations

import functools
import logging
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

log = logging.getLogger("rnnt")


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as error:
        raise ModelLoadError(f"the onnx backend needs onnxruntime installed ({error})") from error
    return onnxruntime


_POOL_THREADS: list[int] = []  # intra-op threads of the process's ONNX Runtime pool, once made


def process_pool_threads(ort: Any, threads: int) -> int:
    """The intra-op threads of the process's ONNX Runtime thread pool, made by the first caller
    with `threads` (0: one per physical core).

    ONNX Runtime allows one such pool per process and then refuses sessions with pools of
    their own, so a later caller asking for another count runs on it too (and is told).
    """
    if not _POOL_THREADS:
        ort.set_global_thread_pool_sizes(threads, 1)
        _POOL_THREADS.append(threads)
    elif threads != _POOL_THREADS[0]:
        log.warning(
            "onnxruntime: %s intra-op threads asked for, but this process's thread pool has %s "
            "(made by its first ONNX Runtime model); running on it",
            threads or "default",
            _POOL_THREADS[0] or "default",
        )
    return _POOL_THREADS[0]


def cpu_session(ort: Any, path: Path) -> Any:
    """A CPU session on the process's thread pool (made first by `process_pool_threads`).

    All sessions share one pool. With a pool each, the encoder's workers kept spinning after
    its call while the predictor and joint (one thread each, so that three spinning pools did
    not fight over two cores) ran on the calling thread: E6D2_LARGE_Batch's predictor call took
    0.71 ms (median) against 0.37 ms on the shared, already awake pool, the joint 0.34 against
    0.17 ms; 35.4x against 39.5x real time in all.
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.use_per_session_threads = False
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
        process_pool_threads(ort, threads)
        self._encoder = cpu_session(ort, graph("encoder"))
        self._decoder = cpu_session(ort, graph("decoder"))
        self._joint = cpu_session(ort, graph("joint"))
        self.has_ctc = ENCODER_CTC_OUTPUT in {output.name for output in self._encoder.get_outputs()}

    def encode(self, features: np.ndarray, state: LstmState) -> tuple[np.ndarray, LstmState]:
        """(B, T, D) frames -> (B, T', J) and the new state."""
        inputs = {"features": as_float32(features), "h": as_float32(state.h), "c": as_float32(state.c)}
        out, h, c = self._encoder.run(GRAPH_OUTPUTS["encoder"], inputs)
        return out, LstmState(h, c)

    def encode_with_ctc(
        self, features: np.ndarray, state: LstmState
    ) -> tuple[np.ndarray, np.ndarray, LstmState]:
        """`encode` plus the CTC head's (B, T', V) log-probabilities."""
        inputs = {"features": as_float32(features), "h": as_float32(state.h), "c": as_float32(state.c)}
        out, h, c, ctc_log_probs = self._encoder.run([*GRAPH_OUTPUTS["encoder"], ENCODER_CTC_OUTPUT], inputs)
        return out, ctc_log_probs, LstmState(h, c)

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
