"""Learning rate: linear warmup, then plateau, cosine, one-cycle or constant.

Written here rather than composed from `torch.optim.lr_scheduler` because the reference
recipe (warmup, then decay on a plateau of dev WER) is not expressible with
`SequentialLR` + `ReduceLROnPlateau`, and a pure function of (step, plateau scale) is
trivially resumable.
"""

from __future__ import annotations

import math
from typing import Any

from rnnt.config import TrainConfig

ONECYCLE_FINAL_FRACTION = 0.01  # one-cycle ends at 1% of the peak


class LearningRateSchedule:
    def __init__(self, config: TrainConfig):
        if config.schedule_clock == "minutes" and config.max_minutes <= 0:
            raise ValueError("--schedule_clock=minutes decays over --max_minutes: set it")
        self.config = config
        self.scale = 1.0  # plateau decay so far
        self.best = math.inf
        self.bad_evaluations = 0

    def lr(self, step: int, minutes: float = 0.0) -> float:
        """The learning rate for optimizer step `step` (0-based), `minutes` into training.

        The warmup counts steps either way; with `schedule_clock=minutes` the decay then follows
        the wall clock, so a run ends on its time budget fully decayed on any machine (its
        rate then depends on the machine's speed, so such a run is not bit-reproducible).
        """
        c = self.config
        if step < c.warmup_steps:
            return c.lr * (step + 1) / c.warmup_steps
        if c.schedule_clock == "minutes":
            progress = min(1.0, minutes / c.max_minutes)
        else:
            progress = min(1.0, (step - c.warmup_steps) / max(1, c.max_steps - c.warmup_steps))
        if c.scheduler == "cosine":
            value = c.min_lr + 0.5 * (c.lr - c.min_lr) * (1 + math.cos(math.pi * progress))
        elif c.scheduler == "onecycle":
            value = c.lr * (1 - (1 - ONECYCLE_FINAL_FRACTION) * progress)
        else:
            value = c.lr * self.scale
        return max(c.min_lr, value)

    def observe(self, metric: float) -> None:
        """Feed a dev metric (lower is better); decays on a plateau (plateau scheduler)."""
        if metric < self.best:
            self.best, self.bad_evaluations = metric, 0
            return
        self.bad_evaluations += 1
        if self.config.scheduler == "plateau" and self.bad_evaluations > self.config.plateau_patience:
            self.scale *= self.config.plateau_factor
            self.bad_evaluations = 0

    def state_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "best": self.best, "bad_evaluations": self.bad_evaluations}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scale, self.best, self.bad_evaluations = state["scale"], state["best"], state["bad_evaluations"]
