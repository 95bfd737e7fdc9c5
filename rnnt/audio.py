"""Reading audio of any common format as mono float32 at the model's sample rate."""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile


class AudioError(Exception):
    """An audio file that cannot be used; the message names the file and the reason."""


# ffmpeg's down-mix as `to_mono`'s: its default stereo -> mono matrix weighs each channel by
# 1/sqrt(2), 3 dB louder than the average (and past 1.0); capping the matrix at 1 makes it the
# average exactly (tested).
FFMPEG_MONO = ("-rematrix_maxval", "1.0", "-ac", "1")


def to_mono(samples: np.ndarray) -> np.ndarray:
    """(S,) or (S, channels) -> (S,) by averaging channels."""
    return samples.mean(axis=1) if samples.ndim == 2 else samples


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Polyphase resampling (scipy) of mono float samples."""
    if from_rate == to_rate:
        return samples
    from scipy.signal import resample_poly  # imported here: it takes seconds to import

    divisor = math.gcd(from_rate, to_rate)
    return resample_poly(samples, to_rate // divisor, from_rate // divisor).astype(np.float32)


def load_audio(
    path: str | Path, sample_rate: int, offset: float = 0.0, duration: float | None = None
) -> np.ndarray:
    """Mono float32 samples in [-1, 1] at `sample_rate` from `offset` seconds on.

    libsndfile (wav, flac, ogg, mp3, NIST SPHERE, ...) reads most files; anything else is
    decoded by ffmpeg. Raises `AudioError` for a missing, unreadable or empty file.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such audio file")
    try:
        samples, native_rate = _read_soundfile(path, offset, duration)
    except (soundfile.LibsndfileError, RuntimeError, TypeError):
        samples, native_rate = _read_ffmpeg(path, sample_rate, offset, duration), sample_rate
    samples = resample(to_mono(samples).astype(np.float32), native_rate, sample_rate)
    if samples.size == 0:
        raise AudioError(f"{path}: no audio samples")
    if not np.isfinite(samples).all():
        raise AudioError(f"{path}: audio contains NaN or infinite samples")
    return samples


def _read_soundfile(path: Path, offset: float, duration: float | None) -> tuple[np.ndarray, int]:
    info = soundfile.info(str(path))
    start = round(offset * info.samplerate)
    stop = None if duration is None else start + round(duration * info.samplerate)
    samples, rate = soundfile.read(str(path), start=start, stop=stop, dtype="float32", always_2d=False)
    return samples, rate


def _read_ffmpeg(path: Path, sample_rate: int, offset: float, duration: float | None) -> np.ndarray:
    if shutil.which("ffmpeg") is None:
        raise AudioError(f"{path}: unsupported by libsndfile and ffmpeg is not installed")
    command = ["ffmpeg", "-nostdin", "-v", "error", "-ss", str(offset), "-i", str(path)]
    command += [] if duration is None else ["-t", str(duration)]
    command += ["-f", "f32le", *FFMPEG_MONO, "-ar", str(sample_rate), "-"]
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0:
        reason = result.stderr.decode(errors="replace").strip().splitlines()
        raise AudioError(f"{path}: cannot decode audio ({reason[-1] if reason else 'ffmpeg failed'})")
    return np.frombuffer(result.stdout, dtype=np.float32)


def audio_duration(path: str | Path) -> float:
    """Duration in seconds from the file header (libsndfile), else by decoding."""
    try:
        return float(soundfile.info(str(path)).duration)
    except (soundfile.LibsndfileError, RuntimeError, TypeError):
        rate = 16000
        return len(load_audio(path, rate)) / rate
