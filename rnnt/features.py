"""Audio samples -> stacked log-mel frames, offline and streaming, in numpy.

One implementation serves training, evaluation and streaming. It is numpy rather than
torch because the ONNX Runtime and OpenVINO streaming backends deploy without torch.

Framing follows Kaldi's `snip_edges`: frame k covers samples [k*hop, k*hop + win) and
exists only when all of them do, and pre-emphasis works inside each frame. A frame
therefore depends on its own samples alone, which is what lets `StreamingFeatures`
reproduce the offline features exactly, frame for frame, whatever the chunking.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from rnnt.config import FeatureConfig

LOG_FLOOR = float(np.finfo(np.float32).eps)  # Kaldi's floor before the log.
KALDI_LOW_FREQ_HZ = 20.0  # Kaldi's default lowest mel edge.
POVEY_EXPONENT = 0.85  # Kaldi's "povey" window is a Hann window to this power.
VTLP_BOUNDARY_HZ = 4800.0  # Jaitly & Hinton's f_hi: frequencies up to about here scale by the warp.


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log1p(hz / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * np.expm1(mel / 1127.0)


def warp_frequencies(hz: np.ndarray, warp: float, nyquist: float) -> np.ndarray:
    """Vocal tract length perturbation's piecewise-linear warp (Jaitly & Hinton 2013):
    `hz * warp` below a boundary near VTLP_BOUNDARY_HZ, then a straight line that keeps
    Nyquist where it is (so no band falls off the top or leaves a gap)."""
    corner = VTLP_BOUNDARY_HZ * min(warp, 1.0)
    boundary = corner / warp
    above = nyquist - (nyquist - corner) / (nyquist - boundary) * (nyquist - hz)
    return np.where(hz <= boundary, hz * warp, above)


@functools.lru_cache(maxsize=64)
def mel_filterbank(config: FeatureConfig, warp: float = 1.0) -> np.ndarray:
    """Triangular mel filters, shape (n_fft // 2 + 1, num_mel_bins).

    `logmel` draws the triangles in Hz between HTK mel points (torchaudio's
    `melscale_fbanks`); `kaldi_fbank` draws them on the mel axis from 20 Hz (Kaldi's).
    A `warp` other than 1 moves each FFT bin to `warp_frequencies` of its frequency first, so
    the speech looks as if spoken by a vocal tract `warp` times shorter (training only).
    """
    kaldi = config.feature_kind == "kaldi_fbank"
    low = KALDI_LOW_FREQ_HZ if kaldi else 0.0
    edges = np.linspace(
        _hz_to_mel(np.array(low)), _hz_to_mel(np.array(config.sample_rate / 2)), config.num_mel_bins + 2
    )
    bin_hz = np.linspace(0.0, config.sample_rate / 2, config.n_fft // 2 + 1)
    if warp != 1.0:
        bin_hz = warp_frequencies(bin_hz, warp, config.sample_rate / 2)
    axis = _hz_to_mel(bin_hz) if kaldi else bin_hz
    points = edges if kaldi else _mel_to_hz(edges)
    left, center, right = points[:-2], points[1:-1], points[2:]
    rising = (axis[:, None] - left) / (center - left)
    falling = (right - axis[:, None]) / (right - center)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


@functools.lru_cache(maxsize=8)
def analysis_window(config: FeatureConfig) -> np.ndarray:
    """The (win_length,) window: periodic Hann, or Kaldi's symmetric povey window."""
    n = np.arange(config.win_length)
    if config.feature_kind == "kaldi_fbank":
        hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / (config.win_length - 1))
        return (hann**POVEY_EXPONENT).astype(np.float32)
    return (0.5 - 0.5 * np.cos(2 * np.pi * n / config.win_length)).astype(np.float32)


def num_frames(num_samples: int, config: FeatureConfig) -> int:
    """Unstacked frames in `num_samples` samples (snip-edges framing)."""
    if num_samples < config.win_length:
        return 0
    return 1 + (num_samples - config.win_length) // config.hop_length


@dataclass(frozen=True)
class _Tables:
    """What `_log_mel` multiplies by, made once per configuration and warp (see `mel_filterbank`)."""

    window: np.ndarray  # (win_length,) float64
    fft_bins: np.ndarray  # the FFT bin of each non-zero filterbank weight, by mel bin then FFT bin
    weights: np.ndarray  # those weights, float64
    starts: np.ndarray  # where each non-empty mel bin's run of weights starts
    nonempty: np.ndarray  # the mel bins with at least one weight


@functools.lru_cache(maxsize=64)
def _tables(config: FeatureConfig, warp: float) -> _Tables:
    filterbank = mel_filterbank(config, warp).astype(np.float64)
    mel_bins, fft_bins = np.nonzero(filterbank.T)
    nonempty = np.unique(mel_bins)
    window = analysis_window(config).astype(np.float64)
    return _Tables(
        window, fft_bins, filterbank[fft_bins, mel_bins], np.searchsorted(mel_bins, nonempty), nonempty
    )


def _log_mel(frames: np.ndarray, config: FeatureConfig, tables: _Tables) -> np.ndarray:
    """Raw frames (N, win_length) -> log-mel frames (N, num_mel_bins), float32.

    Every output row depends only on its input row (what makes streaming equal offline).
    """
    frames = frames.astype(np.float64)
    if config.feature_kind == "kaldi_fbank":
        frames = frames - frames.mean(axis=1, keepdims=True)
    previous = np.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
    frames = (frames - config.preemphasis * previous) * tables.window
    spectrum = np.fft.rfft(frames, n=config.n_fft, axis=1)
    power = spectrum.real**2 + spectrum.imag**2
    mel = _apply_filterbank(power, config, tables)
    return np.log(np.maximum(mel, LOG_FLOOR)).astype(np.float32).reshape(-1, config.num_mel_bins)


def _apply_filterbank(power: np.ndarray, config: FeatureConfig, tables: _Tables) -> np.ndarray:
    """Power spectra (N, n_fft // 2 + 1) -> mel energies (N, num_mel_bins), float64.

    Each mel triangle covers a few FFT bins, so the weighted bins are summed run by run
    (`add.reduceat`, about a fortieth of a dense product's multiplications) along each row alone: a
    frame's value cannot depend on how many frames share the call, which a BLAS product
    does not promise (it may change its summation order with the matrix shape). A triangle
    narrower than the FFT's bin spacing can hold no bin: its energy is 0.
    """
    mel = np.zeros((len(power), config.num_mel_bins))
    if len(power):
        weighted = power[:, tables.fft_bins] * tables.weights
        mel[:, tables.nonempty] = np.add.reduceat(weighted, tables.starts, axis=1)
    return mel


def stack(features: np.ndarray, stack_frames: int) -> np.ndarray:
    """(N, F) -> (N // stack_frames, F * stack_frames); a trailing remainder is dropped."""
    usable = len(features) - len(features) % stack_frames
    return features[:usable].reshape(usable // stack_frames, features.shape[1] * stack_frames)


def compute_features(samples: np.ndarray, config: FeatureConfig, warp: float = 1.0) -> np.ndarray:
    """Mono samples (S,) in [-1, 1] at `config.sample_rate` -> model frames (T, D).

    `warp` != 1 applies vocal tract length perturbation (training only; `mel_filterbank`).
    """
    if samples.ndim != 1:
        raise ValueError(f"expected mono samples of shape (S,), got {samples.shape}")
    count = num_frames(len(samples), config)
    unstacked = _log_mel(
        samples[frame_indices(count, config.hop_length, config.win_length)], config, _tables(config, warp)
    )
    return stack(unstacked, config.stack_frames)


class StreamingFeatures:
    """Incremental `compute_features`: feed samples in any chunks, get the same frames.

    Carries the samples of the frame not yet complete and the frames not yet stacked.
    """

    def __init__(self, config: FeatureConfig):
        self.config = config
        self._samples = np.zeros(0, dtype=np.float32)
        self._pending = np.zeros((0, config.num_mel_bins), dtype=np.float32)
        self._tables = _tables(config, 1.0)  # looked up once: each lookup hashes the config

    def accept(self, samples: np.ndarray) -> np.ndarray:
        """Append mono samples (S,); return the model frames (T, D) they completed."""
        buffered = np.concatenate([self._samples, samples.astype(np.float32)])
        count = num_frames(len(buffered), self.config)
        indices = _streaming_frame_indices(count, self.config.hop_length, self.config.win_length)
        new = _log_mel(buffered[indices], self.config, self._tables)
        self._samples = buffered[count * self.config.hop_length :]
        pending = np.concatenate([self._pending, new])
        ready = stack(pending, self.config.stack_frames)
        self._pending = pending[len(ready) * self.config.stack_frames :]
        return ready


def frame_indices(count: int, hop_length: int, win_length: int) -> np.ndarray:
    """(count, win_length) sample indices of the first `count` frames."""
    return np.arange(count)[:, None] * hop_length + np.arange(win_length)


# A stream's chunks need the same few frame counts again and again (keyed by ints: hashing the
# config costs more than the indices); offline utterances each their own, so they are not cached.
_streaming_frame_indices = functools.lru_cache(maxsize=8)(frame_indices)
