"""The learning-rate schedule: warmup, decays over steps or minutes, plateau."""

from __future__ import annotations

import pytest

from rnnt.config import TrainConfig
from rnnt.schedule import LearningRateSchedule

PEAK, FLOOR = 2e-3, 5e-5


def _schedule(**changes: object) -> LearningRateSchedule:
    settings: dict[str, object] = {
        "lr": PEAK,
        "min_lr": FLOOR,
        "warmup_steps": 10,
        "max_steps": 110,
        "scheduler": "cosine",
    }
    settings.update(changes)
    return LearningRateSchedule(TrainConfig(**settings))  # type: ignore[arg-type]


def test_warmup_is_linear_in_steps() -> None:
    schedule = _schedule()
    assert schedule.lr(0) == pytest.approx(PEAK / 10)
    assert schedule.lr(4) == pytest.approx(PEAK / 2)


def test_cosine_over_steps_reaches_the_floor_at_max_steps() -> None:
    schedule = _schedule()
    assert schedule.lr(10) == pytest.approx(PEAK)
    assert schedule.lr(60) == pytest.approx((PEAK + FLOOR) / 2)
    assert schedule.lr(110) == pytest.approx(FLOOR)
    assert schedule.lr(500) == pytest.approx(FLOOR)


def test_cosine_over_minutes_ignores_steps() -> None:
    schedule = _schedule(schedule_clock="minutes", max_minutes=100.0)
    assert schedule.lr(5, minutes=50.0) == pytest.approx(PEAK * 6 / 10)  # still warming up
    assert schedule.lr(60, minutes=0.0) == pytest.approx(PEAK)
    assert schedule.lr(20, minutes=50.0) == pytest.approx((PEAK + FLOOR) / 2)
    assert schedule.lr(20, minutes=100.0) == pytest.approx(FLOOR)
    assert schedule.lr(10_000, minutes=50.0) == pytest.approx((PEAK + FLOOR) / 2)


def test_minutes_clock_needs_a_time_budget() -> None:
    with pytest.raises(ValueError, match="max_minutes"):
        _schedule(schedule_clock="minutes", max_minutes=0.0)
    with pytest.raises(ValueError, match="schedule_clock"):
        _schedule(schedule_clock="hours")


def test_plateau_decays_after_patience() -> None:
    schedule = _schedule(scheduler="plateau", plateau_patience=1, plateau_factor=0.5)
    for wer in (0.5, 0.6, 0.6):  # a best, then two evaluations without improvement
        schedule.observe(wer)
    assert schedule.lr(50) == pytest.approx(PEAK / 2)
    schedule.load_state_dict({"scale": 1.0, "best": 1.0, "bad_evaluations": 0})
    assert schedule.lr(50) == pytest.approx(PEAK)
