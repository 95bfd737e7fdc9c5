"""Benchmark PyTorch vs ONNX Runtime vs OpenVINO (fp32, int8) on streaming decoding.

    # a trained model (checkpoint + its export), WER on a manifest
    python tools/benchmark.py --checkpoint=models/demo/model.pt --export_dir=exports/demo \\
        --manifest=datasets/demo/test --max_utterances=50
    # a flagfile's architecture with random weights (speed only)
    python tools/benchmark.py --architecture=flagfiles/E6D2_LARGE_Batch.txt

Prints a table and writes JSON (default benchmarks/<name>.json). Variants run interleaved,
utterance by utterance, in one process; peak RSS is measured per variant in a subprocess.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
from absl import flags

from rnnt import atomic, benchmark, cli
from rnnt.config import DecodeConfig, RunConfig, StreamConfig
from rnnt.corpus import read_corpus
from rnnt.flags import config_from_flags, run_config_from_flags
from rnnt.runtimes import is_current_export

_CHECKPOINT = flags.DEFINE_string("checkpoint", "", "checkpoint for the torch variant")
_EXPORT_DIR = flags.DEFINE_string("export_dir", "", "export directory for the onnx/openvino variants")
_ARCHITECTURE = flags.DEFINE_string(
    "architecture", "", "flagfile: benchmark its architecture, random weights"
)
_TOKENIZER_CORPUS = flags.DEFINE_string(
    "tokenizer_corpus",
    "datasets/demo/train",
    "--architecture: transcripts to train its BPE on",
)
_WORK_DIR = flags.DEFINE_string("work_dir", "benchmarks", "where --architecture models and JSON go")
_MANIFEST = flags.DEFINE_string("manifest", "datasets/demo/test", "utterances to decode (and score)")
_MAX_UTTERANCES = flags.DEFINE_integer("max_utterances", 30, "decode the first N utterances", lower_bound=1)
_VARIANTS = flags.DEFINE_list(
    "variants",
    ["torch:fp32", "onnx:fp32", "openvino:fp32", "openvino:bf16", "onnx:int8"],
    "backend:precision list",
)
_THREADS = flags.DEFINE_integer("threads", 0, "encoder threads (0: each backend's default)", lower_bound=0)
_OUTPUT = flags.DEFINE_string("output", "", "JSON path (default <work_dir>/<name>.json)")
_RSS_PROBE = flags.DEFINE_string("rss_probe", "", "internal: decode with one variant, print peak RSS")

COLUMNS = (
    ("runtime", "runtime", "{}"),
    ("precision", "prec", "{}"),
    ("wer_percent", "WER %", "{}"),
    ("encoder_ms_median", "enc ms", "{:.2f}"),
    ("encoder_ms_p95", "enc p95", "{:.2f}"),
    ("predictor_ms_median", "pred ms", "{:.3f}"),
    ("joint_ms_median", "joint ms", "{:.3f}"),
    ("audio_s_per_s", "x real time", "{:.1f}"),
    ("real_time_factor", "RTF", "{:.4f}"),
    ("speed_vs_reference", "x ref (paired)", "{:.3f}"),
    ("chunk_latency_ms_p95", "lat p95 ms", "{:.1f}"),
    ("first_encoder_ms", "1st enc ms", "{:.1f}"),
    ("load_s", "load s", "{:.2f}"),
    ("size_mb", "MB", "{:.1f}"),
    ("peak_rss_mb", "RSS MB", "{}"),
    ("encoder_floor_ms", "floor ms", "{:.2f}"),
    ("encoder_x_floor", "x floor", "{:.2f}"),
    ("encoder_step_floor_ms", "step floor ms", "{:.2f}"),
    ("encoder_x_step_floor", "x step floor", "{:.2f}"),
)


def model_paths(speech: list[np.ndarray]) -> tuple[Path, Path, str]:
    """(checkpoint, export dir, name), building a random-weight model for --architecture."""
    if _ARCHITECTURE.value:
        name = Path(_ARCHITECTURE.value).stem
        work_dir = Path(_WORK_DIR.value) / name
        if is_current_export(work_dir / "export"):  # built before: no torch import
            return work_dir / "model.pt", work_dir / "export", name
        from rnnt.random_model import build_random_export

        checkpoint, export_dir = build_random_export(
            architecture_config(_ARCHITECTURE.value), work_dir, Path(_TOKENIZER_CORPUS.value), speech
        )
        return checkpoint, export_dir, name
    if not _CHECKPOINT.value and not _EXPORT_DIR.value:
        raise ValueError("give --checkpoint and/or --export_dir, or --architecture")
    name = Path(_EXPORT_DIR.value or _CHECKPOINT.value).stem
    return Path(_CHECKPOINT.value), Path(_EXPORT_DIR.value), name


def architecture_config(flagfile: str) -> RunConfig:
    """The run config `flagfile` describes (flags it does not set keep their values)."""
    try:
        flags.FLAGS(
            ["benchmark", *flags.FLAGS.read_flags_from_files([f"--flagfile={flagfile}"], force_gnu=False)]
        )
    except flags.Error as error:  # a missing flagfile, a flag this toolkit does not know
        raise ValueError(f"--architecture={flagfile}: {error}") from None
    return run_config_from_flags()


def variant_source(backend: str, checkpoint: Path, export_dir: Path) -> Path:
    path = checkpoint if backend == "torch" else export_dir
    if not str(path) or str(path) == ".":
        raise ValueError(
            f"the {backend} variant needs {'--checkpoint' if backend == 'torch' else '--export_dir'}"
        )
    return path


def load_utterances() -> tuple[list[np.ndarray], list[str]]:
    utterances = [u for u in read_corpus(_MANIFEST.value) if u.text][: _MAX_UTTERANCES.value]
    if not utterances:
        raise ValueError(f"{_MANIFEST.value}: no utterance with text to decode")
    samples = [u.load(16000) for u in utterances]
    return samples, [u.text for u in utterances]


def peak_rss_mb(variant: str) -> float:
    """Peak RSS of a fresh process that loads one variant and decodes the utterances."""
    command = [sys.executable, __file__, f"--rss_probe={variant}", *sys.argv[1:]]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = result.stdout.strip().splitlines()
    return float(lines[-1]) if result.returncode == 0 and lines else float("nan")


def peak_rss_of_this_process_mb() -> float:
    """VmHWM (resets at exec, unlike ru_maxrss, which a child inherits from its parent)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def report(
    name: str,
    rows: list[dict],
    same: bool,
    reference: str,
    bandwidth: benchmark.Bandwidth,
    num_utterances: int,
) -> None:
    """Print the table and its footnote, and write the JSON."""
    shown = [
        {**row, "precision": row["precision"] + ("" if row["native_precision"] else " (emulated)")}
        for row in rows
    ]
    print(benchmark.format_table(shown, COLUMNS))
    host = benchmark.host_description()
    print(
        f"x ref (paired): median over utterances of {reference}'s time / the row's; "
        f"fp32 transcripts identical across runtimes: {same}; fp32 matrix-vector bandwidth: "
        f"memory {bandwidth.memory / 1e9:.1f} GB/s, recurrent matrix {bandwidth.recurrent / 1e9:.1f} GB/s; "
        f"host: {host}"
    )
    output = Path(_OUTPUT.value or Path(_WORK_DIR.value) / f"{name}.json")
    summary = {
        "model": name,
        "host": host,
        "utterances": num_utterances,
        "fp32_transcripts_identical": same,
        "paired_reference": reference,
        "rows": rows,
        "memory_bandwidth_gb_s": round(bandwidth.memory / 1e9, 2),
        "recurrent_bandwidth_gb_s": round(bandwidth.recurrent / 1e9, 2),
    }
    atomic.write_text(output, json.dumps(summary, indent=1) + "\n")
    print(f"wrote {output}")


def main(argv: list[str]) -> None:
    del argv  # positional arguments are refused by cli.run
    cli.require_flags(_VARIANTS)
    samples, references = load_utterances()
    checkpoint, export_dir, name = model_paths(samples)
    stream = config_from_flags(StreamConfig)
    decode = config_from_flags(DecodeConfig)
    specs = [_RSS_PROBE.value] if _RSS_PROBE.value else _VARIANTS.value
    variants = []
    for spec in specs:
        backend, _, precision = spec.partition(":")
        source = variant_source(backend, checkpoint, export_dir)
        variants.append(
            benchmark.open_variant(source, backend, precision or "fp32", stream, decode, _THREADS.value)
        )
    benchmark.run_interleaved(variants, samples, stream.chunk_ms)
    if _RSS_PROBE.value:
        print(peak_rss_of_this_process_mb())
        return
    bandwidth = benchmark.Bandwidth.measure(variants[0].loaded.model)
    scored = None if _ARCHITECTURE.value else references
    reference = benchmark.reference_variant(variants)
    rows = []
    for variant in variants:
        source = variant_source(variant.backend, checkpoint, export_dir)
        size = benchmark.model_bytes(source, variant.backend, variant.precision)
        row = benchmark.summarize(variant, scored, bandwidth, size, stream.chunk_ms, reference)
        row["peak_rss_mb"] = round(peak_rss_mb(f"{variant.backend}:{variant.precision}"))
        rows.append(row)
    same = len({tuple(v.transcripts) for v in variants if v.precision == "fp32"}) == 1
    report(name, rows, same, reference.name, bandwidth, len(samples))


if __name__ == "__main__":
    cli.run(main)
