"""How fast a batch-1 LSTM stack runs on this machine today, beside a real export's encoder.

Issue 3 set its speed targets from "a plain 6x1024 LSTM without the time reduction",
measured at ~38x real time fp32 (ONNX Runtime and OpenVINO) and ~140x int8 on 600 ms
chunks. This tool rebuilds that stack (random weights; 240 inputs, the reference's 80 mels
x 3 stacked; 10 frames of 60 ms per 600 ms chunk), exports it to ONNX, ONNX Runtime int8
and OpenVINO IR the way `export_onnx.py` does, and times one chunk per call on each
runtime. With --export_dir it times that export's encoder in the same rounds, so both are
measured under the same load; the rounds take turns and pause as `tools/benchmark.py` does.

    python tools/lstm_calibration.py --export_dir=benchmarks/E6D2_LARGE_Batch/export

Prints a table and writes JSON (default benchmarks/lstm_calibration.json).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from absl import app, flags

from rnnt import atomic, benchmark, cli
from rnnt.runtimes import load_model
from rnnt.state import LstmState

_LAYERS = flags.DEFINE_integer("layers", 6, "LSTM layers of the plain stack")
_HIDDEN = flags.DEFINE_integer("hidden", 1024, "LSTM width of the plain stack")
_INPUT_DIM = flags.DEFINE_integer("input_dim", 240, "input features per frame")
_CHUNK_FRAMES = flags.DEFINE_integer("chunk_frames", 10, "frames per chunk")
_FRAME_MS = flags.DEFINE_float("frame_ms", 60.0, "audio per frame (60: 20 ms hop x 3 stacked)")
_EXPORT_DIR = flags.DEFINE_string("export_dir", "", "also time this export's encoder (same chunk)")
_ROUNDS = flags.DEFINE_integer("rounds", 40, "rounds; each variant streams --chunks_per_round per round")
_CHUNKS_PER_ROUND = flags.DEFINE_integer("chunks_per_round", 5, "consecutive chunks, state carried")
_THREADS = flags.DEFINE_integer("threads", 0, "threads per runtime (0: one per core)")
_WORK_DIR = flags.DEFINE_string("work_dir", "benchmarks/lstm_calibration", "where the stack's graphs go")
_OUTPUT = flags.DEFINE_string("output", "benchmarks/lstm_calibration.json", "JSON path")

Step = Callable[[np.ndarray, LstmState], LstmState]


@dataclass
class Timed:
    name: str
    runtime: str
    precision: str
    step: Step
    state: LstmState
    input_dim: int
    floor_ms: float
    seconds: list[float] = field(default_factory=list)


def export_plain_stack(work_dir: Path) -> Path:
    """`plain.onnx`, `plain.int8.onnx` and `plain.xml` for the stack (reused when present)."""
    onnx_path = work_dir / "plain.onnx"
    shape = [_LAYERS.value, _HIDDEN.value, _INPUT_DIM.value]
    shape_file = work_dir / "shape.json"
    if shape_file.is_file() and json.loads(shape_file.read_text()) == shape:
        return onnx_path
    import openvino
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from rnnt.export import DEFAULT_OPSET

    class Stack(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(_INPUT_DIM.value, _HIDDEN.value, _LAYERS.value, batch_first=True)

        def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
            y, (h, c) = self.lstm(x, (h, c))
            return y, h, c

    torch.manual_seed(0)
    work_dir.mkdir(parents=True, exist_ok=True)
    states = torch.zeros(_LAYERS.value, 1, _HIDDEN.value)
    torch.onnx.export(
        Stack().eval(),
        (torch.zeros(1, _CHUNK_FRAMES.value, _INPUT_DIM.value), states, states),
        str(onnx_path),
        input_names=["features", "h", "c"],
        output_names=["out", "h_out", "c_out"],
        dynamic_axes={"features": {0: "batch", 1: "time"}, "h": {1: "batch"}, "c": {1: "batch"}},
        opset_version=DEFAULT_OPSET,
        dynamo=False,
    )
    quantize_dynamic(onnx_path, work_dir / "plain.int8.onnx", weight_type=QuantType.QInt8, per_channel=True)
    openvino.save_model(
        openvino.convert_model(str(onnx_path)), str(work_dir / "plain.xml"), compress_to_fp16=False
    )
    atomic.write_text(shape_file, json.dumps(shape))
    return onnx_path


def plain_variants(work_dir: Path, bandwidth: benchmark.Bandwidth, threads: int) -> list[Timed]:
    from rnnt.runtimes.ort import cpu_session, import_onnxruntime
    from rnnt.runtimes.ov import CompiledGraph, import_openvino

    export_plain_stack(work_dir)
    layers, hidden, inputs = _LAYERS.value, _HIDDEN.value, _INPUT_DIM.value
    zeros = np.zeros((layers, 1, hidden), np.float32)
    recurrent, once = 4 * hidden * hidden, 4 * hidden * (inputs + (layers - 1) * hidden)
    seconds = once / bandwidth.memory + recurrent * layers * _CHUNK_FRAMES.value / bandwidth.recurrent

    def ort_step(path: Path) -> Step:
        session = cpu_session(import_onnxruntime(), path, threads)

        def step(x: np.ndarray, state: LstmState) -> LstmState:
            _, h, c = session.run(None, {"features": x, "h": state.h, "c": state.c})
            return LstmState(h, c)

        return step

    core = import_openvino().Core()
    graph = CompiledGraph(core, work_dir / "plain.xml", threads, ["h_out", "c_out"], "fp32")

    def ov_step(x: np.ndarray, state: LstmState) -> LstmState:
        h, c = graph({"features": x, "h": state.h, "c": state.c})
        return LstmState(h, c)

    name = f"plain {layers}x{hidden}"
    steps = (
        ("onnx", "fp32", ort_step(work_dir / "plain.onnx")),
        ("onnx", "int8", ort_step(work_dir / "plain.int8.onnx")),
        ("openvino", "fp32", ov_step),
    )
    return [
        Timed(
            name,
            runtime,
            precision,
            step,
            LstmState(zeros, zeros),
            inputs,
            1e3 * seconds * benchmark.BYTES_PER_PARAMETER[precision],
        )
        for runtime, precision, step in steps
    ]


def export_variants(export_dir: Path, bandwidth: benchmark.Bandwidth, threads: int) -> list[Timed]:
    timed = []
    for backend, precision in (("onnx", "fp32"), ("onnx", "int8"), ("openvino", "fp32")):
        loaded = load_model(export_dir, backend, precision, threads)
        runtime, config = loaded.runtime, loaded.model
        floor = benchmark.encoder_step_floor_ms(
            config, _CHUNK_FRAMES.value, benchmark.BYTES_PER_PARAMETER[precision], bandwidth
        )

        def step(x: np.ndarray, state: LstmState, encode: Callable = runtime.encode) -> LstmState:
            return encode(x, state)[1]

        name = f"{export_dir.parent.name or export_dir.name} encoder"
        timed.append(
            Timed(name, backend, precision, step, runtime.init_encoder_state(1), config.input_dim, floor)
        )
    return timed


def main(argv: list[str]) -> None:
    del argv
    threads = _THREADS.value
    bandwidth = benchmark.Bandwidth(
        benchmark.matvec_bytes_per_s(benchmark.MEMORY_PROBE_BYTES // (4 * benchmark.PROBE_COLUMNS), 1024, 5),
        benchmark.matvec_bytes_per_s(4 * _HIDDEN.value, _HIDDEN.value, 200),
    )
    variants = plain_variants(Path(_WORK_DIR.value), bandwidth, threads)
    if _EXPORT_DIR.value:
        variants += export_variants(Path(_EXPORT_DIR.value), bandwidth, threads)
    rng = np.random.default_rng(0)
    chunks = {
        v.input_dim: rng.standard_normal((1, _CHUNK_FRAMES.value, v.input_dim)).astype(np.float32)
        for v in variants
    }
    for _ in range(_ROUNDS.value):
        for variant in variants:
            time.sleep(benchmark.SETTLE_S)
            x = chunks[variant.input_dim]
            for _ in range(_CHUNKS_PER_ROUND.value):
                start = time.perf_counter()
                variant.state = variant.step(x, variant.state)
                variant.seconds.append(time.perf_counter() - start)
    chunk_ms = _CHUNK_FRAMES.value * _FRAME_MS.value
    rows = []
    for v in variants:
        ms = 1000 * np.asarray(v.seconds)
        median = float(np.median(ms))
        rows.append(
            {
                "model": v.name,
                "runtime": v.runtime,
                "precision": v.precision,
                "chunk_ms_median": round(median, 2),
                "chunk_ms_p95": round(float(np.percentile(ms, benchmark.PERCENTILE_HIGH)), 2),
                "x_real_time_encoder_only": round(chunk_ms / median, 1),
                "step_floor_ms": round(v.floor_ms, 4),
                "x_step_floor": round(median / v.floor_ms, 2),
            }
        )
    print(
        f"{'model':<28} {'runtime':<9} {'prec':<5} {'ms median':>9} {'ms p95':>7} {'x rt':>6} "
        f"{'floor ms':>8} {'x floor':>7}"
    )
    for r in rows:
        print(
            f"{r['model']:<28} {r['runtime']:<9} {r['precision']:<5} {r['chunk_ms_median']:>9.2f} "
            f"{r['chunk_ms_p95']:>7.2f} {r['x_real_time_encoder_only']:>6.1f} {r['step_floor_ms']:>8.2f} "
            f"{r['x_step_floor']:>7.2f}"
        )
    print(
        f"{chunk_ms:.0f} ms chunks of {_CHUNK_FRAMES.value} frames; fp32 matrix-vector bandwidth: memory "
        f"{bandwidth.memory / 1e9:.1f} GB/s, recurrent matrix {bandwidth.recurrent / 1e9:.1f} GB/s"
    )
    # Each variant ran the same chunks: its fp32 runtimes must end in the same state.
    differences = {
        name: float(np.abs(np.stack([v.state.h for v in group]) - group[0].state.h).max())
        for name in {v.name for v in variants}
        if (group := [v for v in variants if v.name == name and v.precision == "fp32"])
    }
    print(
        "fp32 runtimes' final states, max abs difference: "
        + ", ".join(f"{k} {d:.1e}" for k, d in differences.items())
    )
    result = {
        "chunk_ms": chunk_ms,
        "fp32_state_max_abs_difference": differences,
        "memory_bandwidth_gb_s": round(bandwidth.memory / 1e9, 2),
        "recurrent_bandwidth_gb_s": round(bandwidth.recurrent / 1e9, 2),
        "rows": rows,
    }
    atomic.write_text(Path(_OUTPUT.value), json.dumps(result, indent=1) + "\n")
    print(f"wrote {_OUTPUT.value}")


if __name__ == "__main__":
    app.run(cli.guarded(main))
