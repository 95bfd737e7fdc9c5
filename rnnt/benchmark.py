"""Streaming speed and accuracy of one model on several runtimes, measured in one run.

Every variant (backend x precision) decodes the same utterances through the same
`StreamingRecognizer`, interleaved utterance by utterance so that a noisy, shared machine
slows all variants alike. A timing proxy around the runtime splits the time into encoder,
predictor and joint calls; the time of each `accept` call is a chunk's latency from its
arrival to its caption. Torch-free unless a variant uses the torch backend.
"""

from __future__ import annotations

import os
import platform
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from rnnt.config import DecodeConfig, ModelConfig, StreamConfig
from rnnt.hypothesis import Runtime
from rnnt.runtimes import GRAPHS, LoadedModel, graph_file, load_model
from rnnt.runtimes.ov import computes_natively
from rnnt.scoring import error_rates
from rnnt.state import LstmState
from rnnt.streaming import StreamingRecognizer

BYTES_PER_PARAMETER = {"fp32": 4, "bf16": 2, "int8": 1}  # weight bytes an encoder call must read
MEMORY_PROBE_BYTES = 256 << 20  # matrix size for the memory bandwidth probe (far larger than any cache)
PROBE_COLUMNS = 1024
PERCENTILE_HIGH = 95
FLOOR_DIGITS = 4  # significant figures of the floor columns
# Pause before each variant's utterance: ONNX Runtime's idle workers spin after a call, and
# the next variant's first chunks would pay for it (OpenVINO's E6D2 encoder p95: 70.6 ms
# interleaved with ONNX Runtime, 41.5 ms streamed alone).
SETTLE_S = 0.1
T = TypeVar("T")


class TimedRuntime:
    """A `Runtime` that records the wall time of every call, by method."""

    def __init__(self, runtime: Runtime):
        self.inner = runtime
        self.time_reduction = runtime.time_reduction
        self.has_ctc = runtime.has_ctc
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

    def encode_with_ctc(
        self, features: np.ndarray, state: LstmState
    ) -> tuple[np.ndarray, np.ndarray, LstmState]:
        return self._timed("encoder", self.inner.encode_with_ctc, features, state)

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
    utterance_busy_s: list[float] = field(default_factory=list)  # each utterance's decoding time
    transcripts: list[str] = field(default_factory=list)
    load_s: float = 0.0  # `load_model`'s time, its warm-up call of each network included
    first_encoder_call_s: float = 0.0  # the freshly loaded model's first encoder call

    def clear(self) -> None:
        """Forget what was measured so far (a warm-up's calls)."""
        self.timed.calls.clear()
        self.chunk_latency_s.clear()
        self.utterance_busy_s.clear()
        self.transcripts.clear()
        self.busy_s = self.audio_s = 0.0

    @property
    def name(self) -> str:
        return f"{self.backend} {self.precision}"


def open_variant(
    model_path: Path, backend: str, precision: str, stream: StreamConfig, decode: DecodeConfig, threads: int
) -> Variant:
    began = time.perf_counter()
    loaded = load_model(model_path, backend, precision, threads)
    load_s = time.perf_counter() - began
    timed = TimedRuntime(loaded.runtime)
    loaded.runtime = timed
    recognizer = StreamingRecognizer(loaded, stream, decode)
    return Variant(backend, precision, loaded, timed, recognizer, load_s=load_s)


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
    busy += time.perf_counter() - began
    variant.busy_s += busy
    variant.utterance_busy_s.append(busy)
    variant.audio_s += len(samples) / variant.loaded.features.sample_rate
    variant.transcripts.append(" ".join(finals))


def run_interleaved(variants: Sequence[Variant], utterances: Sequence[np.ndarray], chunk_ms: float) -> None:
    """Decode every utterance with each variant in turn, after one warm-up utterance each.

    The warm-up is not counted: a model's first calls pay for one-off set-up (`load_model`
    runs each network once, but a new input shape still costs OpenVINO ~50 ms for E6D2's
    encoder and a static copy of the chunk's shape is compiled on its second call; before
    `load_model` warmed up, OpenVINO's first E6D2_LARGE_Batch encoder call took 285 ms, a
    fifth of its time in a 30-utterance run). It is reported on its own as
    `first_encoder_ms`, what a freshly started recogniser's first caption waits for.
    """
    for variant in variants:
        stream_utterance(variant, utterances[0], chunk_samples(variant, chunk_ms))
        variant.first_encoder_call_s = variant.timed.calls["encoder"][0]
        variant.clear()
    for samples in utterances:
        for variant in variants:
            time.sleep(SETTLE_S)
            stream_utterance(variant, samples, chunk_samples(variant, chunk_ms))


def chunk_samples(variant: Variant, chunk_ms: float) -> int:
    return round(chunk_ms * variant.loaded.features.sample_rate / 1000)


@dataclass(frozen=True)
class Bandwidth:
    """Bytes per second this machine's BLAS reads in an fp32 matrix-vector product on all
    cores: from memory (a matrix far larger than any cache) and for the encoder's recurrent
    matrix (4H x H), multiplied again and again as a batch-1 LSTM does at every time step.
    A runtime's encoder moves at least these bytes, so the times derived from them are floors.
    """

    memory: float
    recurrent: float

    @classmethod
    def measure(cls, config: ModelConfig) -> Bandwidth:
        return cls.measure_for_hidden(config.encoder_hidden)

    @classmethod
    def measure_for_hidden(cls, hidden: int) -> Bandwidth:
        """The recurrent matrix of an LSTM `hidden` wide: (4 * hidden) x hidden."""
        return cls(
            matvec_bytes_per_s(MEMORY_PROBE_BYTES // (4 * PROBE_COLUMNS), PROBE_COLUMNS, 5),
            matvec_bytes_per_s(4 * hidden, hidden, 200),
        )


def matvec_bytes_per_s(rows: int, columns: int, repeats: int) -> float:
    """Matrix bytes per second of the fastest of `repeats` (rows x columns) fp32 products."""
    matrix = np.ones((rows, columns), dtype=np.float32)
    vector = np.ones(columns, dtype=np.float32)
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        matrix @ vector
        best = min(best, time.perf_counter() - start)
    return matrix.nbytes / best


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
    """Least time for one chunk: a batch-1 LSTM multiplies each layer's recurrent matrix
    (4H x H) by its state once per time step, one step after another, and reads every other
    weight once from memory. Lower precisions are assumed to move their fewer bytes at the
    fp32 rate."""
    hidden = config.encoder_hidden
    steps = [
        chunk_frames if layer < config.reduction_after else chunk_frames // config.time_reduction
        for layer in range(config.encoder_layers)
    ]
    once = encoder_parameters(config) - 4 * hidden * hidden * config.encoder_layers
    return lstm_step_floor_ms(hidden, sum(steps), once, bytes_per_parameter, bandwidth)


def lstm_step_floor_ms(
    hidden: int, recurrent_steps: int, other_parameters: int, bytes_per_parameter: int, bandwidth: Bandwidth
) -> float:
    """`recurrent_steps` products of a (4H x H) recurrent matrix with a state, summed over the
    layers, at the cache-hot rate, plus `other_parameters` weights read once from memory."""
    recurrent = 4 * hidden * hidden
    seconds = other_parameters / bandwidth.memory + recurrent * recurrent_steps / bandwidth.recurrent
    return 1000 * seconds * bytes_per_parameter


def reference_variant(variants: Sequence[Variant]) -> Variant:
    """The variant the others' paired speed is relative to: ONNX Runtime fp32, else the first."""
    return next((v for v in variants if (v.backend, v.precision) == ("onnx", "fp32")), variants[0])


def paired_speed(variant: Variant, reference: Variant) -> float:
    """The median over utterances of `reference`'s time / `variant`'s time (> 1: faster).

    Every variant decodes an utterance right after the others (`run_interleaved`), so each
    ratio compares the two at one moment of the machine; throughput over the whole run also
    carries the machine's swings (this 2-core VM's memory bandwidth moved 38-70 GB/s within
    20 minutes) and whichever variant they hit harder.
    """
    ratios = np.asarray(reference.utterance_busy_s) / np.asarray(variant.utterance_busy_s)
    return round(float(np.median(ratios)), 3)


def summarize(
    variant: Variant,
    references: Sequence[str] | None,
    bandwidth: Bandwidth,
    size_bytes: int,
    chunk_ms: float,
    reference: Variant,
) -> dict[str, float | str | None]:
    """One table row: accuracy, per-call times, throughput, paired speed against
    `reference`, latency, size, floors."""
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
        # False for OpenVINO bf16 on a CPU without bf16 units: its speed is the emulation's.
        "native_precision": variant.backend != "openvino" or computes_natively(variant.precision),
        "wer_percent": None if wer is None else round(100 * wer, 2),
        "encoder_ms_median": round(float(np.median(encoder_ms)), 3),
        "encoder_ms_p95": round(float(np.percentile(encoder_ms, PERCENTILE_HIGH)), 3),
        "predictor_ms_median": round(float(np.median(calls.get("predictor", np.zeros(1)))), 3),
        "joint_ms_median": round(float(np.median(calls.get("joint", np.zeros(1)))), 3),
        "predictor_calls": len(calls.get("predictor", [])),
        "joint_calls": len(calls.get("joint", [])),
        "audio_s_per_s": round(variant.audio_s / variant.busy_s, 2),
        "real_time_factor": round(variant.busy_s / variant.audio_s, 4),
        "speed_vs_reference": paired_speed(variant, reference),
        "chunk_latency_ms_p95": round(
            1000 * float(np.percentile(variant.chunk_latency_s, PERCENTILE_HIGH)), 2
        ),
        "first_encoder_ms": round(1000 * variant.first_encoder_call_s, 1),
        "load_s": round(variant.load_s, 2),
        "chunk_ms": chunk_ms,
        "size_mb": round(size_bytes / 1e6, 2),
        # Significant figures, not decimals: a tiny model's floor on a fast host is under 1 us.
        "encoder_floor_ms": float(f"{floor_ms:.{FLOOR_DIGITS}g}"),
        "encoder_x_floor": round(float(np.median(encoder_ms)) / floor_ms, 2),
        "encoder_step_floor_ms": float(f"{step_floor_ms:.{FLOOR_DIGITS}g}"),
        "encoder_x_step_floor": round(float(np.median(encoder_ms)) / step_floor_ms, 2),
    }


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str, str]]) -> str:
    """Rows as right-aligned text columns; `columns` are (row key, header, format) and a
    missing value (None) shows as "-"."""
    cells = [
        [fmt.format(row[key]) if row[key] is not None else "-" for key, _, fmt in columns] for row in rows
    ]
    headers = [header for _, header, _ in columns]
    widths = [max(len(line[i]) for line in [headers, *cells]) for i in range(len(columns))]
    return "\n".join(
        "  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in [headers, *cells]
    )


# The instruction sets these runtimes' kernels choose between; the figures differ ~2x across
# the hosts this project has run on, so each table and JSON names its host.
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile")


def host_description() -> str:
    """CPU model, the ISA_FLAGS it has, and its logical cores (from /proc/cpuinfo on Linux).

    Not `rnnt.device.describe_device`, the training log's line: that one asks torch, and this
    tool benchmarks the deployed runtimes without importing torch when their export exists.
    """
    model, flags_present = platform.processor() or platform.machine(), []
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        lines = cpuinfo.read_text().splitlines()[:64]  # the first processor's block
        fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in lines if ":" in line)}
        model = fields.get("model name", model)
        flags_present = [f for f in ISA_FLAGS if f in fields.get("flags", "").split()]
    return f"{model} ({', '.join(flags_present) or 'no AVX2'}), {os.cpu_count()} logical cores"
