"""An export's parity check: every exported runtime against PyTorch on the same input.

Real features (a recording, or synthetic speech) go through two consecutive encoder chunks
(with the CTC head's output, if the model has one), two predictor steps over three streams
and the joint, on PyTorch and on each runtime; the largest difference in any output or state
is compared with a tolerance (fp32) or reported (int8).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnt.audio import load_audio
from rnnt.config import BLANK_ID, FeatureConfig
from rnnt.features import compute_features
from rnnt.hypothesis import Runtime
from rnnt.model import Transducer
from rnnt.rescoring import encode_chunk
from rnnt.runtimes import GRAPHS, open_export_runtime
from rnnt.runtimes.pytorch import TorchRuntime

log = logging.getLogger(__name__)

FP32_TOLERANCE = 1e-4  # largest abs difference from PyTorch in any output or state
PARITY_SECONDS = 4.0  # audio checked by the parity test
PARITY_TOKENS = ((BLANK_ID, 2, 3), (4, 5, 6))  # two predictor steps over three streams


@dataclass(frozen=True)
class ParityResult:
    """How far one exported graph on one runtime is from PyTorch."""

    backend: str  # onnx or openvino
    precision: str  # fp32 or int8
    graph: str  # encoder, decoder or joint
    max_abs_diff: float  # over every output and state of the parity run
    tolerance: float | None  # None: reported, not enforced (int8)

    @property
    def passed(self) -> bool:
        within = self.tolerance is None or self.max_abs_diff <= self.tolerance
        return bool(np.isfinite(self.max_abs_diff)) and within

    def describe(self) -> str:
        bound = "report only" if self.tolerance is None else f"tolerance {self.tolerance:.0e}"
        return (
            f"{self.graph} on {self.backend} {self.precision} differs from PyTorch by "
            f"{self.max_abs_diff:.2e} ({bound})"
        )


SYLLABLES_PER_SECOND = 4.0
PITCH_HZ = 120.0
HARMONICS = 30
NOISE_LEVEL = 0.01


def synthetic_speech(sample_rate: int, seconds: float, seed: int = 0) -> np.ndarray:
    """Voiced-speech-like samples: a gliding harmonic series in syllable bursts over noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    pitch = PITCH_HZ * (1.0 + 0.3 * np.sin(2 * np.pi * 0.5 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    weights = rng.uniform(0.2, 1.0, HARMONICS) / np.arange(1, HARMONICS + 1)
    voice = sum(w * np.sin((k + 1) * phase) for k, w in enumerate(weights))
    envelope = np.clip(np.sin(np.pi * SYLLABLES_PER_SECOND * t), 0.0, None)
    samples = 0.3 * envelope * voice / np.abs(voice).max() + NOISE_LEVEL * rng.standard_normal(len(t))
    return samples.astype(np.float32)


def parity_features(config: FeatureConfig, audio_path: str | Path | None = None) -> np.ndarray:
    """(1, T, D) features of `PARITY_SECONDS` of a recording, or of synthetic speech."""
    if audio_path:
        samples = load_audio(audio_path, config.sample_rate, duration=PARITY_SECONDS)
    else:
        samples = synthetic_speech(config.sample_rate, PARITY_SECONDS)
    return compute_features(samples, config)[None]


def check_parity(
    model: Transducer, directory: Path, features: np.ndarray, variants: list[tuple[str, str]]
) -> list[ParityResult]:
    """Every (backend, precision) in `variants` against PyTorch on `features` (1, T, D)."""
    tokens = np.array(PARITY_TOKENS, dtype=np.int64) % model.config.vocab_size
    reference = TorchRuntime(model)
    expected = _run_graphs(reference, features, tokens)
    # The joint gets PyTorch's encoder and predictor outputs, to be judged on its own.
    encoder_rows = expected["encoder"][0][0]
    predictor_rows = expected["decoder"][0][np.arange(len(encoder_rows)) % tokens.shape[1]]
    expected["joint"] = [reference.join(encoder_rows, predictor_rows)]
    results = []
    for backend, precision in variants:
        runtime = open_export_runtime(directory, backend, model.config, precision)
        outputs = _run_graphs(runtime, features, tokens)
        outputs["joint"] = [runtime.join(encoder_rows, predictor_rows)]
        tolerance = FP32_TOLERANCE if precision == "fp32" else None
        for graph in GRAPHS:
            diff = _max_abs_diff(expected[graph], outputs[graph])
            results.append(ParityResult(backend, precision, graph, diff, tolerance))
            log.debug("parity: %s", results[-1].describe())
    return results


def _run_graphs(runtime: Runtime, features: np.ndarray, tokens: np.ndarray) -> dict[str, list[np.ndarray]]:
    """Encoder outputs and states over two consecutive chunks of `features` (1, T, D);
    predictor outputs and states over the steps of `tokens` (steps, B)."""
    reduction = runtime.time_reduction
    split = features.shape[1] // 2 // reduction * reduction
    end = features.shape[1] // reduction * reduction
    encoder: list[np.ndarray] = []
    state = runtime.init_encoder_state(1)
    for chunk in (features[:, :split], features[:, split:end]):
        # The CTC head's output too, where the model has one (`rnnt.rescoring`).
        out, ctc_log_probs, state = encode_chunk(runtime, chunk, state, runtime.has_ctc)
        encoder += [out, state.h, state.c] + ([] if ctc_log_probs is None else [ctc_log_probs])
    decoder: list[np.ndarray] = []
    state = runtime.init_predictor_state(tokens.shape[1])
    for step in tokens:
        out, state = runtime.predict(step, state)
        decoder += [out, state.h, state.c]
    return {"encoder": encoder, "decoder": decoder}


def _max_abs_diff(expected: list[np.ndarray], actual: list[np.ndarray]) -> float:
    """The largest elementwise difference; infinite for a shape mismatch, a missing output
    (an export without the CTC head's) or a NaN."""
    if len(expected) != len(actual):
        return float("inf")
    worst = 0.0
    for want, got in zip(expected, actual, strict=True):
        if want.shape != got.shape or not np.isfinite(got).all():
            return float("inf")
        worst = max(worst, float(np.abs(want - got).max(initial=0.0)))
    return worst
