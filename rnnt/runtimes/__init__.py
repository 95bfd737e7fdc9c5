"""Backends that run the three networks behind `rnnt.hypothesis.Runtime`, and their loader.

Each backend lives in its own module and imports only its own runtime package, so the
ONNX Runtime and OpenVINO backends deploy with numpy + the runtime, without torch.

A model is either a checkpoint file (`*.pt`, torch backend only) or an export directory
written by `export_onnx.py`:

    DIR/config.json         {"format": EXPORT_FORMAT, "feature": {...}, "model": {...}, "decode": {...}}
    DIR/tokenizer.model     sentencepiece model
    DIR/{encoder,decoder,joint}.onnx          (+ .int8.onnx with --int8)
    DIR/openvino/{encoder,decoder,joint}.xml  (+ .bin; fp32 only)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnt.config import BLANK_ID, NO_TOKEN, DecodeConfig, FeatureConfig, ModelConfig, from_dict
from rnnt.hypothesis import Runtime
from rnnt.state import LstmState
from rnnt.tokenizer import Tokenizer

BACKENDS = ("torch", "onnx", "openvino")
PRECISIONS = ("fp32", "int8", "bf16")  # bf16: OpenVINO computing the fp32 IR in bfloat16
# 2: encoder and decoder emit joint-space vectors (`Transducer.search_encode`); 1 did not.
EXPORT_FORMAT = "rnnt-export-2"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.model"
OPENVINO_DIR = "openvino"

# The three graphs and their tensor names (states mirror `LstmState`'s fields).
GRAPHS = ("encoder", "decoder", "joint")
GRAPH_INPUTS = {
    "encoder": ("features", "h", "c"),  # (B, T, D) float32, (layers, B, H) x 2
    "decoder": ("tokens", "h", "c"),  # (B, 1) int64, (layers, B, H) x 2
    "joint": ("encoder_out", "predictor_out"),  # (N, J), (N, J): tanh(sum) -> Linear(V)
}
GRAPH_OUTPUTS = {
    "encoder": ("encoder_out", "h_out", "c_out"),  # (B, T', J), (layers, B, H) x 2
    "decoder": ("predictor_out", "h_out", "c_out"),  # (B, 1, J), (layers, B, H) x 2
    "joint": ("logits",),  # (N, V)
}
# A model trained with a CTC head exports its log-probabilities as a fourth encoder output,
# (B, T', V), for the second pass (`rnnt.rescoring`); the search never needs it.
ENCODER_CTC_OUTPUT = "ctc_log_probs"


def as_float32(array: np.ndarray) -> np.ndarray:
    """A contiguous float32 view or copy, as the runtimes' inputs must be."""
    return np.ascontiguousarray(array, dtype=np.float32)


class ZeroStates:
    """`init_encoder_state` / `init_predictor_state` for backends fed numpy states."""

    config: ModelConfig

    def init_encoder_state(self, batch_size: int) -> LstmState:
        return _zeros(self.config.encoder_layers, batch_size, self.config.encoder_hidden)

    def init_predictor_state(self, batch_size: int) -> LstmState:
        layers, hidden = self.config.predictor_state_shape
        state = _zeros(layers, batch_size, hidden)
        if self.config.predictor == "stateless":
            state.h.fill(NO_TOKEN)  # no tokens before the start (`rnnt.model.StatelessPredictor`)
        return state


def _zeros(num_layers: int, batch_size: int, hidden: int) -> LstmState:
    shape = (num_layers, batch_size, hidden)
    return LstmState(np.zeros(shape, np.float32), np.zeros(shape, np.float32))


class ModelLoadError(Exception):
    """A model path or backend that cannot be used; the message says why."""


@dataclass
class LoadedModel:
    """A runtime plus everything needed around it to turn audio into text."""

    runtime: Runtime
    features: FeatureConfig
    model: ModelConfig
    tokenizer: Tokenizer
    decode: DecodeConfig


def load_model(
    path: str | Path, backend: str = "torch", precision: str = "fp32", threads: int = 0
) -> LoadedModel:
    """Load a checkpoint (torch) or an export directory (any backend).

    `threads` sets the intra-op threads (0: the backend's default for this machine); every
    backend runs the predictor and joint on the encoder's threads, which measured faster for
    each. ONNX Runtime has one pool per process, sized by its first model
    (`rnnt.runtimes.ort.process_pool_threads`).
    """
    if backend not in BACKENDS:
        raise ModelLoadError(f"unknown backend {backend!r} (one of {', '.join(BACKENDS)})")
    if precision not in PRECISIONS:
        raise ModelLoadError(f"unknown precision {precision!r} (one of {', '.join(PRECISIONS)})")
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such model file or directory")
    if path.is_file():
        loaded = _load_checkpoint(path, backend, precision, threads)
    else:
        loaded = _load_export(path, backend, precision, threads)
    warm_up(loaded.runtime, loaded.model)
    return loaded


def warm_up(runtime: Runtime, config: ModelConfig) -> None:
    """Run each network once, so that a runtime's one-off set-up is paid while loading, not by
    the first caption: OpenVINO's first E6D2_LARGE_Batch encoder call took 0.3-1 s (later
    calls ~13 ms; a new input shape ~50 ms), ONNX Runtime's 20-60 ms."""
    frames = np.zeros((1, runtime.time_reduction, config.input_dim), np.float32)
    encoder_out, _ = runtime.encode(frames, runtime.init_encoder_state(1))
    predictor_out, _ = runtime.predict(np.array([BLANK_ID], dtype=np.int64), runtime.init_predictor_state(1))
    runtime.join(encoder_out[:, 0], predictor_out)


def _load_checkpoint(path: Path, backend: str, precision: str, threads: int) -> LoadedModel:
    if backend != "torch" or precision != "fp32":
        raise ModelLoadError(
            f"{path}: a checkpoint runs on --backend=torch fp32; export it for {backend} {precision}"
        )
    try:
        import torch

        from rnnt.checkpoint import load_bundle
        from rnnt.runtimes.pytorch import TorchRuntime
    except ImportError as error:
        raise ModelLoadError(f"the torch backend needs PyTorch installed ({error})") from error
    if threads:
        torch.set_num_threads(threads)
    bundle = load_bundle(path)
    return LoadedModel(
        TorchRuntime(bundle.model), bundle.features, bundle.model.config, bundle.tokenizer, bundle.decode
    )


def graph_file(directory: Path, backend: str, graph: str, precision: str) -> Path:
    """Where an export directory keeps `graph` for `backend` ("onnx" or "openvino").

    OpenVINO's bf16 is a compile-time setting on the same (fp32) IR.
    """
    if backend == "onnx":
        return directory / (f"{graph}.onnx" if precision == "fp32" else f"{graph}.{precision}.onnx")
    return directory / OPENVINO_DIR / f"{graph}.xml"


def existing_graph_file(directory: Path, backend: str, graph: str, precision: str) -> Path:
    """`graph_file`, or ModelLoadError naming the missing file."""
    path = graph_file(directory, backend, graph, precision)
    if not path.is_file():
        hint = " (export with --int8)" if precision != "fp32" else ""
        raise ModelLoadError(f"{path}: missing from the export directory{hint}")
    return path


def read_json_object(path: Path) -> dict:
    """The JSON object in `path`, or ModelLoadError naming the file if it holds anything else."""
    try:
        value = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"{path}: not JSON ({error})") from None
    if not isinstance(value, dict):
        raise ModelLoadError(f"{path}: expected a JSON object, found {type(value).__name__}")
    return value


def read_export_config(directory: Path) -> dict:
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise ModelLoadError(f"{directory}: not an export directory (no {CONFIG_FILE}); run export_onnx.py")
    config = read_json_object(config_path)
    if config.get("format") != EXPORT_FORMAT:
        raise ModelLoadError(
            f"{config_path}: export format {config.get('format')!r}, this version reads {EXPORT_FORMAT!r};"
            " export the checkpoint again with export_onnx.py"
        )
    return config


def is_current_export(directory: Path) -> bool:
    """`directory` holds an export this version reads (false if it is missing or of an older format)."""
    try:
        read_export_config(directory)
    except (ModelLoadError, ValueError):
        return False
    return True


def open_export_runtime(
    directory: Path, backend: str, config: ModelConfig, precision: str = "fp32", threads: int = 0
) -> Runtime:
    """The onnx or openvino runtime of the graphs in an export directory."""
    if backend == "onnx":
        from rnnt.runtimes.ort import OnnxRuntime

        return OnnxRuntime(directory, config, precision, threads)
    if backend == "openvino":
        from rnnt.runtimes.ov import OpenVinoRuntime

        return OpenVinoRuntime(directory, config, precision, threads)
    raise ModelLoadError(f"{directory}: the torch backend takes a checkpoint file, not an export directory")


def _load_export(directory: Path, backend: str, precision: str, threads: int) -> LoadedModel:
    config = read_export_config(directory)
    model_config = from_dict(ModelConfig, config["model"])
    return LoadedModel(
        open_export_runtime(directory, backend, model_config, precision, threads),
        from_dict(FeatureConfig, config["feature"]),
        model_config,
        Tokenizer.load(directory / TOKENIZER_FILE),
        from_dict(DecodeConfig, config.get("decode", {})),
    )
