"""Training-time augmentation in numpy, driven by an explicit generator (reproducible)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import scipy.signal

from rnnt.config import AugmentConfig, FeatureConfig

INT16_SCALE = 32768.0  # dither amplitudes are given on the int16 sample scale
SPEED_RATIO_DENOMINATOR = 100  # speeds are rounded to ratios p/q with q <= this (cheap polyphase filters)
VTLP_STEP = 0.01  # warps are rounded to this, so the few warped filterbanks stay cached
EQ_POINTS = 5  # control points of the random frequency response, evenly spaced over the mel bins
NEPER_PER_DB = np.log(10.0) / 10.0  # a power ratio of x dB is x * this in natural-log features


def augment_samples(samples: np.ndarray, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Speed perturbation, random gain, white noise at a random SNR, and dither."""
    out = samples.astype(np.float32)
    if config.speed_perturb > 0:
        out = change_speed(out, 1.0 + config.speed_perturb * float(rng.integers(-1, 2)))
    if config.gain_db > 0:
        out = out * np.float32(10 ** (rng.uniform(-config.gain_db, config.gain_db) / 20))
    if config.noise_prob > 0 and rng.random() < config.noise_prob:
        snr_db = rng.uniform(config.noise_snr_db, config.noise_snr_db + 20.0)
        power = float(np.mean(out**2)) + 1e-10
        out = out + rng.normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), out.shape).astype(np.float32)
    if config.dither > 0:
        out = out + rng.normal(0.0, config.dither / INT16_SCALE, out.shape).astype(np.float32)
    return out


def change_speed(samples: np.ndarray, speed: float) -> np.ndarray:
    """The audio played `speed` times faster, tempo and pitch together (Kaldi's speed
    perturbation, Ko et al. 2015): resampled to 1/speed of its length."""
    ratio = Fraction(speed).limit_denominator(SPEED_RATIO_DENOMINATOR)
    if ratio == 1:
        return samples
    resampled = scipy.signal.resample_poly(samples, ratio.denominator, ratio.numerator)
    return resampled.astype(np.float32)


def vtlp_warp(config: AugmentConfig, rng: np.random.Generator) -> float:
    """A random frequency warp for `compute_features` (1.0 when VTLP is off; draws nothing then)."""
    if config.vtlp <= 0:
        return 1.0
    return round(rng.uniform(1.0 - config.vtlp, 1.0 + config.vtlp) / VTLP_STEP) * VTLP_STEP


def random_eq(config: AugmentConfig, num_bins: int, rng: np.random.Generator) -> np.ndarray:
    """A random frequency response (num_bins,), in log-power units: piecewise linear through
    EQ_POINTS gains drawn in [-eq_db, +eq_db] dB, evenly spaced over the mel bins.

    It imitates what tells voices apart besides pitch and formant positions: spectral tilt and
    broad resonances, as espeak-ng's own variants set them (their `tone` attribute is such a
    piecewise-linear response). Zeros when off, drawing nothing.
    """
    if config.eq_db <= 0:
        return np.zeros(num_bins, dtype=np.float32)
    gains = rng.uniform(-config.eq_db, config.eq_db, EQ_POINTS) * NEPER_PER_DB
    curve = np.interp(np.arange(num_bins), np.linspace(0, num_bins - 1, EQ_POINTS), gains)
    return curve.astype(np.float32)


def augment_features(
    features: np.ndarray, config: AugmentConfig, feature_config: FeatureConfig, rng: np.random.Generator
) -> np.ndarray:
    """Random EQ (`random_eq`), then SpecAugment (Park et al. 2019) time and frequency masks,
    on stacked frames (T, D).

    The EQ and a frequency mask act on the same mel bins of every stacked sub-frame; masked
    values are set to the utterance mean, which LayerNorm input normalisation treats as neutral.
    """
    bins = feature_config.num_mel_bins
    out = features + np.tile(random_eq(config, bins, rng), feature_config.stack_frames)
    fill = float(out.mean()) if out.size else 0.0
    frames = len(out)
    widest = min(config.time_mask_frames, int(config.time_mask_max_ratio * frames))
    for _ in range(config.time_masks if widest > 0 else 0):
        width = int(rng.integers(0, widest + 1))
        start = int(rng.integers(0, frames - width + 1))
        out[start : start + width] = fill
    view = out.reshape(frames, feature_config.stack_frames, bins)
    for _ in range(config.freq_masks):
        width = int(rng.integers(0, min(config.freq_mask_bins, bins) + 1))
        start = int(rng.integers(0, bins - width + 1))
        view[:, :, start : start + width] = fill
    return out
