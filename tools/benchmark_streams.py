"""Many live streams on one model at once, as serve.py decodes them: throughput and latency.

    python tools/benchmark_streams.py --model=exports/demo --backend=onnx --streams=1,2,4,8,16

N streams read the manifest's utterances (dealt round-robin, back to back), a --chunk_ms
chunk per stream per round, every round decoded together: one batched encoder call, and
search calls shared across streams or one per stream (--compare_unshared). The decode flags
(--beam_size, ...) and --lm / --hotwords apply to every stream. Prints a table and writes JSON
(default benchmarks/streams-<model>-<backend>.json).
"""

from __future__ import annotations

import json
from pathlib import Path

from absl import flags

from rnnt import atomic, cli, streams_benchmark
from rnnt.benchmark import format_table, host_description
from rnnt.corpus import read_corpus
from rnnt.flags import define_runtime_flags, live_configs_from_flags
from rnnt.fusion import Fusion

RUNTIME = define_runtime_flags("exports/demo")
_MANIFEST = flags.DEFINE_string("manifest", "datasets/demo/test", "utterances the streams read")
_MAX_UTTERANCES = flags.DEFINE_integer("max_utterances", 64, "read the first N utterances", lower_bound=1)
_STREAMS = flags.DEFINE_list("streams", ["1", "2", "4", "8", "16"], "stream counts to measure")
_COMPARE = flags.DEFINE_bool("compare_unshared", True, "also measure one search call per stream")
_REPEATS = flags.DEFINE_integer("repeats", 3, "interleaved repeats of every setting", lower_bound=1)
_OUTPUT = flags.DEFINE_string("output", "", "JSON path (default benchmarks/streams-<model>-<backend>.json)")

COLUMNS = (
    ("streams", "streams", "{}"),
    ("share_search", "shared search", "{}"),
    ("audio_s_per_s", "x real time (all)", "{:.1f}"),
    ("per_stream_x_real_time", "x real time (each)", "{:.1f}"),
    ("round_ms_median", "round ms", "{:.2f}"),
    ("round_ms_p95", "round p95 ms", "{:.2f}"),
)


def main(argv: list[str]) -> None:
    del argv  # positional arguments are refused by cli.run
    model = RUNTIME.load()
    config, decode, fusion = live_configs_from_flags(model)
    rate = model.features.sample_rate
    utterances = [u.load(rate) for u in read_corpus(_MANIFEST.value)[: _MAX_UTTERANCES.value]]
    counts = sorted({int(n) for n in _STREAMS.value})
    if not counts or counts[0] < 1:
        raise ValueError(f"--streams must be positive counts, got {_STREAMS.value}")
    settings = [streams_benchmark.StreamsSetting(n, True) for n in counts]
    if _COMPARE.value:
        settings += [streams_benchmark.StreamsSetting(n, False) for n in counts if n > 1]
    results = streams_benchmark.run_interleaved(
        model, config, utterances, settings, _REPEATS.value, decode, fusion
    )
    rows = sorted((r.row() for r in results), key=lambda row: (row["streams"], not row["share_search"]))
    print(format_table(rows, COLUMNS))
    host = host_description()
    audio_s = sum(len(u) for u in utterances) / rate
    print(
        f"{RUNTIME.backend.value} {RUNTIME.precision.value}, {len(utterances)} utterances "
        f"({audio_s:.0f} s) x {_REPEATS.value} repeats, {config.chunk_ms:.0f} ms chunks, "
        f"beam {decode.beam_size}{fusion_note(fusion)}; host: {host}"
    )
    name = f"streams-{Path(RUNTIME.model.value).stem}-{RUNTIME.backend.value}-{RUNTIME.precision.value}"
    name += f"-beam{decode.beam_size}" if decode.beam_size > 1 else ""
    output = Path(_OUTPUT.value or Path("benchmarks") / f"{name}.json")
    summary = {
        "model": RUNTIME.model.value,
        "backend": RUNTIME.backend.value,
        "precision": RUNTIME.precision.value,
        "chunk_ms": config.chunk_ms,
        "beam_size": decode.beam_size,
        "lm": fusion.lm is not None,
        "hotwords": 0 if fusion.hotwords is None else len(fusion.hotwords.phrases),
        "utterances": len(utterances),
        "audio_s": audio_s,
        "repeats": _REPEATS.value,
        "host": host,
        "rows": rows,
    }
    atomic.write_text(output, json.dumps(summary, indent=1) + "\n")
    print(f"wrote {output}")


def fusion_note(fusion: Fusion) -> str:
    lm = ", LM" if fusion.lm is not None else ""
    return lm + (f", {len(fusion.hotwords.phrases)} hotwords" if fusion.hotwords is not None else "")


if __name__ == "__main__":
    cli.run(main)
