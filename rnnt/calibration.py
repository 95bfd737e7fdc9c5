"""How fast a plain batch-1 LSTM stack runs on this machine, beside a real export's encoder.

Issue 3 set its speed targets from "a plain 6x1024 LSTM without the time reduction" on
600 ms chunks. `export_plain_stack` builds such a stack (random weights) and exports it the
way `rnnt.export` exports a model (ONNX, ONNX Runtime int8, OpenVINO IR); `time_rounds`
times one chunk per call on every runtime, the variants taking turns and pausing before
each turn as `rnnt.benchmark.run_interleaved` does, so that all are measured under the same
load. Speeds are reported against the step floor (`rnnt.benchmark.encoder_step_floor_ms`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rnnt import atomic, benchmark
from rnnt.runtimes import load_model
from rnnt.state import LstmState

PLAIN_GRAPHS = {"fp32": "plain.onnx", "int8": "plain.int8.onnx", "openvino": "plain.xml"}

Step = Callable[[np.ndarray, LstmState], LstmState]


@dataclass(frozen=True)
class StackShape:
    layers: int  # LSTM layers
    hidden: int  # LSTM width
    input_dim: int  # features per frame
    chunk_frames: int  # frames per chunk


@dataclass
class TimedEncoder:
    """One encoder on one runtime: a chunk step, its carried state, the seconds per call."""

    model: str
    runtime: str
    precision: str
    step: Step
    state: LstmState
    input_dim: int
    step_floor_ms: float
    seconds: list[float] = field(default_factory=list)


def export_plain_stack(shape: StackShape, work_dir: Path) -> None:
    """The stack's three graphs in `work_dir` (kept while `shape` is unchanged)."""
    shape_file = work_dir / "shape.json"
    # The quantisation is part of the key: graphs cached before its 7-bit weights are rebuilt.
    described = json.dumps([shape.layers, shape.hidden, shape.input_dim, "int8 reduce_range"])
    if shape_file.is_file() and shape_file.read_text() == described:
        return
    import torch

    from rnnt.export import DEFAULT_OPSET, quantize_int8
    from rnnt.runtimes.ov import import_openvino

    class Stack(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(shape.input_dim, shape.hidden, shape.layers, batch_first=True)

        def forward(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, ...]:
            y, (h, c) = self.lstm(x, (h, c))
            return y, h, c

    torch.manual_seed(0)
    work_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = work_dir / PLAIN_GRAPHS["fp32"]
    states = torch.zeros(shape.layers, 1, shape.hidden)
    torch.onnx.export(
        Stack().eval(),
        (torch.zeros(1, shape.chunk_frames, shape.input_dim), states, states),
        str(onnx_path),
        input_names=["features", "h", "c"],
        output_names=["out", "h_out", "c_out"],
        dynamic_axes={"features": {0: "batch", 1: "time"}, "h": {1: "batch"}, "c": {1: "batch"}},
        opset_version=DEFAULT_OPSET,
        dynamo=False,
    )
    int8_path = work_dir / PLAIN_GRAPHS["int8"]
    quantize_int8(onnx_path, int8_path)
    openvino = import_openvino()
    converted = openvino.convert_model(str(onnx_path))
    openvino.save_model(converted, str(work_dir / PLAIN_GRAPHS["openvino"]), compress_to_fp16=False)
    atomic.write_text(shape_file, described)


def plain_stack_step_floor_ms(shape: StackShape, bandwidth: benchmark.Bandwidth, precision: str) -> float:
    """Each recurrent matrix once per frame (cache-hot), the input matrices once from memory."""
    input_matrices = 4 * shape.hidden * (shape.input_dim + (shape.layers - 1) * shape.hidden)
    return benchmark.lstm_step_floor_ms(
        shape.hidden,
        shape.layers * shape.chunk_frames,
        input_matrices,
        benchmark.BYTES_PER_PARAMETER[precision],
        bandwidth,
    )


def plain_stack_encoders(
    shape: StackShape, work_dir: Path, bandwidth: benchmark.Bandwidth, threads: int
) -> list[TimedEncoder]:
    """The stack on ONNX Runtime (fp32, int8) and OpenVINO (fp32), exported first if needed."""
    from rnnt.runtimes.ort import cpu_session, import_onnxruntime, process_pool_threads
    from rnnt.runtimes.ov import ShapeSpecializedGraph, import_openvino

    export_plain_stack(shape, work_dir)
    process_pool_threads(import_onnxruntime(), threads)

    def onnx_step(graph: Path) -> Step:
        session = cpu_session(import_onnxruntime(), graph)

        def step(x: np.ndarray, state: LstmState) -> LstmState:
            _, h, c = session.run(None, {"features": x, "h": state.h, "c": state.c})
            return LstmState(h, c)

        return step

    # Compiled as the export's encoder is (`OpenVinoRuntime`), so that the two compare like for like.
    compiled = ShapeSpecializedGraph.load(
        import_openvino().Core(), work_dir / PLAIN_GRAPHS["openvino"], threads, ["h_out", "c_out"], "fp32", 1
    )

    def openvino_step(x: np.ndarray, state: LstmState) -> LstmState:
        h, c = compiled({"features": x, "h": state.h, "c": state.c})
        return LstmState(h, c)

    steps = (
        ("onnx", "fp32", onnx_step(work_dir / PLAIN_GRAPHS["fp32"])),
        ("onnx", "int8", onnx_step(work_dir / PLAIN_GRAPHS["int8"])),
        ("openvino", "fp32", openvino_step),
    )
    zeros = np.zeros((shape.layers, 1, shape.hidden), np.float32)
    name = f"plain {shape.layers}x{shape.hidden}"
    return [
        TimedEncoder(
            name,
            runtime,
            precision,
            step,
            LstmState(zeros, zeros),
            shape.input_dim,
            plain_stack_step_floor_ms(shape, bandwidth, precision),
        )
        for runtime, precision, step in steps
    ]


def exported_encoders(
    export_dir: Path, chunk_frames: int, bandwidth: benchmark.Bandwidth, threads: int
) -> list[TimedEncoder]:
    """An export's encoder on ONNX Runtime (fp32, int8) and OpenVINO (fp32)."""
    timed = []
    for backend, precision in (("onnx", "fp32"), ("onnx", "int8"), ("openvino", "fp32")):
        loaded = load_model(export_dir, backend, precision, threads)
        runtime, config = loaded.runtime, loaded.model
        floor_ms = benchmark.encoder_step_floor_ms(
            config, chunk_frames, benchmark.BYTES_PER_PARAMETER[precision], bandwidth
        )

        def step(x: np.ndarray, state: LstmState, encode: Callable = runtime.encode) -> LstmState:
            return encode(x, state)[1]

        state = runtime.init_encoder_state(1)
        name = f"{export_dir.resolve().parent.name} encoder"
        timed.append(TimedEncoder(name, backend, precision, step, state, config.input_dim, floor_ms))
    return timed


def time_rounds(
    encoders: Sequence[TimedEncoder], chunk_frames: int, rounds: int, chunks_per_round: int
) -> None:
    """Each round, each encoder pauses, then steps `chunks_per_round` chunks, state carried."""
    rng = np.random.default_rng(0)
    chunks = {
        e.input_dim: rng.standard_normal((1, chunk_frames, e.input_dim)).astype(np.float32) for e in encoders
    }
    for _ in range(rounds):
        for encoder in encoders:
            time.sleep(benchmark.SETTLE_S)
            for _ in range(chunks_per_round):
                start = time.perf_counter()
                encoder.state = encoder.step(chunks[encoder.input_dim], encoder.state)
                encoder.seconds.append(time.perf_counter() - start)


def summarize(encoder: TimedEncoder, chunk_ms: float) -> dict[str, float | str]:
    ms = 1000 * np.asarray(encoder.seconds)
    median = float(np.median(ms))
    return {
        "model": encoder.model,
        "runtime": encoder.runtime,
        "precision": encoder.precision,
        "chunk_ms_median": round(median, 2),
        "chunk_ms_p95": round(float(np.percentile(ms, benchmark.PERCENTILE_HIGH)), 2),
        "x_real_time_encoder_only": round(chunk_ms / median, 1),
        "step_floor_ms": round(encoder.step_floor_ms, 4),
        "x_step_floor": round(median / encoder.step_floor_ms, 2),
    }


def fp32_state_differences(encoders: Sequence[TimedEncoder]) -> dict[str, float]:
    """Per model, the largest difference between its fp32 runtimes' final states: they ran the
    same chunks, so a runtime that computes something else shows here."""
    differences = {}
    for model in dict.fromkeys(e.model for e in encoders):
        states = [e.state.h for e in encoders if e.model == model and e.precision == "fp32"]
        differences[model] = float(np.abs(np.stack(states) - states[0]).max())
    return differences
