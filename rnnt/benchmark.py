"""Streaming speed and accuracy of one model on several runtimes, measured in one run.

Every variant (backend x precision) decodes the same utterances through the same
`StreamingRecognizer`, interleaved utterance by utterance so that a noisy, shared machine
slows all variants alike. A timing proxy around the runtime splits the time into encoder,
predictor and joint calls; the time of each `accept` call is a chunk's latency from its
arrival to its caption. Torch-free unless a variant uses the torch backend.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from rnnt.config import DecodeConfig, ModelConfig, StreamConfig
from rnnt.decoding import Runtime
from rnnt.runtimes import GRAPHS, LoadedModel, graph_file, load_model
from rnnt.scoring import error_rates
from rnnt.state import LstmState
from rnnt.streaming import StreamingRecognizer

BYTES_PER_PARAMETER = {"fp32": 4, "bf16": 2, "int8": 1}  # weight bytes an encoder call must read
COPY_BYTES = 256 << 20  # array size for the memory bandwidth probe (far larger than any cache)
CACHE_COPY_BYTES = 4 << 20  # array size for the cache bandwidth probe (fits a last-level cache)
PERCENTILE_HIGH = 95
T = TypeVar("T")


class TimedRuntime:
    """A `Runtime` that records the wall time of every call, by method."""

    def __init__(self, runtime: Runtime):
        self.inner = runtime
        self.time_reduction = runtime.time_reduction
        self.calls: dict[str, list[float]] = defaultdict(list)

    def _timed(self, name: str, function: Callable[..., T], *args: Any) -> T:
        start = time.perf_counter()
        result = function(*args)
        self.calls[name].append(time.perf_counter() - start)
        return result

    def init_encoder_state(self, batch_size: int) -> LstmState:
        return self.inner.init_encoder_state(batch_size)

    def init_predictor_state(self, batch_size: int) -> LstmState:
        return self.inner.init_predictor_state(batch_size)

    def encode(self, features: np.ndarray, state: LstmState) -> tuple[np.ndarray, LstmState]:
        return self._timed("encoder", self.inner.encode, features, state)

    def predict(self, tokens: np.ndarray, state: LstmState) -> tuple[np.ndarray, LstmState]:
        return self._timed("predictor", self.inner.predict, tokens, state)

    def join(self, encoder_out: np.ndarray, predictor_out: np.ndarray) -> np.ndarray:
        return self._timed("joint", self.inner.join, encoder_out, predictor_out)


@dataclass
class Variant:
    """One backend and precision of the model, with what it measured."""

    backend: str
    precision: str
    loaded: LoadedModel
    timed: TimedRuntime
    recognizer: StreamingRecognizer
    chunk_latency_s: list[float] = field(default_factory=list)
    busy_s: float = 0.0
    audio_s: float = 0.0
    transcripts: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.backend} {self.precision}"


def open_variant(
    model_path: Path, backend: str, precision: str, stream: StreamConfig, decode: DecodeConfig, threads: int
) -> Variant:
    loaded = load_model(model_path, backend, precision, threads)
    timed = TimedRuntime(loaded.runtime)
    loaded.runtime = timed
    return Variant(backend, precision, loaded, timed, StreamingRecognizer(loaded, stream, decode))


def stream_utterance(variant: Variant, samples: np.ndarray, chunk_samples: int) -> None:
    """Feed one utterance as a live stream would, timing each chunk's arrival -> events."""
    finals, busy = [], 0.0
    for start in range(0, len(samples), chunk_samples):
        began = time.perf_counter()
        events = variant.recognizer.accept(samples[start : start + chunk_samples])
        took = time.perf_counter() - began
        variant.chunk_latency_s.append(took)
        busy += took
        finals += [e.text for e in events if e.kind == "final"]
    began = time.perf_counter()
    finals += [e.text for e in variant.recognizer.finish() if e.kind == "final"]
    variant.busy_s += busy + time.perf_counter() - began
    variant.audio_s += len(samples) / variant.loaded.features.sample_rate
    variant.transcripts.append(" ".join(finals))


def run_interleaved(variants: Sequence[Variant], utterances: Sequence[np.ndarray], chunk_ms: float) -> None:
    for samples in utterances:
        for variant in variants:
            chunk_samples = round(chunk_ms * variant.loaded.features.sample_rate / 1000)
            stream_utterance(variant, samples, chunk_samples)


@dataclass(frozen=True)
class Bandwidth:
    """Bytes per second this machine moves from memory and from its last-level cache."""

    memory: float
    cache: float

    @classmethod
    def measure(cls) -> Bandwidth:
        return cls(
            copy_bandwidth_bytes_per_s(COPY_BYTES, 5), copy_bandwidth_bytes_per_s(CACHE_COPY_BYTES, 50)
        )


def copy_bandwidth_bytes_per_s(size_bytes: int, repeats: int) -> float:
    """Read + write bandwidth of the fastest of `repeats` copies of a `size_bytes` array."""
    source = np.ones(size_bytes // 4, dtype=np.float32)
    target = np.empty_like(source)
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(target, source)
        best = min(best, time.perf_counter() - start)
    return 2 * size_bytes / best


def model_bytes(model_path: Path, backend: str, precision: str) -> int:
    """Bytes on disk of the three graphs (checkpoint size for torch)."""
    if model_path.is_file():
        return model_path.stat().st_size
    total = 0
    for graph in GRAPHS:
        path = graph_file(model_path, backend, graph, precision)
        total += path.stat().st_size
        if path.suffix == ".xml":
            total += path.with_suffix(".bin").stat().st_size
    return total


def encoder_parameters(config: ModelConfig) -> int:
    """Weights of the encoder (biases and norms ignored)."""
    hidden, layers = config.encoder_hidden, config.encoder_layers
    recurrent = 4 * hidden * (config.input_dim + hidden) + (layers - 1) * 4 * hidden * 2 * hidden
    return recurrent + hidden * config.encoder_output


def encoder_step_floor_ms(
    config: ModelConfig, chunk_frames: int, bytes_per_parameter: int, bandwidth: Bandwidth
) -> float:
    """Least time for one chunk when each layer's recurrent matrix (4H x H) is read once per
    time step from the last-level cache (a batch-1 LSTM cannot reuse it across steps, and a
    4H x H fp32 matrix does not fit the per-core caches), and every other weight once from
    memory."""
    hidden = config.encoder_hidden
    steps = [
        chunk_frames if layer < config.reduction_after else chunk_frames // config.time_reduction
        for layer in range(config.encoder_layers)
    ]
    recurrent = 4 * hidden * hidden
    once = encoder_parameters(config) - recurrent * config.encoder_layers
    seconds = (once / bandwidth.memory + recurrent * sum(steps) / bandwidth.cache) * bytes_per_parameter
    return 1000 * seconds


def summarize(
    variant: Variant, references: Sequence[str] | None, bandwidth: Bandwidth, size_bytes: int, chunk_ms: float
) -> dict[str, float | str | None]:
    """One table row: accuracy, per-call times, throughput, latency, size, floors."""
    calls = {name: 1000 * np.asarray(times) for name, times in variant.timed.calls.items()}
    encoder_ms = calls.get("encoder", np.zeros(1))
    config, weight_bytes = variant.loaded.model, BYTES_PER_PARAMETER[variant.precision]
    floor_ms = 1000 * encoder_parameters(config) * weight_bytes / bandwidth.memory
    chunk_frames = variant.recognizer.chunk_frames
    step_floor_ms = encoder_step_floor_ms(config, chunk_frames, weight_bytes, bandwidth)
    wer = error_rates(references, variant.transcripts).wer if references else None
    return {
        "runtime": variant.backend,
        "precision": variant.precision,
        "wer_percent": None if wer is None else round(100 * wer, 2),
        "encoder_ms_median": round(float(np.median(encoder_ms)), 3),
        "encoder_ms_p95": round(float(np.percentile(encoder_ms, PERCENTILE_HIGH)), 3),
        "predictor_ms_median": round(float(np.median(calls.get("predictor", np.zeros(1)))), 3),
        "joint_ms_median": round(float(np.median(calls.get("joint", np.zeros(1)))), 3),
        "predictor_calls": len(calls.get("predictor", [])),
        "joint_calls": len(calls.get("joint", [])),
        "audio_s_per_s": round(variant.audio_s / variant.busy_s, 2),
        "real_time_factor": round(variant.busy_s / variant.audio_s, 4),
        "chunk_latency_ms_p95": round(
            1000 * float(np.percentile(variant.chunk_latency_s, PERCENTILE_HIGH)), 2
        ),
        "chunk_ms": chunk_ms,
        "size_mb": round(size_bytes / 1e6, 2),
        "encoder_floor_ms": round(floor_ms, 3),
        "encoder_x_floor": round(float(np.median(encoder_ms)) / floor_ms, 2),
        "encoder_step_floor_ms": round(step_floor_ms, 3),
        "encoder_x_step_floor": round(float(np.median(encoder_ms)) / step_floor_ms, 2),
    }
