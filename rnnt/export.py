"""Export a checkpoint as three ONNX graphs and OpenVINO IR, then check them against PyTorch.

Writes the export directory `rnnt.runtimes` describes. Recurrent states are explicit graph
inputs and outputs named after `LstmState`'s fields (`h`, `c` -> `h_out`, `c_out`), so a
stream resumes by feeding back what a graph returned. After writing, every exported
runtime runs real features through two consecutive encoder chunks, two predictor steps
and the joint, and must match PyTorch; `config.json` is written only when it does, so a
failed export is never loadable.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import Tensor, nn

from rnnt import atomic
from rnnt.checkpoint import ModelBundle, load_bundle
from rnnt.model import Transducer
from rnnt.parity import ParityResult, check_parity, parity_features
from rnnt.runtimes import (
    CONFIG_FILE,
    ENCODER_CTC_OUTPUT,
    EXPORT_FORMAT,
    GRAPH_INPUTS,
    GRAPH_OUTPUTS,
    GRAPHS,
    TOKENIZER_FILE,
    graph_file,
)
from rnnt.state import LstmState

log = logging.getLogger(__name__)

DEFAULT_OPSET = 20  # the newest opset the TorchScript exporter writes
MIN_OPSET = 14  # the oldest exported and parity-checked here (2026-12-04)
TRACE_BATCH = 2  # example batch for tracing: not 1, so that nothing specialises to it
TRACE_FRAMES = 8  # example input frames for tracing (times the time reduction)
INT8_OP_TYPES = ["LSTM", "MatMul", "Gemm", "Gather"]  # every weight: recurrent, Linear, embedding
VARIANTS = (("onnx", "fp32"), ("openvino", "fp32"), ("onnx", "int8"))
# OpenVINO int8 is not exported. Converting the ONNX Runtime int8 graphs gives OpenVINO f32
# weights again (no faster than fp32); NNCF's weight compression leaves LSTMSequence, most
# of the weights, alone; NNCF's static quantisation halved encoder time but its relative
# error (5%) was four times ONNX Runtime's dynamic int8's, which is faster still.
OPENVINO_INT8_NOTE = "openvino int8: not exported (ONNX Runtime int8 is faster and more accurate)"


class ExportError(Exception):
    """Exported graphs that do not reproduce the PyTorch model; the message says where."""

    def __init__(self, message: str, report: ExportReport | None = None):
        super().__init__(message)
        self.report = report


@dataclass
class ExportReport:
    """What an export wrote and how closely each runtime matched PyTorch."""

    output_dir: Path
    opset: int
    files: list[Path] = field(default_factory=list)
    parity: list[ParityResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. what became of OpenVINO int8


def export(
    source: str | Path | ModelBundle,
    output_dir: str | Path,
    int8: bool = False,
    opset: int = DEFAULT_OPSET,
    parity_audio: str | Path | None = None,
) -> ExportReport:
    """Export a checkpoint (path or loaded bundle) to `output_dir` and check parity.

    `parity_audio` is a recording for the parity check (default: synthetic speech).
    Raises `ExportError` when a runtime differs from PyTorch beyond tolerance.
    """
    if not MIN_OPSET <= opset <= DEFAULT_OPSET:
        raise ValueError(f"opset must be between {MIN_OPSET} and {DEFAULT_OPSET}, got {opset}")
    bundle = source if isinstance(source, ModelBundle) else load_bundle(source)
    model = bundle.model.eval()
    features = parity_features(bundle.features, parity_audio)  # bad audio fails before any export
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    # An older export's config (until parity holds) and int8 graphs (unless remade) go.
    for stale in [output_dir / CONFIG_FILE, *(graph_file(output_dir, "onnx", g, "int8") for g in GRAPHS)]:
        stale.unlink(missing_ok=True)
    config = export_config(bundle)
    report = ExportReport(output_dir, opset)
    report.files += export_onnx(model, output_dir, opset, config)
    bundle.tokenizer.save(output_dir / TOKENIZER_FILE)
    report.files += [output_dir / TOKENIZER_FILE, *export_openvino(model, output_dir, opset)]
    if int8:
        report.files += quantize_onnx(output_dir, config)
        report.notes.append(OPENVINO_INT8_NOTE)
    variants = [(backend, precision) for backend, precision in VARIANTS if int8 or precision == "fp32"]
    report.parity = check_parity(model, output_dir, features, variants)
    failed = [result for result in report.parity if not result.passed]
    if failed:
        raise ExportError("; ".join(result.describe() for result in failed), report)
    atomic.write_text(output_dir / CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    report.files.append(output_dir / CONFIG_FILE)
    return report


def export_config(bundle: ModelBundle) -> dict[str, Any]:
    """config.json's content, also stored as each ONNX graph's metadata."""
    return {
        "format": EXPORT_FORMAT,
        "feature": dataclasses.asdict(bundle.features),
        "model": dataclasses.asdict(bundle.model.config),
        "decode": dataclasses.asdict(bundle.decode),
    }


class _EncoderGraph(nn.Module):
    def __init__(self, model: Transducer):
        super().__init__()
        self.model = model

    def forward(self, features: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, ...]:
        """A model with a CTC head also outputs its log-probabilities (`ENCODER_CTC_OUTPUT`)."""
        if self.model.ctc is None:
            out, state = self.model.search_encode(features, LstmState(h, c))
            return out, state.h, state.c
        out, ctc_log_probs, state = self.model.search_encode_with_ctc(features, LstmState(h, c))
        return out, state.h, state.c, ctc_log_probs


class _DecoderGraph(nn.Module):
    """`stepwise`: the LSTM as its cell arithmetic (`rnnt.model.stepwise_lstm`) instead of an
    ONNX LSTM; the decoder always takes one token, so the traced loop is one step."""

    def __init__(self, model: Transducer, stepwise: bool = False):
        super().__init__()
        self.model = model
        self.stepwise = stepwise

    def forward(self, tokens: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out, state = self.model.search_predict(tokens, LstmState(h, c), self.stepwise)
        return out, state.h, state.c


class _JointGraph(nn.Module):
    def __init__(self, model: Transducer):
        super().__init__()
        self.model = model

    def forward(self, encoder_out: Tensor, predictor_out: Tensor) -> Tensor:
        return self.model.search_join(encoder_out, predictor_out)


def _graphs(
    model: Transducer, stepwise_decoder: bool = False
) -> dict[str, tuple[nn.Module, tuple[Tensor, ...], dict[str, dict[int, str]]]]:
    """Each graph's module, example inputs and dynamic axes."""
    config = model.config
    frames = TRACE_FRAMES * config.time_reduction
    encoder_state = model.encoder.init_state(TRACE_BATCH)
    predictor_state = model.predictor.init_state(TRACE_BATCH)
    state_axes = {name: {1: "batch"} for name in ("h", "c", "h_out", "c_out")}
    return {
        "encoder": (
            _EncoderGraph(model),
            (torch.zeros(TRACE_BATCH, frames, config.input_dim), *encoder_state),
            {"features": {0: "batch", 1: "frames"}, "encoder_out": {0: "batch", 1: "encoder_frames"}}
            | {ENCODER_CTC_OUTPUT: {0: "batch", 1: "encoder_frames"}}
            | state_axes,
        ),
        "decoder": (
            _DecoderGraph(model, stepwise_decoder),
            (torch.zeros(TRACE_BATCH, 1, dtype=torch.int64), *predictor_state),
            {"tokens": {0: "batch"}, "predictor_out": {0: "batch"}} | state_axes,
        ),
        "joint": (
            _JointGraph(model),
            (
                torch.zeros(TRACE_BATCH, config.joint_dim),
                torch.zeros(TRACE_BATCH, config.joint_dim),
            ),
            {"encoder_out": {0: "rows"}, "predictor_out": {0: "rows"}, "logits": {0: "rows"}},
        ),
    }


def export_onnx(model: Transducer, output_dir: Path, opset: int, config: dict[str, Any]) -> list[Path]:
    """The three fp32 graphs, with `config` as their metadata."""
    paths = []
    for name, (module, example, dynamic_axes) in _graphs(model).items():
        path = graph_file(output_dir, "onnx", name, "fp32")
        _write_onnx(name, module, example, dynamic_axes, path, opset)
        set_metadata(path, config)
        paths.append(path)
        log.info("wrote %s", path)
    return paths


def _write_onnx(
    name: str,
    module: nn.Module,
    example: tuple[Tensor, ...],
    dynamic_axes: dict[str, dict[int, str]],
    path: Path,
    opset: int,
) -> None:
    """Graph `name` (`GRAPH_INPUTS` / `GRAPH_OUTPUTS`); a model with a CTC head gets the
    encoder's fourth output (`ENCODER_CTC_OUTPUT`)."""
    output_names = list(GRAPH_OUTPUTS[name])
    if name == "encoder" and isinstance(module, _EncoderGraph) and module.model.ctc is not None:
        output_names.append(ENCODER_CTC_OUTPUT)
    write_onnx(module, example, path, opset, list(GRAPH_INPUTS[name]), output_names, dynamic_axes)


def write_onnx(
    module: nn.Module,
    example: tuple[Tensor, ...],
    path: Path,
    opset: int,
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]],
) -> None:
    """`module` traced by the TorchScript exporter (dynamo=False): it maps nn.LSTM to ONNX
    LSTM with dynamic batch and time. The torch.export one needs onnxscript, took 16 s per
    graph here and declared the encoder's reduced time axis static. `dynamic_axes` may name
    tensors the graph does not have.
    """
    names = set(input_names) | set(output_names)
    with warnings.catch_warnings():
        # nn.LSTM's argument checks, on traced sizes; the states are graph inputs.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module=r"torch\.nn\.modules\.rnn")
        warnings.filterwarnings("ignore", message=r"Exporting a model to ONNX with a batch_size other than 1")
        warnings.filterwarnings("ignore", message=r"You are using the legacy TorchScript-based ONNX export")
        warnings.filterwarnings("ignore", message=r"The feature will be removed")
        torch.onnx.export(
            module,
            example,
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes={axis: axes for axis, axes in dynamic_axes.items() if axis in names},
        )


def set_metadata(path: Path, config: dict[str, Any]) -> None:
    """Replace the ONNX graph's metadata with `config` (strings as they are, the rest as JSON)."""
    graph = onnx.load(str(path))
    del graph.metadata_props[:]
    for key, value in config.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    onnx.checker.check_model(graph)
    onnx.save(graph, str(path))


class _BelowError(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR


def quantize_onnx(output_dir: Path, config: dict[str, Any]) -> list[Path]:
    """`*.int8.onnx` of the three fp32 graphs (`quantize_int8`), with the export's metadata."""
    paths = []
    for name in GRAPHS:
        path = graph_file(output_dir, "onnx", name, "int8")
        quantize_int8(graph_file(output_dir, "onnx", name, "fp32"), path)
        set_metadata(path, config)
        paths.append(path)
        log.info("wrote %s", path)
    return paths


def quantize_int8(source: Path, destination: Path) -> None:
    """ONNX Runtime dynamic quantisation (int8 weights, per-call activation scales), as every
    int8 graph here is made (the export's and the benchmark's LSTM calibration stack's).

    Signed weights (uint8 activations x int8 weights, ONNX Runtime's default kernel): as
    fast and as accurate as uint8 weights on an AVX512-VNNI CPU, about twice fp32's speed.
    One scale per output channel, not per tensor: on the 80 ms demo model's 300 test
    utterances, 52.73% WER against 53.45% (fp32: 52.21%) at the same speed.
    Weights in 7 bits (`reduce_range`): without VNNI, ONNX Runtime's u8 x s8 kernel adds
    pairs of products in int16 (VPMADDUBSW), which 8-bit weights saturate; on an AVX2-only
    host the demo model streamed the test set at 48.84% WER against 32.20% for fp32, and
    with 7-bit weights at 32.43% (uint8 weights saturated too: 48.74%).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quiet = _BelowError()  # the quantiser's per-tensor notes and advice, on the root logger
    logging.root.addFilter(quiet)
    try:
        quantize_dynamic(
            source,
            destination,
            op_types_to_quantize=INT8_OP_TYPES,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,
        )
    finally:
        logging.root.removeFilter(quiet)


def export_openvino(model: Transducer, output_dir: Path, opset: int) -> list[Path]:
    """OpenVINO IR of the three graphs, f32 weights kept: the encoder and joint converted from
    the fp32 ONNX graphs, the decoder from its own ONNX trace with the LSTM as cell arithmetic.

    OpenVINO runs an ONNX LSTM through oneDNN's reference RNN kernel, wrapped in layout
    reorders and shape computations; for the predictor's single step, plain matrix products
    and element-wise gates are faster there: E6D2_LARGE_Batch's 2x512 predictor took 0.51 ms
    per call against 0.60 in a streaming run (2026-12-02; ONNX Runtime's LSTM 0.49). ONNX
    Runtime keeps the LSTM operator, a little faster for it than the cell arithmetic (0.49
    against 0.51 ms; the demo predictor 0.043 against 0.047).
    """
    from rnnt.runtimes.ov import import_openvino

    openvino = import_openvino()
    paths = []
    with tempfile.TemporaryDirectory() as scratch:
        decoder_onnx = Path(scratch) / "decoder.onnx"
        module, example, dynamic_axes = _graphs(model, stepwise_decoder=True)["decoder"]
        _write_onnx("decoder", module, example, dynamic_axes, decoder_onnx, opset)
        for name in GRAPHS:
            path = graph_file(output_dir, "openvino", name, "fp32")
            path.parent.mkdir(parents=True, exist_ok=True)
            source = decoder_onnx if name == "decoder" else graph_file(output_dir, "onnx", name, "fp32")
            converted = openvino.convert_model(str(source))
            openvino.save_model(converted, str(path), compress_to_fp16=False)
            paths += [path, path.with_suffix(".bin")]
            log.info("wrote %s", path)
    return paths
