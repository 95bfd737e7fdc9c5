"""Export for sherpa-onnx: a checkpoint as the three graphs of its LSTM transducer.

sherpa-onnx (k2-fsa) runs icefall's LSTM transducers (`model_type=lstm` in the encoder's
metadata) in C++ on servers, phones and microcontrollers. Its graphs differ from this
toolkit's own export (`rnnt.export`) in what sherpa-onnx computes around them:

- the encoder takes the Kaldi fbank frames sherpa-onnx computes (kaldi-native-fbank),
  unstacked, `x` (N, T, num_mel_bins), T = `decode_chunk_len` frames a call; frame stacking
  moves into the graph; its states are `h` and `c`, (layers, N, hidden);
- the decoder takes the last `context_size` token ids, `y` (N, context_size), and no
  state: the model needs a stateless predictor (`--predictor=stateless`);
- the joiner takes one encoder frame and one decoder output, (N, J) each, -> `logit` (N, V);
- `tokens.txt` lists each token and its id (blank 0), `bpe.vocab` each piece and its score
  (sherpa-onnx tokenises hotwords with it), and `sherpa-onnx.json` the recognizer's options
  (`rnnt.sherpa`, which also decodes with sherpa-onnx).

sherpa-onnx's greedy search emits at most one token per encoder frame, never suppresses
`<unk>`, and starts each stream's context from `NO_TOKEN`s before a blank; the toolkit's search
with `max_symbols_per_frame=1` and `suppress_unk=False` decodes the same frames to the same
tokens (tests/test_sherpa.py). Its token timestamps assume icefall's 40 ms encoder frames:
multiply them by `FeatureConfig.encoder_frame_s(time_reduction) / 0.04` for this model's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rnnt import atomic
from rnnt.checkpoint import ModelBundle, load_bundle
from rnnt.config import FeatureConfig, StreamConfig
from rnnt.export import DEFAULT_OPSET, ExportError, quantize_int8, set_metadata, write_onnx
from rnnt.features import compute_features
from rnnt.model import Transducer
from rnnt.parity import FP32_TOLERANCE, PARITY_SECONDS, synthetic_speech
from rnnt.sherpa import (
    BPE_VOCAB_FILE,
    GRAPHS,
    KALDI_FRAME_MS,
    OPTIONS_FILE,
    TOKENS_FILE,
    graph_file,
    recognizer_options,
)
from rnnt.state import LstmState
from rnnt.streaming import chunk_frames

INPUTS = {"encoder": ["x", "h", "c"], "decoder": ["y"], "joiner": ["encoder_out", "decoder_out"]}
OUTPUTS = {"encoder": ["encoder_out", "new_h", "new_c"], "decoder": ["decoder_out"], "joiner": ["logit"]}
KALDI_PREEMPHASIS = 0.97
TRACE_BATCH = 2


class SherpaExportError(ExportError):
    """A model sherpa-onnx cannot run as it is, or graphs that do not reproduce PyTorch."""


@dataclass
class SherpaExport:
    """What `export_sherpa` wrote and how closely the graphs matched PyTorch."""

    output_dir: Path
    chunk_frames: int  # feature frames per encoder call (sherpa-onnx's T)
    files: list[Path] = field(default_factory=list)
    max_abs_diff: dict[str, float] = field(default_factory=dict)  # fp32 graph -> largest difference

    @property
    def options_file(self) -> Path:
        return self.output_dir / OPTIONS_FILE


def unsupported(bundle: ModelBundle) -> list[str]:
    """Why sherpa-onnx could not run this model (empty when it can)."""
    features, config = bundle.features, bundle.model.config
    window_ms, shift_ms = (
        1000.0 * n / features.sample_rate for n in (features.win_length, features.hop_length)
    )
    reasons = []
    if config.predictor != "stateless":
        reasons.append(
            "its predictor is an LSTM; sherpa-onnx's decoder is stateless (train with --predictor=stateless)"
        )
    if features.feature_kind != "kaldi_fbank":
        reasons.append(f"its features are {features.feature_kind}; sherpa-onnx computes kaldi_fbank")
    if (window_ms, shift_ms) != KALDI_FRAME_MS:
        reasons.append(
            f"its frames are {window_ms:g} ms every {shift_ms:g} ms; sherpa-onnx's are 25 every 10"
        )
    if features.n_fft != 1 << (features.win_length - 1).bit_length():
        reasons.append(f"n_fft {features.n_fft} is not the window rounded up to a power of two (Kaldi's)")
    if features.preemphasis != KALDI_PREEMPHASIS:
        reasons.append(f"pre-emphasis {features.preemphasis} (Kaldi's, which sherpa-onnx uses: 0.97)")
    return reasons


class _Encoder(nn.Module):
    def __init__(self, model: Transducer, stack_frames: int):
        super().__init__()
        self.model = model
        self.stack_frames = stack_frames

    def forward(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(N, T, mel) unstacked frames, T a multiple of the stacking -> (N, T', J) and states."""
        batch, frames, width = x.shape
        stacked = x.reshape(batch, frames // self.stack_frames, width * self.stack_frames)
        out, state = self.model.search_encode(stacked, LstmState(h, c))
        return out, state.h, state.c


class _Decoder(nn.Module):
    def __init__(self, model: Transducer):
        super().__init__()
        self.model = model

    def forward(self, y: Tensor) -> Tensor:
        """(N, context_size) token ids, oldest first -> (N, J): the stateless predictor's
        output after the last of them, its state being the ones before."""
        context = y[:, :-1].transpose(0, 1).unsqueeze(-1).to(torch.float32)
        out, _ = self.model.search_predict(y[:, -1:], LstmState(context, torch.zeros_like(context)))
        return out[:, 0]


class _Joiner(nn.Module):
    def __init__(self, model: Transducer):
        super().__init__()
        self.model = model

    def forward(self, encoder_out: Tensor, decoder_out: Tensor) -> Tensor:
        return self.model.search_join(encoder_out, decoder_out)


def _graphs(
    model: Transducer, features: FeatureConfig, frames: int
) -> dict[str, tuple[nn.Module, tuple, dict]]:
    """Each graph's module, example inputs and dynamic axes."""
    config = model.config
    state = model.encoder.init_state(TRACE_BATCH)
    joint = torch.zeros(TRACE_BATCH, config.joint_dim)
    return {
        "encoder": (
            _Encoder(model, features.stack_frames),
            (torch.zeros(TRACE_BATCH, frames, features.num_mel_bins), *state),
            {"x": {0: "N", 1: "T"}, "encoder_out": {0: "N", 1: "T'"}}
            | {name: {1: "N"} for name in ("h", "c", "new_h", "new_c")},
        ),
        "decoder": (
            _Decoder(model),
            (torch.zeros(TRACE_BATCH, config.predictor_context, dtype=torch.int64),),
            {"y": {0: "N"}, "decoder_out": {0: "N"}},
        ),
        "joiner": (
            _Joiner(model),
            (joint, joint),
            {"encoder_out": {0: "N"}, "decoder_out": {0: "N"}, "logit": {0: "N"}},
        ),
    }


def _metadata(bundle: ModelBundle, frames: int) -> dict[str, dict[str, Any]]:
    """What sherpa-onnx reads from each graph (`OnlineLstmTransducerModel`)."""
    config = bundle.model.config
    return {
        "encoder": {
            "model_type": "lstm",
            "num_encoder_layers": config.encoder_layers,
            "T": frames,  # frames a call takes
            "decode_chunk_len": frames,  # frames a call advances: chunks do not overlap
            "d_model": config.encoder_hidden,  # h's width
            "rnn_hidden_size": config.encoder_hidden,  # c's width
            "comment": "rnnt streaming LSTM transducer",
        },
        "decoder": {"vocab_size": config.vocab_size, "context_size": config.predictor_context},
        "joiner": {"joiner_dim": config.joint_dim},
    }


def export_sherpa(
    source: str | Path | ModelBundle,
    output_dir: str | Path,
    stream: StreamConfig | None = None,
    int8: bool = False,
    opset: int = DEFAULT_OPSET,
) -> SherpaExport:
    """Write sherpa-onnx's encoder/decoder/joiner graphs, `tokens.txt` and `sherpa-onnx.json`
    for a checkpoint (path or loaded bundle), each encoder call taking `stream.chunk_ms` of
    frames; `int8` adds `*.int8.onnx` (ONNX Runtime dynamic quantisation, as `rnnt.export`).

    Raises `SherpaExportError` when the model is not one sherpa-onnx runs, or when an fp32
    graph differs from PyTorch beyond `rnnt.parity.FP32_TOLERANCE`.
    """
    bundle = source if isinstance(source, ModelBundle) else load_bundle(source)
    if reasons := unsupported(bundle):
        raise SherpaExportError("sherpa-onnx cannot run this model: " + "; ".join(reasons))
    model = bundle.model
    features = bundle.features
    frames = (
        chunk_frames(stream or StreamConfig(), features, model.config.time_reduction) * features.stack_frames
    )
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    result = SherpaExport(output_dir, frames)
    metadata = _metadata(bundle, frames)
    for name, (module, example, axes) in _graphs(model, features, frames).items():
        path = output_dir / graph_file(name)
        write_onnx(module, example, path, opset, INPUTS[name], OUTPUTS[name], axes)
        set_metadata(path, metadata[name])
        result.files.append(path)
        if int8:
            quantized = output_dir / graph_file(name, "int8")
            quantize_int8(path, quantized)
            set_metadata(quantized, metadata[name])
            result.files.append(quantized)
    tokenizer, ids = bundle.tokenizer, range(bundle.tokenizer.vocab_size)
    atomic.write_text(output_dir / TOKENS_FILE, "".join(f"{tokenizer.piece(i)} {i}\n" for i in ids))
    vocab = "".join(f"{tokenizer.piece(i)}\t{tokenizer.score(i)}\n" for i in ids)  # sentencepiece's .vocab
    atomic.write_text(output_dir / BPE_VOCAB_FILE, vocab)
    result.max_abs_diff = check_graphs(model, features, output_dir, frames)
    failed = {name: diff for name, diff in result.max_abs_diff.items() if not diff <= FP32_TOLERANCE}
    if failed:
        worst = ", ".join(f"{name} by {diff:.2e}" for name, diff in failed.items())
        raise SherpaExportError(
            f"sherpa-onnx graphs differ from PyTorch: {worst} (tolerance {FP32_TOLERANCE:.0e})"
        )
    atomic.write_text(output_dir / OPTIONS_FILE, json.dumps(recognizer_options(features), indent=2) + "\n")
    result.files += [output_dir / name for name in (TOKENS_FILE, BPE_VOCAB_FILE, OPTIONS_FILE)]
    return result


def check_graphs(
    model: Transducer, features: FeatureConfig, directory: Path, frames: int
) -> dict[str, float]:
    """Largest difference of each fp32 graph from PyTorch under ONNX Runtime: the encoder
    over two chunks of synthetic speech (states carried), the decoder on contexts of three
    streams, the joiner on the encoder's and decoder's outputs."""
    from rnnt.runtimes.ort import cpu_session, import_onnxruntime, process_pool_threads

    ort = import_onnxruntime()
    process_pool_threads(ort, 0)  # the process's one pool, which every session here must share
    session = {name: cpu_session(ort, directory / graph_file(name)) for name in GRAPHS}
    seconds = max(PARITY_SECONDS, 2.5 * frames * features.hop_length / features.sample_rate)
    unstacked = compute_features(synthetic_speech(features.sample_rate, seconds), features)
    x = unstacked.reshape(1, -1, features.num_mel_bins)[:, : 2 * frames]
    diffs = {}
    with torch.inference_mode():
        # Fresh wrappers in eval mode: torch.onnx.export leaves each module it exported (and so
        # the model inside) in the wrappers' default training mode, dropout on.
        modules = {name: module.eval() for name, (module, _, _) in _graphs(model, features, frames).items()}
        state = [s.numpy() for s in model.encoder.init_state(1)]
        worst = 0.0
        for chunk in (x[:, :frames], x[:, frames:]):
            want = [
                t.numpy() for t in modules["encoder"](torch.from_numpy(chunk), *map(torch.from_numpy, state))
            ]
            got = session["encoder"].run(None, {"x": chunk, "h": state[0], "c": state[1]})
            worst = max(worst, *(float(np.abs(w - g).max()) for w, g in zip(want, got, strict=True)))
            state = want[1:]
        diffs["encoder"] = worst
        context = model.config.predictor_context
        y = np.arange(3 * context, dtype=np.int64).reshape(3, context) % model.config.vocab_size
        y[0] = 0  # the start: blanks
        decoder_out = modules["decoder"](torch.from_numpy(y)).numpy()
        diffs["decoder"] = float(np.abs(decoder_out - session["decoder"].run(None, {"y": y})[0]).max())
        encoder_out = want[0][0, : len(y)]
        logit = modules["joiner"](torch.from_numpy(encoder_out), torch.from_numpy(decoder_out)).numpy()
        feeds = {"encoder_out": encoder_out, "decoder_out": decoder_out}
        diffs["joiner"] = float(np.abs(logit - session["joiner"].run(None, feeds)[0]).max())
    return diffs
