"""Training-step speed of loss variants (full joint vs pruned RNN-T), measured in one run.

Each variant is a `Trainer` over the same recipe, corpus and seed, so all of them draw the
same batches; their steps are interleaved, variant by variant, so that a noisy, shared
machine slows them alike. Besides time, each step records the size of the joint's logits,
B x T' x (U+1) x V floats for the full joint and B x T' x R x V pruned: the activation that
bounds the batch a machine can train.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from rnnt.benchmark import PERCENTILE_HIGH
from rnnt.config import RunConfig, replace
from rnnt.data import Batch
from rnnt.model import Transducer, count_parameters
from rnnt.training import Trainer

FLOAT_BYTES = 4  # the loss computes its lattice in float32
MEGABYTE = 1 << 20


@dataclass(frozen=True)
class LossVariant:
    """`full` (the whole joint) or `pruned:R` (k2's pruned RNN-T with R symbols per frame)."""

    prune_range: int  # 0: the full joint

    @property
    def name(self) -> str:
        return f"pruned:{self.prune_range}" if self.prune_range else "full"

    @classmethod
    def parse(cls, spec: str) -> LossVariant:
        kind, _, value = spec.partition(":")
        if kind == "full" and not value:
            return cls(0)
        if kind == "pruned" and value.isdigit() and int(value) >= 2:
            return cls(int(value))
        raise ValueError(f"loss variant {spec!r}: expected 'full' or 'pruned:R' with R >= 2")

    def apply(self, config: RunConfig) -> RunConfig:
        """`config` training with this loss, its pruning at full weight from the first step."""
        model = replace(config.model, simple_joint=bool(self.prune_range))
        train = replace(config.train, prune_range=self.prune_range, prune_warmup_steps=0)
        return replace(config, model=model, train=train)


@dataclass
class VariantRun:
    """One variant's trainer and what its steps measured."""

    variant: LossVariant
    trainer: Trainer
    step_s: list[float] = field(default_factory=list)
    audio_s: list[float] = field(default_factory=list)
    logits_mb: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)


def logits_mb(micro_batches: list[Batch], model: Transducer, prune_range: int) -> float:
    """The largest micro-batch's joint logits in MB: B x T' x (U+1 or R) x V float32."""
    largest = 0
    for batch in micro_batches:
        batch_size, frames, _ = batch.features.shape
        encoder_frames = int(model.encoder.output_lengths(torch.tensor(frames)))
        rows = prune_range or batch.targets.shape[1] + 1
        largest = max(largest, batch_size * encoder_frames * rows * model.config.vocab_size)
    return largest * FLOAT_BYTES / MEGABYTE


def open_variants(config: RunConfig, variants: list[LossVariant]) -> list[VariantRun]:
    return [VariantRun(v, Trainer(v.apply(config))) for v in variants]


def run_interleaved(runs: list[VariantRun], steps: int, skip_steps: int) -> None:
    """`skip_steps` untimed steps (allocator and thread-pool warm-up), then `steps` timed."""
    iterators = [run.trainer.step_batches() for run in runs]
    for index in range(skip_steps + steps):
        for run, batches in zip(runs, iterators, strict=True):
            micro_batches = next(batches)
            start = time.perf_counter()
            metrics = run.trainer.train_step(micro_batches)
            elapsed = time.perf_counter() - start
            run.trainer.state.step += 1
            if index >= skip_steps:
                run.step_s.append(elapsed)
                run.audio_s.append(metrics["audio_seconds"])
                run.losses.append(metrics["loss"])
                run.logits_mb.append(logits_mb(micro_batches, run.trainer.model, run.variant.prune_range))


def summarize(run: VariantRun, baseline: VariantRun) -> dict[str, Any]:
    """One table row; `speedup` is the baseline's median step time over this variant's."""
    step_ms = 1000 * np.asarray(run.step_s)
    base_ms = 1000 * np.median(baseline.step_s)
    return {
        "variant": run.variant.name,
        "parameters": count_parameters(run.trainer.model),
        "steps": len(run.step_s),
        "audio_s_per_step": round(float(np.mean(run.audio_s)), 2),
        "step_ms_median": round(float(np.median(step_ms)), 1),
        "step_ms_p95": round(float(np.percentile(step_ms, PERCENTILE_HIGH)), 1),
        "speedup": round(float(base_ms / np.median(step_ms)), 3),
        "audio_s_per_s": round(sum(run.audio_s) / sum(run.step_s), 1),
        "logits_mb_median": round(float(np.median(run.logits_mb)), 1),
        "logits_mb_max": round(max(run.logits_mb), 1),
        "loss_last": round(run.losses[-1], 4),
    }


def same_batches(runs: list[VariantRun]) -> bool:
    """True if every variant trained on the same audio at every step (a fair comparison)."""
    return len({tuple(run.audio_s) for run in runs}) == 1
