"""Many live streams on one model at once, as the caption server decodes them.

Each of N streams reads its own recordings back to back (utterances dealt round-robin), a
chunk per round, and every round decodes all streams' chunks together (`decode_chunks`):
one batched encoder call, and search calls shared across streams or (for comparison) one
per stream. Reported per configuration: aggregate throughput (audio seconds decoded per
second, over all streams), and the round time, which is each stream's latency from its
chunk's arrival to its caption. Configurations run interleaved, repeat by repeat.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from rnnt.config import DecodeConfig, StreamConfig
from rnnt.fusion import NO_FUSION, Fusion
from rnnt.runtimes import LoadedModel
from rnnt.streaming import StreamingRecognizer, decode_chunks

PERCENTILE_HIGH = 95


@dataclass(frozen=True)
class StreamsSetting:
    streams: int
    share_search: bool


@dataclass
class StreamsResult:
    setting: StreamsSetting
    audio_s: float = 0.0  # audio decoded, summed over streams and repeats
    wall_s: float = 0.0  # time spent decoding it
    round_ms: list[float] = field(default_factory=list)  # every round's wall time

    def row(self) -> dict[str, float | int | bool]:
        rounds = np.array(self.round_ms or [0.0])
        return {
            "streams": self.setting.streams,
            "share_search": self.setting.share_search,
            "audio_s_per_s": self.audio_s / max(self.wall_s, 1e-9),
            "per_stream_x_real_time": self.audio_s / max(self.wall_s, 1e-9) / self.setting.streams,
            "round_ms_median": float(np.median(rounds)),
            "round_ms_p95": float(np.percentile(rounds, PERCENTILE_HIGH)),
        }


def stream_audio(utterances: Sequence[np.ndarray], streams: int) -> list[np.ndarray]:
    """Stream i's audio: utterances i, i + N, i + 2N, ... back to back."""
    return [np.concatenate(list(utterances[i::streams]) or [np.zeros(0, np.float32)]) for i in range(streams)]


def run_setting(
    model: LoadedModel,
    config: StreamConfig,
    audio: Sequence[np.ndarray],
    result: StreamsResult,
    decode: DecodeConfig | None = None,
    fusion: Fusion = NO_FUSION,
) -> None:
    """Decode `audio` (one array per stream) a chunk per stream per round; add to `result`.

    `decode` (default: the model's) and `fusion` (LM, hotwords) are every stream's.
    """
    recognizers = [StreamingRecognizer(model, config, decode, fusion) for _ in audio]
    rate = model.features.sample_rate
    chunk = max(1, round(config.chunk_ms * rate / 1000))  # samples a stream delivers per round
    started = time.perf_counter()
    for start in range(0, max(len(a) for a in audio), chunk):
        pieces = [a[start : start + chunk] for a in audio]
        before = time.perf_counter()
        decode_chunks(recognizers, pieces, result.setting.share_search)
        result.round_ms.append(1000 * (time.perf_counter() - before))
    for recognizer in recognizers:
        recognizer.finish()
    result.wall_s += time.perf_counter() - started
    result.audio_s += sum(len(a) for a in audio) / rate


def run_interleaved(
    model: LoadedModel,
    config: StreamConfig,
    utterances: Sequence[np.ndarray],
    settings: Sequence[StreamsSetting],
    repeats: int,
    decode: DecodeConfig | None = None,
    fusion: Fusion = NO_FUSION,
) -> list[StreamsResult]:
    """Every setting `repeats` times, in rotating order, on the same utterances (`run_setting`)."""
    results = [StreamsResult(setting) for setting in settings]
    for repeat in range(repeats):
        shift = repeat % len(results)
        for result in results[shift:] + results[:shift]:
            audio = stream_audio(utterances, result.setting.streams)
            run_setting(model, config, audio, result, decode, fusion)
    return results
