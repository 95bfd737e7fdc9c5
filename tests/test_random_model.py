"""Random-weight models for speed benchmarks emit tokens at a trained model's rate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnt.config import DecodeConfig
from rnnt.decoding import decode_features
from rnnt.model import Transducer
from rnnt.random_model import calibrate_blank
from rnnt.runtimes.pytorch import TorchRuntime

from .conftest import tiny_model_config

INPUT_DIM = 12


@pytest.mark.parametrize("tokens_per_frame", [0.1, 0.4])
def test_calibrated_random_model_emits_at_the_target_rate(tokens_per_frame: float) -> None:
    torch.manual_seed(0)
    model = Transducer(tiny_model_config(vocab_size=30, input_dim=INPUT_DIM)).eval()
    rng = np.random.default_rng(0)
    calibration = [rng.normal(size=(length, INPUT_DIM)).astype(np.float32) for length in (60, 90, 120, 70)]
    held_out = [rng.normal(size=(length, INPUT_DIM)).astype(np.float32) for length in (80, 100, 50, 110)]
    runtime = TorchRuntime(model)

    def rate(utterances: list[np.ndarray]) -> float:
        hyps = decode_features(runtime, utterances, DecodeConfig())
        return sum(len(hyp.tokens) for hyp in hyps) / sum(hyp.num_frames for hyp in hyps)

    assert rate(calibration) > 1.0  # uncalibrated, a random joint emits on most frames
    calibrate_blank(model, calibration, tokens_per_frame)
    assert rate(calibration) == pytest.approx(tokens_per_frame, abs=0.03)
    assert rate(held_out) == pytest.approx(tokens_per_frame, abs=0.1)
