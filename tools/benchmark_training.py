"""Benchmark training steps: the full joint against pruned RNN-T, on one recipe's batches.

    # the demo recipe's per-rank batch (120 s over 2 ranks)
    python tools/benchmark_training.py --flagfile=flagfiles/demo.txt --batch_seconds=60
    # a LibriSpeech-sized model on the demo corpus
    python tools/benchmark_training.py --flagfile=flagfiles/E6D2.txt \\
        --train_manifests=datasets/demo/train --batch_seconds=100 --steps=5

Every variant trains from the same initial encoder, predictor and joint on the same batches,
steps interleaved in one process. Prints a table and writes JSON (default
benchmarks/training_<recipe>.json).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from absl import flags

from rnnt import atomic, cli
from rnnt import training_benchmark as bench
from rnnt.benchmark import format_table
from rnnt.config import replace
from rnnt.flags import run_config_from_flags

_VARIANTS = flags.DEFINE_list("variants", ["full", "pruned:5"], "loss variants: full, pruned:R")
_STEPS = flags.DEFINE_integer("steps", 20, "timed steps per variant", lower_bound=1)
_SKIP_STEPS = flags.DEFINE_integer("skip_steps", 3, "untimed steps per variant first", lower_bound=0)
_OUTPUT = flags.DEFINE_string("output", "", "JSON path (default benchmarks/training_<recipe>.json)")

COLUMNS = (
    ("variant", "loss", "{}"),
    ("parameters", "params", "{}"),
    ("audio_s_per_step", "audio s/step", "{:.1f}"),
    ("step_ms_median", "step ms", "{:.0f}"),
    ("step_ms_p95", "p95 ms", "{:.0f}"),
    ("speedup", "x first", "{:.2f}"),
    ("audio_s_per_s", "x real time", "{:.1f}"),
    ("logits_mb_median", "logits MB", "{:.1f}"),
    ("logits_mb_max", "max MB", "{:.1f}"),
    ("loss_last", "loss", "{:.3f}"),
)


def main(argv: list[str]) -> None:
    del argv  # positional arguments are refused by cli.run
    cli.require_flags(_VARIANTS)
    variants = [bench.LossVariant.parse(spec) for spec in _VARIANTS.value]
    config = run_config_from_flags()
    if config.train.num_threads:
        torch.set_num_threads(config.train.num_threads)
    recipe = config.train.name
    with tempfile.TemporaryDirectory() as logs_root:  # the tokenizer the trainers share
        train = replace(config.train, name="benchmark", logs_root=logs_root)
        config = replace(config, train=train, data=replace(config.data, dev_manifest=""))  # no evaluation
        runs = bench.open_variants(config, variants)
        bench.run_interleaved(runs, _STEPS.value, _SKIP_STEPS.value)
    rows = [bench.summarize(run, runs[0]) for run in runs]
    print(format_table(rows, COLUMNS))
    same = bench.same_batches(runs)
    print(f"every variant trained on the same batches: {same}; threads: {torch.get_num_threads()}")
    output = Path(_OUTPUT.value or f"benchmarks/training_{recipe}.json")
    summary = {"recipe": recipe, "same_batches": same, "threads": torch.get_num_threads(), "rows": rows}
    atomic.write_text(output, json.dumps(summary, indent=1) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    cli.run(main)
