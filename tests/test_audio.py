"""Audio loading: every real-world format to mono float32 at 16 kHz; bad files named in errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from rnnt.audio import AudioError, load_audio

from .conftest import REAL_AUDIO, needs_real_audio

SAMPLE_RATE = 16000
DURATION_TOLERANCE = 0.01  # relative

# File -> duration in seconds (from the file headers; see /work/shared/real/README.md).
REAL_FILES = {
    "jfk.flac": 11.0,  # flac, 44.1 kHz stereo
    "LJ002-0020.wav": 1.5396,  # wav, 22.05 kHz
    "LJ002-0035.wav": 1.5977,  # wav, 22.05 kHz
    "common_voice_en_651325.mp3": 2.380,  # mp3, 48 kHz
    "stereo.sph": 1.0,  # NIST SPHERE, 8 kHz stereo
    "Lab41-SRI-VOiCES-src-sp0307-ch127535-sg0042.wav": 3.4,  # wav, 16 kHz
    "libri-1088-134315-0000.wav": 16.04,  # wav, 16 kHz
}


@needs_real_audio
@pytest.mark.parametrize("name", sorted(REAL_FILES))
def test_real_files_load_as_mono_16k(name: str) -> None:
    samples = load_audio(REAL_AUDIO / name, SAMPLE_RATE)
    assert samples.dtype == np.float32
    assert samples.ndim == 1
    assert len(samples) / SAMPLE_RATE == pytest.approx(REAL_FILES[name], rel=DURATION_TOLERANCE)
    assert np.isfinite(samples).all()
    assert np.sqrt(np.mean(samples**2)) > 1e-3  # not silence


@needs_real_audio
def test_every_real_file_is_covered() -> None:
    audio = {p.name for p in REAL_AUDIO.iterdir() if p.suffix != ".md"}
    assert audio == set(REAL_FILES)


def _missing(tmp_path: Path) -> Path:
    return tmp_path / "missing.wav"


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    return path


def _corrupt(tmp_path: Path) -> Path:
    path = tmp_path / "corrupt.wav"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    return path


@pytest.mark.parametrize("make_file", [_missing, _empty, _corrupt])
def test_bad_file_raises_audio_error_naming_it(tmp_path: Path, make_file: Callable[[Path], Path]) -> None:
    path = make_file(tmp_path)
    with pytest.raises(AudioError) as raised:
        load_audio(path, SAMPLE_RATE)
    assert str(path) in str(raised.value)
