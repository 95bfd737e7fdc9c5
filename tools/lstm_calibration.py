"""Time the issue's calibration stack (a plain 6x1024 LSTM) beside an export's encoder.

Issue 3 set its speed targets from "a plain 6x1024 LSTM without the time reduction",
measured at ~38x real time fp32 (ONNX Runtime and OpenVINO) and ~140x int8 on 600 ms chunks.
This rebuilds that stack with random weights (240 inputs: the reference's 80 mels x 3
stacked; 10 frames of 60 ms per chunk) and times it on each runtime; with --export_dir, that
export's encoder takes turns with it (`rnnt.calibration`).

    python tools/lstm_calibration.py --export_dir=benchmarks/E6D2_LARGE_Batch/export

Prints a table and writes JSON (default benchmarks/lstm_calibration.json).
"""

from __future__ import annotations

import json
from pathlib import Path

from absl import flags

from rnnt import atomic, benchmark, calibration, cli

_LAYERS = flags.DEFINE_integer("layers", 6, "LSTM layers of the plain stack")
_HIDDEN = flags.DEFINE_integer("hidden", 1024, "LSTM width of the plain stack")
_INPUT_DIM = flags.DEFINE_integer("input_dim", 240, "input features per frame")
_CHUNK_FRAMES = flags.DEFINE_integer("chunk_frames", 10, "frames per chunk")
_FRAME_MS = flags.DEFINE_float("frame_ms", 60.0, "audio per frame (60: 20 ms hop x 3 stacked)")
_EXPORT_DIR = flags.DEFINE_string("export_dir", "", "also time this export's encoder (same chunk)")
_ROUNDS = flags.DEFINE_integer("rounds", 40, "rounds; each encoder steps --chunks_per_round per round")
_CHUNKS_PER_ROUND = flags.DEFINE_integer("chunks_per_round", 5, "consecutive chunks, state carried")
_THREADS = flags.DEFINE_integer("threads", 0, "threads per runtime (0: one per core)")
_WORK_DIR = flags.DEFINE_string("work_dir", "benchmarks/lstm_calibration", "where the stack's graphs go")
_OUTPUT = flags.DEFINE_string("output", "benchmarks/lstm_calibration.json", "JSON path")

COLUMNS = (
    ("model", "model", "{}"),
    ("runtime", "runtime", "{}"),
    ("precision", "prec", "{}"),
    ("chunk_ms_median", "ms median", "{:.2f}"),
    ("chunk_ms_p95", "ms p95", "{:.2f}"),
    ("x_real_time_encoder_only", "x rt", "{:.1f}"),
    ("step_floor_ms", "floor ms", "{:.2f}"),
    ("x_step_floor", "x floor", "{:.2f}"),
)


def main(argv: list[str]) -> None:
    del argv  # positional arguments are refused by cli.run
    shape = calibration.StackShape(_LAYERS.value, _HIDDEN.value, _INPUT_DIM.value, _CHUNK_FRAMES.value)
    bandwidth = benchmark.Bandwidth.measure_for_hidden(shape.hidden)
    encoders = calibration.plain_stack_encoders(shape, Path(_WORK_DIR.value), bandwidth, _THREADS.value)
    if _EXPORT_DIR.value:
        encoders += calibration.exported_encoders(
            Path(_EXPORT_DIR.value), shape.chunk_frames, bandwidth, _THREADS.value
        )
    calibration.time_rounds(encoders, shape.chunk_frames, _ROUNDS.value, _CHUNKS_PER_ROUND.value)
    chunk_ms = shape.chunk_frames * _FRAME_MS.value
    rows = [calibration.summarize(encoder, chunk_ms) for encoder in encoders]
    differences = calibration.fp32_state_differences(encoders)
    print(benchmark.format_table(rows, COLUMNS))
    print(
        f"{chunk_ms:.0f} ms chunks of {shape.chunk_frames} frames; fp32 matrix-vector bandwidth: memory "
        f"{bandwidth.memory / 1e9:.1f} GB/s, recurrent matrix {bandwidth.recurrent / 1e9:.1f} GB/s"
    )
    print(
        "fp32 runtimes' final states, max abs difference: "
        + ", ".join(f"{k} {d:.1e}" for k, d in differences.items())
    )
    result = {
        "chunk_ms": chunk_ms,
        "memory_bandwidth_gb_s": round(bandwidth.memory / 1e9, 2),
        "recurrent_bandwidth_gb_s": round(bandwidth.recurrent / 1e9, 2),
        "fp32_state_max_abs_difference": differences,
        "rows": rows,
    }
    atomic.write_text(Path(_OUTPUT.value), json.dumps(result, indent=1) + "\n")
    print(f"wrote {_OUTPUT.value}")


if __name__ == "__main__":
    cli.run(main)
