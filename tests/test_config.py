"""Configs refuse values no run can use, at construction, naming the field."""

from __future__ import annotations

import pytest

from rnnt.config import AugmentConfig, DecodeConfig, FeatureConfig, ModelConfig, StreamConfig, TrainConfig


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: FeatureConfig(hop_length=0), "hop_length must be positive, got 0"),
        (lambda: FeatureConfig(sample_rate=-16000), "sample_rate must be positive"),
        (
            lambda: FeatureConfig(win_length=160, hop_length=400),
            r"hop_length \(400\) must not exceed win_length",
        ),
        (lambda: FeatureConfig(win_length=640), r"n_fft \(512\) must be at least win_length \(640\)"),
        (
            lambda: FeatureConfig(feature_kind="fbank"),
            "feature_kind must be one of logmel, kaldi_fbank; got 'fbank'",
        ),
        (
            lambda: TrainConfig(loss_normalization="tokens"),
            "loss_normalization must be one of utterance, token",
        ),
        (lambda: TrainConfig(lr=1e-4, min_lr=1e-3), r"min_lr \(0.001\) must not exceed lr \(0.0001\)"),
        (
            lambda: TrainConfig(scheduler="linear"),
            "scheduler must be one of plateau, cosine, onecycle, constant",
        ),
        (lambda: AugmentConfig(vtlp=1.0), "vtlp must be at least 0 and below 1, got 1.0"),
        (lambda: AugmentConfig(speed_perturb=1.5), "speed_perturb must be at least 0 and below 1"),
        (lambda: DecodeConfig(temperature=0), "temperature must be positive"),
        (lambda: ModelConfig(encoder_layers=0), "encoder_layers must be positive"),
        (lambda: ModelConfig(encoder_dropout=1.5), "encoder_dropout must be between 0 and 1"),
        (
            lambda: ModelConfig(reduction_after=0),
            r"reduction_after must be between 1 and encoder_layers \(4\)",
        ),
        (lambda: ModelConfig(reduction_after=5), "reduction_after must be between 1 and encoder_layers"),
        (
            lambda: ModelConfig(predictor="stateless", predictor_context=1),
            "predictor_context must be at least 2",
        ),
        (lambda: TrainConfig(max_steps=-5), "max_steps must be positive"),
        (lambda: TrainConfig(num_threads=-1), "num_threads must be non-negative"),
        (lambda: DecodeConfig(beam_size=0), "beam_size must be positive"),
        (lambda: DecodeConfig(ctc_rescore_weight=-1), "ctc_rescore_weight must be non-negative"),
        (lambda: StreamConfig(chunk_ms=0), "chunk_ms must be positive"),
        (lambda: StreamConfig(endpoint_silence_s=-1), "endpoint_silence_s must be non-negative"),
    ],
)
def test_a_bad_value_fails_at_construction(build, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        build()


def test_the_defaults_and_the_bounds_themselves_are_accepted() -> None:
    FeatureConfig()
    ModelConfig(encoder_dropout=1.0, reduction_after=4)
    ModelConfig(time_reduction=1, reduction_after=0)  # no reduction: the layer is unused
    TrainConfig(max_minutes=0, warmup_steps=0, num_threads=0)
    StreamConfig(endpoint_silence_s=0)
