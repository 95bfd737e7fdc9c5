"""The training loop: step-based, micro-batched, data-parallel, resumable exactly."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from rnnt import checkpoint as ckpt
from rnnt.config import RunConfig, TrainConfig, replace
from rnnt.corpus import (
    DataError,
    Utterance,
    dev_corpus,
    feature_statistics,
    token_density,
    training_corpus,
)
from rnnt.data import Batch, BucketBatchSampler, UtteranceDataset, check_ranks_fed, collate_micro_batches
from rnnt.device import AMP_DTYPES, check_lstm_amp, describe_device, native_bf16, resolve_amp
from rnnt.distributed import Distributed, all_reduce_sum, check_resume_world, sum_gradients
from rnnt.evaluation import EvalResult, evaluate
from rnnt.loss import check_loss_config, pruning_at, transducer_backward
from rnnt.model import GlobalNorm, Transducer, count_parameters
from rnnt.run_log import RunLog
from rnnt.runtimes.pytorch import TorchRuntime
from rnnt.schedule import LearningRateSchedule
from rnnt.tokenizer import Tokenizer

log = logging.getLogger(__name__)

TOKENIZER_FILE = "tokenizer.model"
STATISTICS_UTTERANCES = 500  # utterances sampled for global mean/variance statistics
# Consecutive batches with no readable utterance that stop a run: unreadable audio, not a
# few bad files, which the loader skips and counts.
MAX_EMPTY_STEPS = 5


@dataclass
class TrainState:
    """Mutable run state, saved in every checkpoint."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0  # global batches of `epoch` already consumed
    best_wer: float = math.inf
    train_seconds: float = 0.0  # wall time spent training, summed over resumes
    audio_seconds: float = 0.0  # audio processed, summed over ranks
    world: int = 0  # ranks that trained it (0: not recorded), for resuming mid-epoch


def prepare_tokenizer(
    config: RunConfig, utterances: list[Utterance], init: dict[str, Any] | None = None
) -> Tokenizer:
    """The run's tokenizer: reuse `<run>/tokenizer.model`, else the one of the checkpoint `init`
    starts from, else train one on `utterances`."""
    path = config.run_dir / TOKENIZER_FILE
    if path.is_file():
        return Tokenizer.load(path)
    if init is not None:
        tokenizer = Tokenizer(init["tokenizer"])
    else:
        tokenizer = Tokenizer.train(sorted({u.text for u in utterances}), config.tokenizer)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(path)
    return tokenizer


def build_model(config: RunConfig, tokenizer: Tokenizer) -> tuple[RunConfig, Transducer]:
    """Fix the model's input and output sizes from the features and tokenizer, then build it."""
    model_config = replace(
        config.model, vocab_size=tokenizer.vocab_size, input_dim=config.feature.feature_dim
    )
    config = replace(config, model=model_config)
    torch.manual_seed(config.train.seed)
    return config, Transducer(model_config)


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = model.parameters()
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    raise ValueError(f"unknown optimizer {config.optimizer!r} (adam, adamw or sgd)")


class Trainer:
    """Owns the model, optimiser, schedule and loop of one run."""

    def __init__(self, config: RunConfig, dist_info: Distributed | None = None):
        check_loss_config(config.model, config.train)
        self.dist = dist_info or Distributed()
        self.device = (
            torch.device("cuda", self.dist.local_rank) if torch.cuda.is_available() else torch.device("cpu")
        )
        train_utterances = training_corpus(config.data)
        # Only a new run starts from it: a resumed one restores its own weights, even if the
        # checkpoint it started from has gone since.
        fresh = not ckpt.step_checkpoints(config.run_dir / "models")
        init_path = config.train.init_checkpoint
        init = ckpt.read_checkpoint(init_path) if init_path and fresh else None
        self.tokenizer = prepare_tokenizer(config, train_utterances, init)
        self.config, self.model = build_model(config, self.tokenizer)
        if init is not None:
            ckpt.load_weights(self.model, self.config.feature, init, init_path)
        elif self.config.model.input_norm == "global":
            mean, std = feature_statistics(train_utterances, self.config.feature, STATISTICS_UTTERANCES)
            norm = self.model.encoder.input_norm
            assert isinstance(norm, GlobalNorm)
            norm.set_stats(torch.from_numpy(mean).float(), torch.from_numpy(std).float())
        self.model.to(self.device)
        native = native_bf16(self.device)
        self.amp = resolve_amp(self.config.train.amp, native)
        check_lstm_amp(self.device, self.amp)
        log.info(
            "device: %s; native bf16: %s; --amp=%s: %s",
            describe_device(self.device),
            native,
            self.config.train.amp,
            self.amp,
        )
        self.train_utterances = train_utterances
        self.dev_utterances = dev_corpus(self.config.data)
        self.optimizer = make_optimizer(self.model, self.config.train)
        self.schedule = LearningRateSchedule(self.config.train)
        self.state = TrainState(world=self.dist.world)
        log.info("model: %d parameters", count_parameters(self.model))
        if self.dist.is_main:
            self._log_target_density()

    def _log_target_density(self) -> None:
        """How many tokens per encoder frame the transducer must emit on the training corpus."""
        encoder_frame_s = self.config.feature.encoder_frame_s(self.config.model.time_reduction)
        density = token_density(self.train_utterances, self.tokenizer, encoder_frame_s)
        log.info(
            "targets: %.2f tokens per %.0f ms encoder frame, %.2f per word; %.1f%% of utterances "
            "have more tokens than frames",
            density.tokens_per_frame,
            1000 * encoder_frame_s,
            density.tokens_per_word,
            100 * density.over_one,
        )

    @property
    def models_dir(self) -> Path:
        return self.config.run_dir / "models"

    # ---- checkpoints ----------------------------------------------------------------

    def checkpoint(self) -> dict[str, Any]:
        return ckpt.make_checkpoint(
            self.model,
            self.tokenizer,
            self.config.as_dict(),
            optimizer=self.optimizer.state_dict(),
            schedule=self.schedule.state_dict(),
            train_state=dataclasses.asdict(self.state),
            rng={"torch": torch.get_rng_state()},
        )

    def save(self, name: str | None = None) -> Path:
        path = self.models_dir / (name or f"{self.state.step}.pt")
        if self.dist.is_main:
            ckpt.atomic_save(self.checkpoint(), path)
            ckpt.prune_checkpoints(self.models_dir, self.config.train.keep_checkpoints)
        return path

    def restore(self, path: Path) -> None:
        checkpoint = ckpt.read_checkpoint(path)
        ckpt.load_weights(self.model, self.config.feature, checkpoint, str(path))  # refuses changed configs
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.schedule.load_state_dict(checkpoint["schedule"])
        self.state = TrainState(**checkpoint["train_state"])
        check_resume_world(self.state.world, self.dist, self.state.batch_in_epoch > 0, str(path))
        self.state.world = self.dist.world
        torch.set_rng_state(checkpoint["rng"]["torch"])
        log.info("resumed from %s at step %d", path, self.state.step)

    def resume_latest(self) -> bool:
        found = ckpt.step_checkpoints(self.models_dir)
        if found:
            self.restore(found[-1])
        return bool(found)

    # ---- data -----------------------------------------------------------------------

    def step_batches(self) -> Iterator[list[Batch]]:
        """Each step's micro-batches for this rank, from the saved data position on."""
        train = self.config.train
        dataset = UtteranceDataset(
            self.train_utterances, self.config.feature, self.tokenizer, self.config.augment, train.seed
        )
        check_ranks_fed([u.duration for u in self.train_utterances], train.batch_seconds, self.dist.world)
        sampler = BucketBatchSampler(
            [u.duration for u in self.train_utterances],
            train.batch_seconds,
            train.seed,
            self.dist.rank,
            self.dist.world,
        )
        per_rank_micro = train.micro_batch_seconds / self.dist.world if train.micro_batch_seconds else 0.0
        while True:
            sampler.epoch, sampler.start = self.state.epoch, self.state.batch_in_epoch
            loader = torch.utils.data.DataLoader(
                dataset,
                batch_sampler=sampler,
                collate_fn=partial(collate_micro_batches, micro_batch_seconds=per_rank_micro),
                num_workers=train.num_workers,
                # Its own generator: creating an iterator must not draw from the global RNG
                # (dropout's), or a resumed run would diverge from an uninterrupted one.
                generator=torch.Generator().manual_seed(train.seed),
            )
            for micro_batches in loader:
                self.state.batch_in_epoch += 1
                yield micro_batches
            self.state.epoch += 1
            self.state.batch_in_epoch = 0

    # ---- one step -------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp == "none":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=AMP_DTYPES[self.amp])

    def train_step(self, micro_batches: list[Batch]) -> dict[str, float]:
        train = self.config.train
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        counts = [
            float(sum(len(b.texts) for b in micro_batches)),
            float(sum(int(b.target_lengths.sum()) for b in micro_batches)),
        ]
        utterances, tokens = all_reduce_sum(counts, self.dist)
        normalizer = max(1.0, tokens if train.loss_normalization == "token" else utterances)
        totals = self._accumulate_gradients(micro_batches, normalizer)
        sum_gradients(self.model, self.dist)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), train.grad_clip or math.inf)
        lr = self.schedule.lr(self.state.step, self._minutes())
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if torch.isfinite(grad_norm):
            self.optimizer.step()
        else:
            log.warning("step %d: non-finite gradient norm, update skipped", self.state.step)
        rnnt_total, ctc_total, simple_total, audio = all_reduce_sum(totals, self.dist)
        return {
            "loss": rnnt_total / normalizer,
            "ctc_loss": ctc_total / normalizer,
            "simple_loss": simple_total / normalizer,
            "lr": lr,
            "grad_norm": float(grad_norm),
            "audio_seconds": audio,
        }

    def _accumulate_gradients(self, micro_batches: list[Batch], normalizer: float) -> list[float]:
        """Forward and backward over this rank's micro-batches, their gradients summed in the
        model; returns their summed transducer, CTC and simple-joint losses and audio seconds."""
        train = self.config.train
        pruning = pruning_at(train, self.state.step)
        totals = [0.0, 0.0, 0.0, 0.0]
        for batch in micro_batches:
            features, feature_lengths, targets, target_lengths = (
                t.to(self.device)
                for t in (batch.features, batch.feature_lengths, batch.targets, batch.target_lengths)
            )
            with self._autocast():  # the joint too; rnnt_loss casts its logits to float32
                outputs = self.model(features, feature_lengths, targets)
                values = transducer_backward(
                    self.model,
                    outputs,
                    targets,
                    target_lengths,
                    normalizer,
                    train.ctc_weight,
                    train.joint_sub_batch,
                    pruning,
                )
            for i, value in enumerate((values.transducer, values.ctc, values.simple, batch.audio_seconds)):
                totals[i] += value
        return totals

    # ---- evaluation -----------------------------------------------------------------

    def evaluate_dev(self) -> EvalResult | None:
        if not self.dev_utterances:
            return None
        runtime = TorchRuntime(self.model)
        try:
            result = evaluate(
                runtime, self.config.feature, self.tokenizer, self.dev_utterances, self.config.decode
            )
        except DataError as error:  # the dev audio went missing: keep training
            log.error("dev evaluation skipped: %s", error)
            result = None
        self.model.train()
        return result

    # ---- the loop -------------------------------------------------------------------

    def fit(self) -> TrainState:
        """Train until `max_steps` (or `max_minutes`), evaluating and checkpointing."""
        train = self.config.train
        run_log = RunLog(
            self.config.run_dir, self.dist.is_main, train.progress, self.state.step, train.max_steps
        )
        started = time.monotonic() - self.state.train_seconds
        window_audio, window_start = 0.0, time.monotonic()
        steps = self.step_batches()
        empty_steps = 0
        while self.state.step < train.max_steps:
            metrics = self.train_step(next(steps))
            empty_steps = empty_steps + 1 if metrics["audio_seconds"] == 0 else 0
            if empty_steps == MAX_EMPTY_STEPS:
                self.save()
                raise DataError(
                    f"no utterance of the last {MAX_EMPTY_STEPS} batches could be read (see the log)"
                )
            self.state.step += 1
            self.state.train_seconds = time.monotonic() - started
            self.state.audio_seconds += metrics["audio_seconds"]
            window_audio += metrics["audio_seconds"]
            logging_step = self.state.step % train.log_every == 0 or self.state.step == train.max_steps
            if logging_step:
                metrics["audio_sec_per_sec"] = window_audio / max(1e-9, time.monotonic() - window_start)
                window_audio, window_start = 0.0, time.monotonic()
                run_log.scalars("train", metrics, self.state.step, self.state.train_seconds / 60)
            run_log.step(metrics if logging_step else None)
            out_of_time = self._out_of_time()
            self._maybe_evaluate_and_save(run_log, last=out_of_time or self.state.step == train.max_steps)
            if out_of_time:
                log.info("time limit of %.1f minutes reached at step %d", train.max_minutes, self.state.step)
                break
        run_log.close()
        if not (self.models_dir / f"{self.state.step}.pt").is_file():
            self.save()
        return self.state

    def _minutes(self) -> float:
        """Training minutes so far, agreed by all ranks (the wall-clock schedule needs one rate)."""
        if self.config.train.schedule_clock != "minutes":
            return self.state.train_seconds / 60
        return all_reduce_sum([self.state.train_seconds], self.dist)[0] / self.dist.world / 60

    def _out_of_time(self) -> bool:
        """Past `max_minutes` on any rank (ranks' clocks differ; all must stop at one step)."""
        train = self.config.train
        if not train.max_minutes:
            return False
        over = self.state.train_seconds > 60 * train.max_minutes
        return all_reduce_sum([float(over)], self.dist)[0] > 0

    def _maybe_evaluate_and_save(self, run_log: RunLog, last: bool) -> None:
        """Evaluate every `eval_every` steps and at the last step; checkpoint on schedule."""
        train, step = self.config.train, self.state.step
        if step % train.eval_every == 0 or last:
            result = self.evaluate_dev()
            if result is not None:
                run_log.evaluation(result, step, self.state.train_seconds / 60)
                self.schedule.observe(result.rates.wer)
                if result.rates.wer < self.state.best_wer:
                    self.state.best_wer = result.rates.wer
                    self.save("best.pt")
        if step % train.checkpoint_every == 0:
            self.save()


def train_run(
    config: RunConfig, dist_info: Distributed, resume: bool, on_start: Callable[[], None] | None = None
) -> TrainState:
    """One rank's part of a run: a new run (refused if its folder has checkpoints) or the
    latest checkpoint's continuation. `on_start` runs on the main rank once the run is
    accepted (the scripts record the resolved flags there)."""
    if not resume and ckpt.step_checkpoints(config.run_dir / "models"):
        raise ValueError(f"{config.run_dir} already has checkpoints: use --mode=resume or another --name")
    if dist_info.is_main and on_start is not None:
        on_start()
    trainer = Trainer(config, dist_info)
    if resume and not trainer.resume_latest():
        raise ValueError(f"--mode=resume: no checkpoint in {trainer.models_dir}")
    state = trainer.fit()
    best = (
        f"best dev WER {100 * state.best_wer:.2f}%" if math.isfinite(state.best_wer) else "no dev evaluation"
    )
    log.info("finished at step %d (%s)", state.step, best)
    return state
