"""Rendering: TTS to 16 kHz FLAC, trimmed, with seeded noise and gain, in a process pool."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import random
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from rnnt.demo_corpus.config import DemoCorpusConfig
from rnnt.demo_corpus.plan import Utterance
from rnnt.demo_corpus.voices import synthesize
from rnnt.text import normalize

log = logging.getLogger(__name__)

# Audio.
SAMPLE_RATE = 16000
MIN_SECONDS, MAX_SECONDS = 0.5, 14.0
# Characters of the normalised transcript per second of trimmed audio. The corpus's voices
# speak at most ~30 (espeak-ng's MBROLA voices at their fastest rate; version 6's festival
# us3_mbrola, cut short by a missing diphone, reached 114): faster means the audio lost words.
MAX_CHARS_PER_SECOND = 35.0
KEEP_SILENCE_S = 0.3
MIN_EDGE_SILENCE_S = 0.1
TARGET_PEAK = 0.5  # clean speech peak before the random gain
FRAME_S = 0.01
SILENCE_BELOW_PEAK_DB = 40.0
BROWN_MIN_FREQ_HZ = 20.0
MAX_PEAK = 0.99
RNG_BITS = 64
PROGRESS_EVERY = 2000
SECONDS_PER_HOUR = 3600.0
TMP_SUFFIX = ".tmp"


@dataclasses.dataclass(frozen=True)
class RenderJob:
    """Everything a worker needs to render one utterance."""

    utterance: Utterance
    flac_path: str
    rng_seed: int
    noise_prob: float
    snr_db: tuple[float, float]
    max_gain_db: float


def trim_silence(audio: np.ndarray) -> np.ndarray:
    """Leaves between MIN_EDGE_SILENCE_S and KEEP_SILENCE_S of silence on each side of the speech."""
    frame = round(FRAME_S * SAMPLE_RATE)
    num_frames = len(audio) // frame
    if num_frames == 0:
        return audio[:0]
    energy = np.sqrt(np.mean(audio[: num_frames * frame].reshape(num_frames, frame) ** 2, axis=1))
    loud = np.flatnonzero(energy > energy.max() * 10 ** (-SILENCE_BELOW_PEAK_DB / 20))
    if loud.size == 0 or energy.max() == 0:
        return audio[:0]
    keep, min_edge = round(KEEP_SILENCE_S * SAMPLE_RATE), round(MIN_EDGE_SILENCE_S * SAMPLE_RATE)
    first, last = loud[0] * frame, (loud[-1] + 1) * frame
    start, end = max(0, first - keep), min(len(audio), last + keep)
    return np.pad(audio[start:end], (max(0, min_edge - (first - start)), max(0, min_edge - (end - last))))


def make_noise(kind: str, length: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-power white noise, or brown noise (power ~ 1/f^2) shaped in the frequency domain."""
    noise = rng.standard_normal(length)
    if kind == "brown":
        spectrum = np.fft.rfft(noise)
        spectrum /= np.maximum(np.fft.rfftfreq(length, d=1.0 / SAMPLE_RATE), BROWN_MIN_FREQ_HZ)
        spectrum[0] = 0.0
        noise = np.fft.irfft(spectrum, length)
    return noise / max(float(np.sqrt(np.mean(noise**2))), np.finfo(np.float64).tiny)


def augment(audio: np.ndarray, job: RenderJob) -> np.ndarray:
    """Peak-normalises, adds seeded noise (with probability noise_prob) and gain, and avoids clipping."""
    rng = np.random.default_rng(job.rng_seed)
    add_noise = rng.random() < job.noise_prob
    snr_db = rng.uniform(*job.snr_db)
    gain_db = rng.uniform(-job.max_gain_db, job.max_gain_db)
    audio = audio.astype(np.float64) * (TARGET_PEAK / float(np.abs(audio).max()))
    if add_noise:
        signal_power = float(np.mean(audio**2))
        noise = make_noise(job.utterance.speaker.noise_kind, len(audio), rng)
        audio = audio + noise * np.sqrt(signal_power / 10 ** (snr_db / 10))
    audio *= 10 ** (gain_db / 20)
    peak = float(np.abs(audio).max())
    return audio * (MAX_PEAK / peak) if peak > MAX_PEAK else audio


def synthesize_16k(utterance: Utterance, workdir: Path) -> np.ndarray:
    """TTS output resampled to 16 kHz mono float samples."""
    speaker = utterance.speaker
    text_file, wav, resampled = workdir / "text.txt", workdir / "tts.wav", workdir / "16k.wav"
    text_file.write_text(utterance.text + "\n")
    synthesize(speaker.engine, speaker.voice, speaker.variant, speaker.rate, speaker.pitch, text_file, wav)
    cmd = ["sox", str(wav), "-e", "floating-point", "-b", "32", "-c", "1", str(resampled)]
    subprocess.run([*cmd, "rate", "-h", str(SAMPLE_RATE)], check=True, capture_output=True)
    audio, _ = sf.read(resampled, dtype="float32")
    return audio


def length_status(text: str, seconds: float) -> str:
    """ "ok", or why audio of `seconds` cannot be `text`'s: "bad_length" or "too_fast"."""
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
        return "bad_length"
    if len(normalize(text)) > MAX_CHARS_PER_SECOND * seconds:
        return "too_fast"
    return "ok"


def render(job: RenderJob) -> tuple[str, str, float]:
    """Renders one utterance to FLAC atomically; returns (utt_id, status, seconds)."""
    path = Path(job.flac_path)
    if path.exists():
        return job.utterance.utt_id, "cached", sf.info(path).duration
    try:
        with tempfile.TemporaryDirectory() as tmp:
            audio = trim_silence(synthesize_16k(job.utterance, Path(tmp)))
    except (subprocess.SubprocessError, OSError, RuntimeError):
        return job.utterance.utt_id, "failed", 0.0
    seconds = len(audio) / SAMPLE_RATE
    status = length_status(job.utterance.text, seconds)
    if status != "ok":
        return job.utterance.utt_id, status, seconds
    tmp_path = path.with_name(f"{path.name}.{os.getpid()}{TMP_SUFFIX}")
    sf.write(tmp_path, augment(audio, job), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    os.replace(tmp_path, path)
    return job.utterance.utt_id, "ok", seconds


def render_all(
    output_dir: Path, utterances: list[Utterance], config: DemoCorpusConfig, workers: int
) -> dict[str, tuple[str, float]]:
    """Renders every utterance with `workers` processes; returns utt_id -> (status, seconds)."""
    jobs = []
    for utt in utterances:
        (output_dir / utt.relative_dir).mkdir(parents=True, exist_ok=True)
        rng_seed = random.Random(f"{config.seed}-{utt.utt_id}").getrandbits(RNG_BITS)
        flac = output_dir / utt.relative_dir / f"{utt.utt_id}.flac"
        snr = (config.min_snr_db, config.max_snr_db)
        jobs.append(RenderJob(utt, str(flac), rng_seed, config.noise_prob, snr, config.max_gain_db))
    results = {}
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers) as pool:
        for done, (utt_id, status, seconds) in enumerate(pool.map(render, jobs, chunksize=8), start=1):
            results[utt_id] = (status, seconds)
            if done % PROGRESS_EVERY == 0:
                log.info("rendered %d/%d utterances", done, len(jobs))
    return results
