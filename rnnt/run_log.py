"""What a training run reports as it goes: tensorboard events (tensorboardX), the log, and
the progress bar. Only the main rank writes; the others get a `RunLog` that stays silent."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from rnnt.evaluation import EvalResult

log = logging.getLogger(__name__)

NUM_EXAMPLE_TRANSCRIPTS = 4  # dev transcripts written to tensorboard per evaluation


class RunLog:
    """Tensorboard scalars and example transcripts under `run_dir`, and a progress bar."""

    def __init__(self, run_dir: Path, enabled: bool, progress: bool, initial_step: int, total_steps: int):
        from tensorboardX import SummaryWriter
        from tqdm import tqdm

        self.writer: Any = SummaryWriter(str(run_dir)) if enabled else None
        self.progress = tqdm(
            initial=initial_step,
            total=total_steps,
            disable=not (enabled and progress),
            unit="step",
            dynamic_ncols=True,
        )

    def scalars(self, prefix: str, values: dict[str, float], step: int, minutes: float) -> None:
        """`values` as `<prefix>/<key>` at `step`, with the training minutes beside them."""
        if self.writer is None:
            return
        for key, value in values.items():
            self.writer.add_scalar(f"{prefix}/{key}", value, step)
        self.writer.add_scalar(f"{prefix}/minutes", minutes, step)
        self.writer.flush()

    def step(self, metrics: dict[str, float] | None) -> None:
        """One step done; `metrics` (a logging step's) go on the progress bar."""
        if metrics is not None:
            self.progress.set_postfix(
                loss=f"{metrics['loss']:.3f}", x_rt=f"{metrics['audio_sec_per_sec']:.1f}"
            )
        self.progress.update(1)

    def evaluation(self, result: EvalResult, step: int, minutes: float) -> None:
        """A dev evaluation: its WER/CER in the log and as scalars, and a few transcripts."""
        rates = result.rates
        log.info(
            "step %d: dev WER %.2f%% CER %.2f%% (%d utterances, %.1f min)",
            step,
            100 * rates.wer,
            100 * rates.cer,
            rates.num_utterances,
            minutes,
        )
        self.scalars("dev", {"wer": rates.wer, "cer": rates.cer}, step, minutes)
        if self.writer is None:
            return
        examples = np.random.default_rng(0).permutation(len(result.transcripts))[:NUM_EXAMPLE_TRANSCRIPTS]
        text = "\n\n".join(
            f"REF: {result.transcripts[i].reference}  \nHYP: {result.transcripts[i].hypothesis}"
            for i in examples
        )
        self.writer.add_text("dev/examples", text, step)
        self.writer.flush()  # a killed run keeps its last evaluation

    def close(self) -> None:
        self.progress.close()
        if self.writer is not None:
            self.writer.close()
