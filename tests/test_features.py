"""Features: streaming == offline exactly, Kaldi fbank == torchaudio's, snip-edges framing."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
import torchaudio

from rnnt.audio import load_audio
from rnnt.config import FeatureConfig
from rnnt.features import StreamingFeatures, compute_features

from .conftest import REAL_AUDIO, needs_real_audio

SAMPLE_RATE = 16000
INT16_SCALE = 32768.0  # Kaldi works on int16-scaled samples; both sides get the same scaling
SPEECH_FILES = ("jfk.flac", "Lab41-SRI-VOiCES-src-sp0307-ch127535-sg0042.wav", "LJ002-0020.wav")
NUM_SAMPLES = 6000  # a short excerpt keeps the 1-sample chunking fast


ChunkSizes = Callable[[np.random.Generator, int, FeatureConfig], list[int]]


@pytest.fixture(scope="module")
def samples() -> np.ndarray:
    """A short excerpt of real speech if present, else seeded noise (S,) float32."""
    path = REAL_AUDIO / "libri-1088-134315-0000.wav"
    if path.is_file():
        return load_audio(path, SAMPLE_RATE)[SAMPLE_RATE : SAMPLE_RATE + NUM_SAMPLES]
    return np.random.default_rng(0).uniform(-0.5, 0.5, NUM_SAMPLES).astype(np.float32)


def _fill(sizes: list[int], total: int) -> list[int]:
    """Trim `sizes` so that they sum exactly to `total`."""
    out, used = [], 0
    for size in sizes:
        if used >= total:
            break
        out.append(min(size, total - used))
        used += out[-1]
    return out


def _ones_then_random(rng: np.random.Generator, total: int, config: FeatureConfig) -> list[int]:
    """1-sample chunks across the first frames, then random sizes up to three windows."""
    ones = [1] * (config.win_length + 2 * config.hop_length + 7)
    return _fill(ones + rng.integers(1, 3 * config.win_length, total).tolist(), total)


def _smaller_than_hop(rng: np.random.Generator, total: int, config: FeatureConfig) -> list[int]:
    return _fill(rng.integers(1, config.hop_length, total).tolist(), total)


def _one_big_chunk(rng: np.random.Generator, total: int, config: FeatureConfig) -> list[int]:
    return [total]


@pytest.mark.parametrize("feature_kind", ["logmel", "kaldi_fbank"])
@pytest.mark.parametrize("stack_frames", [1, 3])
@pytest.mark.parametrize("hop_length", [160, 320])
@pytest.mark.parametrize("chunking", [_ones_then_random, _smaller_than_hop, _one_big_chunk])
def test_streaming_equals_offline(
    samples: np.ndarray, feature_kind: str, stack_frames: int, hop_length: int, chunking: ChunkSizes
) -> None:
    config = FeatureConfig(feature_kind=feature_kind, stack_frames=stack_frames, hop_length=hop_length)
    sizes = chunking(np.random.default_rng(hop_length + stack_frames), len(samples), config)
    assert sum(sizes) == len(samples)
    stream = StreamingFeatures(config)
    starts = np.cumsum([0, *sizes[:-1]])
    pieces = [stream.accept(samples[start : start + size]) for start, size in zip(starts, sizes, strict=True)]
    assert all(piece.shape[1] == config.feature_dim for piece in pieces)

    offline = compute_features(samples, config)
    streamed = np.concatenate(pieces)
    assert offline.shape[0] > 0
    assert streamed.dtype == offline.dtype == np.float32
    assert np.array_equal(streamed, offline)


def test_streaming_accepts_empty_and_tiny_chunks() -> None:
    config = FeatureConfig()
    stream = StreamingFeatures(config)
    assert stream.accept(np.zeros(0, dtype=np.float32)).shape == (0, config.feature_dim)
    assert stream.accept(np.zeros(1, dtype=np.float32)).shape == (0, config.feature_dim)


@needs_real_audio
@pytest.mark.parametrize("name", SPEECH_FILES)
def test_kaldi_fbank_matches_torchaudio(name: str) -> None:
    config = FeatureConfig(feature_kind="kaldi_fbank", stack_frames=1)
    waveform = load_audio(REAL_AUDIO / name, SAMPLE_RATE) * INT16_SCALE
    ours = compute_features(waveform, config)
    reference = torchaudio.compliance.kaldi.fbank(
        torch.from_numpy(waveform)[None],
        sample_frequency=SAMPLE_RATE,
        frame_length=1000.0 * config.win_length / SAMPLE_RATE,
        frame_shift=1000.0 * config.hop_length / SAMPLE_RATE,
        num_mel_bins=config.num_mel_bins,
        preemphasis_coefficient=config.preemphasis,
        dither=0.0,
        snip_edges=True,
        window_type="povey",
        use_energy=False,
    ).numpy()
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, atol=1e-2, rtol=1e-3)
    assert np.abs(ours - reference).mean() < 1e-4


@pytest.mark.parametrize("hop_length", [160, 320])
@pytest.mark.parametrize("stack_frames", [1, 3])
def test_frame_count_follows_snip_edges(hop_length: int, stack_frames: int) -> None:
    config = FeatureConfig(hop_length=hop_length, stack_frames=stack_frames)
    win, hop = config.win_length, config.hop_length
    rng = np.random.default_rng(1)
    for num_samples in [0, 1, win - 1, win, win + 1, win + hop - 1, win + hop, win + 7 * hop + 3, 8000]:
        samples = rng.uniform(-0.5, 0.5, num_samples).astype(np.float32)
        unstacked = 0 if num_samples < win else 1 + (num_samples - win) // hop
        features = compute_features(samples, config)
        assert features.shape == (unstacked // stack_frames, config.feature_dim), num_samples


def test_rejects_multichannel_input() -> None:
    stereo = np.zeros((16000, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="mono"):
        compute_features(stereo, FeatureConfig())
    with pytest.raises(ValueError):
        StreamingFeatures(FeatureConfig()).accept(stereo)
