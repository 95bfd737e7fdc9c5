"""Synthesise a seeded English speech corpus in LibriSpeech layout with espeak-ng and flite.

Text comes from Debian's fortunes; dev/test use sentences and (voice, variant) combinations never
seen in train. Re-running is cheap: a finished corpus is detected by its stamp file, and an
interrupted run only renders the missing audio files.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
from absl import app, flags

try:
    from rnnt import atomic
    from rnnt.text import normalize
except ImportError:  # run as a script from a checkout where the package is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from rnnt import atomic
    from rnnt.text import normalize

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", "datasets/demo", "Corpus root (LibriSpeech layout below it).")
flags.DEFINE_string("fortunes_dir", "/usr/share/games/fortunes", "Directory with fortune text files.")
flags.DEFINE_integer("seed", 0, "Seed for every random choice.")
flags.DEFINE_integer("num_dev_sentences", 300, "Sentences held out for dev.")
flags.DEFINE_integer("num_test_sentences", 300, "Sentences held out for test.")
flags.DEFINE_integer("num_train_speakers", 120, "Synthetic train speakers.")
flags.DEFINE_integer("num_dev_speakers", 10, "Synthetic dev speakers.")
flags.DEFINE_integer("num_test_speakers", 10, "Synthetic test speakers.")
flags.DEFINE_integer("renderings", 1, "Renderings of each train sentence by different speakers.")
flags.DEFINE_integer("max_train_utterances", 0, "Cap on train utterances (0 = no cap).")
flags.DEFINE_float("noise_prob", 0.3, "Probability that an utterance gets additive noise.")
flags.DEFINE_float("min_snr_db", 10.0, "Lowest SNR of added noise.")
flags.DEFINE_float("max_snr_db", 30.0, "Highest SNR of added noise.")
flags.DEFINE_float("max_gain_db", 6.0, "Random gain in [-max_gain_db, +max_gain_db] for every utterance.")
flags.DEFINE_integer("jobs", 2, "Worker processes.")
flags.DEFINE_integer(
    "cross_utterances",
    0,
    "Also render diagnostic sets under <output_dir>/cross/, this many utterances each: training "
    "sentences spoken by training speakers and by test speakers, and test sentences spoken by "
    "training speakers (0: none).",
)

SPLITS = ("train", "dev", "test")
PARAM_FLAGS = (  # flags that determine the corpus content
    "seed",
    "num_dev_sentences",
    "num_test_sentences",
    "num_train_speakers",
    "num_dev_speakers",
    "num_test_speakers",
    "renderings",
    "max_train_utterances",
    "noise_prob",
    "min_snr_db",
    "max_snr_db",
    "max_gain_db",
    "fortunes_dir",
)
SPEAKER_COLUMNS = (
    "speaker_id",
    "split",
    "engine",
    "voice",
    "variant",
    "rate",
    "pitch",
    "noise_kind",
    "noise_prob",
    "min_snr_db",
    "max_snr_db",
)
REQUIRED_TOOLS = ("espeak-ng", "flite", "sox")
GENERATOR_VERSION = 2  # 2: slt (flite's only female voice) is never held out
STAMP_FILE = ".complete.json"
PARAMS_FILE = ".params.json"
SPEAKERS_FILE = "speakers.tsv"
TMP_SUFFIX = ".tmp"

# Text selection.
MIN_WORDS, MAX_WORDS = 3, 20
MIN_LETTER_FRACTION = 0.8  # letters among non-space characters of a sentence
MIN_FILE_LETTER_FRACTION = 0.6  # below this a fortune file is ASCII art
SKIPPED_SUFFIXES = (".dat", ".u8")
FORBIDDEN_CHARS = re.compile(r"[@#$%&*_/\\<>=|~^\[\]{}]")
URL = re.compile(r"https?:|www\.|\.(com|org|net|edu)\b", re.IGNORECASE)
ACRONYM = re.compile(r"\b[A-Z]{2,}\b|\b[A-Za-z]\.[A-Za-z]\.")
_ABBREVIATION_WORDS = "mr mrs ms dr st jr sr vs etc prof gen col lt capt sgt mt no rev gov sen rep ft"
ABBREVIATIONS = frozenset(_ABBREVIATION_WORDS.split())
FORTUNE_SEPARATOR = re.compile(r"^%\s*$", re.MULTILINE)
ATTRIBUTION = re.compile(r"^\s*--.*$", re.MULTILINE)
SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')]))\s+")
COMPLETE_SENTENCE = re.compile(r"^[\"'(]?[A-Z].*[.!?][\"')]*$")

# Voices. A variant "" means the voice's own default.
_ESPEAK_VOICE_NAMES = "en-us en-gb en-gb-scotland en-gb-x-rp en-gb-x-gbclan en-gb-x-gbcwmd en-029 en-us-nyc"
# Natural-sounding variants only (no whisper, robot, demonic or announcer effects).
_ESPEAK_VARIANT_NAMES = """m1 m2 m3 m4 m5 m6 m7 m8 f1 f2 f3 f4 f5 klatt klatt2 klatt3 klatt4 klatt5 klatt6
    adam Alex Alicia Andrea Andy Annie aunty belinda benjamin boris caleb david ed edward edward2 Gene Gene2
    grandma grandpa gustave iven iven2 iven3 iven4 Jacky john Lee linda max Michael Mike norbert paul quincy
    rob robert shelby steph steph2 steph3 travis victor zac"""
ESPEAK_VOICES = tuple(_ESPEAK_VOICE_NAMES.split())
ESPEAK_VARIANTS = ("", *_ESPEAK_VARIANT_NAMES.split())
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
# One male flite voice is held out for dev and test. Never kal (kal and kal16 are one voice:
# never split them) and never slt: it is flite's only female voice, so without it training has
# no female flite speech and the held-out slt speakers scored 91% WER (generator version 1).
FLITE_HOLDOUT_CANDIDATES = ("awb", "rms")
PROBE_TEXT = "This is a test."
HOLDOUT_FRACTION = 0.15  # of espeak (voice, variant) combinations, reserved for dev and test
FLITE_SPEAKER_FRACTION = 0.25
ESPEAK_SPEED_WPM = (130, 210)
ESPEAK_PITCH = (25, 75)
FLITE_DURATION_STRETCH = (0.8, 1.25)
FLITE_F0_HZ = {"slt": (140.0, 200.0)}
FLITE_DEFAULT_F0_HZ = (90.0, 145.0)
NOISE_KINDS = ("white", "brown")
FIRST_SPEAKER_ID = {"train": 1000, "dev": 5000, "test": 7000}
FIRST_CHAPTER_ID = 10000
# Diagnostic sets that split the dev/test gap into unseen sentences and unseen voices:
# name -> (split whose sentences are spoken, split whose speakers speak them).
CROSS_DIR = "cross"
CROSS_SETS = {
    "train_sentences_train_speakers": ("train", "train"),
    "test_sentences_train_speakers": ("test", "train"),
    "train_sentences_test_speakers": ("train", "test"),
}
CROSS_CHAPTER_ID = 1
UTTERANCES_PER_CHAPTER = 50

# Audio.
SAMPLE_RATE = 16000
MIN_SECONDS, MAX_SECONDS = 0.5, 14.0
KEEP_SILENCE_S = 0.3
MIN_EDGE_SILENCE_S = 0.1
TARGET_PEAK = 0.5  # clean speech peak before the random gain
FRAME_S = 0.01
SILENCE_BELOW_PEAK_DB = 40.0
BROWN_MIN_FREQ_HZ = 20.0
MAX_PEAK = 0.99
SYNTH_TIMEOUT_S = 60
RNG_BITS = 64
PROGRESS_EVERY = 2000
SECONDS_PER_HOUR = 3600.0


@dataclasses.dataclass(frozen=True)
class Speaker:
    """A synthetic speaker: one TTS voice with fixed rate, pitch and noise environment."""

    speaker_id: int
    split: str
    engine: str
    voice: str
    variant: str
    rate: float  # espeak words per minute, or flite duration stretch
    pitch: float  # espeak pitch 0-99, or flite mean F0 in Hz
    noise_kind: str


@dataclasses.dataclass(frozen=True)
class Utterance:
    """One audio file to render."""

    utt_id: str
    speaker: Speaker
    chapter_id: int
    text: str

    @property
    def relative_dir(self) -> Path:
        return Path(self.speaker.split, str(self.speaker.speaker_id), str(self.chapter_id))


@dataclasses.dataclass(frozen=True)
class RenderJob:
    """Everything a worker needs to render one utterance."""

    utterance: Utterance
    flac_path: str
    rng_seed: int
    noise_prob: float
    snr_db: tuple[float, float]
    max_gain_db: float


# ---------------------------------------------------------------- text


def fortune_files(fortunes_dir: Path) -> list[Path]:
    """Fortune text files, sorted; skips index files, the offensive dir and ASCII art."""
    files = []
    for path in sorted(fortunes_dir.iterdir()):
        if not path.is_file() or path.suffix in SKIPPED_SUFFIXES:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        visible = [c for c in text if not c.isspace()]
        if visible and sum(c.isalpha() for c in visible) / len(visible) >= MIN_FILE_LETTER_FRACTION:
            files.append(path)
    return files


def split_sentences(fortune: str) -> list[str]:
    """Joins wrapped lines of one fortune (minus attributions) and splits it into sentences."""
    text = " ".join(ATTRIBUTION.sub("", fortune).split())
    sentences = []
    after_abbreviation = False  # a piece following "Mr." or an initial is a fragment
    for piece in SENTENCE_END.split(text):
        is_abbreviated = ends_with_abbreviation(piece)
        if piece and not (after_abbreviation or is_abbreviated):
            sentences.append(piece)
        after_abbreviation = is_abbreviated
    return sentences


def ends_with_abbreviation(piece: str) -> bool:
    """True if a split point after this piece was an abbreviation or initial rather than a sentence end."""
    words = piece.rstrip(".").split()
    return piece.endswith(".") and bool(words) and (words[-1].lower() in ABBREVIATIONS or len(words[-1]) == 1)


def is_good_sentence(sentence: str) -> bool:
    """A complete, plain-ASCII sentence of 3-20 words that TTS reads exactly as its transcript."""
    if not (sentence.isascii() and sentence.isprintable() and COMPLETE_SENTENCE.match(sentence)):
        return False
    if FORBIDDEN_CHARS.search(sentence) or URL.search(sentence) or ACRONYM.search(sentence):
        return False
    words = normalize(sentence).split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS or any(c.isdigit() for c in sentence):
        return False
    visible = [c for c in sentence if not c.isspace()]
    return sum(c.isalpha() for c in visible) / len(visible) >= MIN_LETTER_FRACTION


def load_sentences(fortunes_dir: Path) -> list[str]:
    """Unique good sentences (deduplicated by normalised text) in file order."""
    seen: set[str] = set()
    sentences = []
    for path in fortune_files(fortunes_dir):
        for fortune in FORTUNE_SEPARATOR.split(path.read_text(encoding="utf-8", errors="replace")):
            for sentence in split_sentences(fortune):
                key = normalize(sentence)
                if key not in seen and is_good_sentence(sentence):
                    seen.add(key)
                    sentences.append(sentence)
    return sentences


def split_sentence_sets(sentences: Sequence[str], seed: int) -> dict[str, list[str]]:
    """Seeded shuffle, then dev and test take the first sentences and train the rest."""
    shuffled = list(sentences)
    random.Random(f"{seed}-sentences").shuffle(shuffled)
    num_dev, num_test = FLAGS.num_dev_sentences, FLAGS.num_test_sentences
    return {
        "dev": shuffled[:num_dev],
        "test": shuffled[num_dev : num_dev + num_test],
        "train": shuffled[num_dev + num_test :],
    }


# ---------------------------------------------------------------- voices


def synthesize(
    engine: str, voice: str, variant: str, rate: float, pitch: float, text_file: Path, wav: Path
) -> None:
    """Runs one TTS engine on a text file; raises on failure."""
    if engine == "espeak-ng":
        name = f"{voice}+{variant}" if variant else voice
        cmd = ["espeak-ng", "-v", name, "-s", str(round(rate)), "-p", str(round(pitch)), "-f", str(text_file)]
        cmd += ["-w", str(wav)]
    else:
        cmd = ["flite", "-voice", voice, "--setf", f"duration_stretch={rate:.3f}"]
        cmd += ["--setf", f"int_f0_target_mean={pitch:.1f}", "-f", str(text_file), "-o", str(wav)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=SYNTH_TIMEOUT_S)


def probe(voice: str, variant: str) -> bytes:
    """Audio bytes espeak-ng produces for a short phrase (empty on failure)."""
    with tempfile.TemporaryDirectory() as tmp:
        text_file, wav = Path(tmp, "text.txt"), Path(tmp, "out.wav")
        text_file.write_text(PROBE_TEXT)
        try:
            synthesize(
                "espeak-ng", voice, variant, sum(ESPEAK_SPEED_WPM) / 2, sum(ESPEAK_PITCH) / 2, text_file, wav
            )
            data, _ = sf.read(wav, dtype="float32")
        except (subprocess.SubprocessError, OSError, RuntimeError):
            return b""
        return data.tobytes() if data.size and np.abs(data).max() > 0 else b""


def working_espeak_voices() -> tuple[list[str], list[str]]:
    """Voices that speak, and variants that audibly change the default voice (espeak ignores unknown ones)."""
    voices = [v for v in ESPEAK_VOICES if probe(v, "")]
    if not voices:
        return [], []
    reference = probe(voices[0], "")
    variants = [""] + [v for v in ESPEAK_VARIANTS if v and probe(voices[0], v) not in (b"", reference)]
    return voices, variants


def working_flite_voices() -> list[str]:
    """Flite voices compiled into the installed flite binary."""
    listing = subprocess.run(["flite", "-lv"], capture_output=True, text=True, check=False).stdout
    available = set(listing.split(":", 1)[-1].split())
    return [v for v in FLITE_VOICES if v in available]


def split_combinations(
    espeak_voices: list[str], espeak_variants: list[str], flite_voices: list[str], seed: int
) -> dict[str, list[tuple[str, str, str]]]:
    """(engine, voice, variant) combinations per split; dev and test get unseen ones."""
    rng = random.Random(f"{seed}-combinations")
    espeak = [("espeak-ng", v, var) for v in espeak_voices for var in espeak_variants]
    rng.shuffle(espeak)
    num_held = max(2, round(HOLDOUT_FRACTION * len(espeak)))
    held_flite = rng.choice([v for v in FLITE_HOLDOUT_CANDIDATES if v in flite_voices] or [None])
    flite_train = [("flite", v, "") for v in flite_voices if v != held_flite]
    flite_held = [("flite", held_flite, "")] if held_flite else []
    return {
        "train": espeak[num_held:] + flite_train,
        "dev": espeak[: num_held // 2] + flite_held,
        "test": espeak[num_held // 2 : num_held] + flite_held,
    }


def make_speakers(split: str, combinations: list[tuple], count: int, seed: int) -> list[Speaker]:
    """`count` speakers cycling through the split's shuffled combinations, with random prosody."""
    rng = random.Random(f"{seed}-speakers-{split}")
    espeak = [c for c in combinations if c[0] == "espeak-ng"]
    flite = [c for c in combinations if c[0] == "flite"]
    rng.shuffle(espeak)
    num_flite = round(FLITE_SPEAKER_FRACTION * count) if flite else 0
    chosen = [flite[i % len(flite)] for i in range(num_flite)]
    chosen += [espeak[i % len(espeak)] for i in range(count - num_flite)]
    speakers = []
    for index, (engine, voice, variant) in enumerate(chosen):
        if engine == "espeak-ng":
            rate, pitch = rng.uniform(*ESPEAK_SPEED_WPM), rng.uniform(*ESPEAK_PITCH)
        else:
            rate, pitch = (
                rng.uniform(*FLITE_DURATION_STRETCH),
                rng.uniform(*FLITE_F0_HZ.get(voice, FLITE_DEFAULT_F0_HZ)),
            )
        speaker_id = FIRST_SPEAKER_ID[split] + index
        noise_kind = rng.choice(NOISE_KINDS)
        speakers.append(
            Speaker(speaker_id, split, engine, voice, variant, round(rate, 3), round(pitch, 1), noise_kind)
        )
    return speakers


# ---------------------------------------------------------------- utterances


def assign_speakers(split: str, sentences: list[str], speakers: list[Speaker], seed: int) -> list[tuple]:
    """(speaker, sentence) pairs: train sentences get `renderings` distinct speakers, others one."""
    rng = random.Random(f"{seed}-assign-{split}")
    renderings = min(FLAGS.renderings, len(speakers)) if split == "train" else 1
    pairs = [(speaker, s) for s in sentences for speaker in rng.sample(speakers, renderings)]
    if split == "train" and FLAGS.max_train_utterances > 0:
        pairs = pairs[: FLAGS.max_train_utterances]
    return pairs


def group_into_chapters(pairs: list[tuple], first_chapter_id: int) -> list[Utterance]:
    """LibriSpeech-style ids: utterances of one speaker in chapters of UTTERANCES_PER_CHAPTER."""
    by_speaker: dict[Speaker, list[str]] = defaultdict(list)
    for speaker, sentence in pairs:
        by_speaker[speaker].append(sentence)
    utterances = []
    chapter_id = first_chapter_id
    for speaker in sorted(by_speaker, key=lambda s: s.speaker_id):
        texts = by_speaker[speaker]
        for start in range(0, len(texts), UTTERANCES_PER_CHAPTER):
            for index, text in enumerate(texts[start : start + UTTERANCES_PER_CHAPTER]):
                utterances.append(
                    Utterance(f"{speaker.speaker_id}-{chapter_id}-{index:04d}", speaker, chapter_id, text)
                )
            chapter_id += 1
    return utterances


# ---------------------------------------------------------------- audio


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
    if not MIN_SECONDS <= seconds <= MAX_SECONDS:
        return job.utterance.utt_id, "bad_length", seconds
    tmp_path = path.with_name(f"{path.name}.{os.getpid()}{TMP_SUFFIX}")
    sf.write(tmp_path, augment(audio, job), SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    os.replace(tmp_path, path)
    return job.utterance.utt_id, "ok", seconds


# ---------------------------------------------------------------- output files


def read_json(path: Path) -> dict | None:
    """Parsed JSON file, or None if missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def is_up_to_date(output_dir: Path, params: dict) -> bool:
    """True if a finished corpus with these parameters is already there."""
    stamp = read_json(output_dir / STAMP_FILE)
    return stamp is not None and stamp.get("params") == params


def prepare_output_dir(output_dir: Path, params: dict) -> None:
    """Clears output of a run with other parameters and records `params` for the next run."""
    previous = read_json(output_dir / PARAMS_FILE)
    existing = [output_dir / d for d in (*SPLITS, CROSS_DIR) if (output_dir / d).exists()]
    if previous is None and existing:
        raise app.UsageError(f"{output_dir} has corpus directories but no {PARAMS_FILE}; remove them first")
    if previous is not None and previous != params:
        print(f"parameters changed: removing old corpus in {output_dir}")
        for path in existing:
            shutil.rmtree(path)
    (output_dir / STAMP_FILE).unlink(missing_ok=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic.write_text(output_dir / PARAMS_FILE, json.dumps(params, indent=1, sort_keys=True))


def remove_temporary_files(output_dir: Path) -> None:
    """Deletes leftovers of a killed run."""
    for split in (*SPLITS, CROSS_DIR):
        for path in (output_dir / split).rglob(f"*{TMP_SUFFIX}"):
            path.unlink()


def write_speakers(output_dir: Path, speakers: Iterable[Speaker]) -> None:
    """speakers.tsv with the TTS and noise settings of every speaker."""
    rows = ["\t".join(SPEAKER_COLUMNS)]
    for s in speakers:
        fields = (s.speaker_id, s.split, s.engine, s.voice, s.variant or "-", s.rate, s.pitch, s.noise_kind)
        rows.append("\t".join(map(str, (*fields, FLAGS.noise_prob, FLAGS.min_snr_db, FLAGS.max_snr_db))))
    atomic.write_text(output_dir / SPEAKERS_FILE, "\n".join(rows) + "\n")


def write_transcripts(output_dir: Path, utterances: Iterable[Utterance]) -> None:
    """One <speaker>-<chapter>.trans.txt per chapter listing the rendered utterances."""
    chapters: dict[Path, list[str]] = defaultdict(list)
    for utt in utterances:
        chapters[utt.relative_dir].append(f"{utt.utt_id} {normalize(utt.text).upper()}")
    for relative_dir, lines in chapters.items():
        speaker_id, chapter_id = relative_dir.parts[-2:]
        atomic.write_text(
            output_dir / relative_dir / f"{speaker_id}-{chapter_id}.trans.txt", "\n".join(lines) + "\n"
        )


def plan_cross_sets(
    utterances: list[Utterance], speakers: list[Speaker], count: int, seed: int
) -> list[Utterance]:
    """`count` seeded sentences of one split, each spoken by a random speaker of another (CROSS_SETS)."""
    planned = []
    for name, (text_split, speaker_split) in CROSS_SETS.items():
        rng = random.Random(f"{seed}-cross-{name}")
        texts = [u.text for u in utterances if u.speaker.split == text_split]
        pool = [s for s in speakers if s.split == speaker_split]
        for index, text in enumerate(rng.sample(texts, min(count, len(texts)))):
            speaker = dataclasses.replace(rng.choice(pool), split=f"{CROSS_DIR}/{name}")
            utt_id = f"{speaker.speaker_id}-{CROSS_CHAPTER_ID}-{index:04d}"
            planned.append(Utterance(utt_id, speaker, CROSS_CHAPTER_ID, text))
    return planned


# ---------------------------------------------------------------- driver


def generation_params() -> dict:
    """The flag values that determine the corpus content."""
    return {"generator_version": GENERATOR_VERSION, **{name: FLAGS[name].value for name in PARAM_FLAGS}}


def plan_corpus(
    sentence_sets: dict[str, list[str]], voice_pool: dict, seed: int
) -> tuple[list[Speaker], list[Utterance]]:
    """All speakers and utterances of the corpus, decided before any audio is rendered."""
    combinations = split_combinations(
        voice_pool["espeak_voices"], voice_pool["espeak_variants"], voice_pool["flite_voices"], seed
    )
    counts = {
        "train": FLAGS.num_train_speakers,
        "dev": FLAGS.num_dev_speakers,
        "test": FLAGS.num_test_speakers,
    }
    speakers: list[Speaker] = []
    utterances: list[Utterance] = []
    for split in SPLITS:
        split_speakers = make_speakers(split, combinations[split], counts[split], seed)
        pairs = assign_speakers(split, sentence_sets[split], split_speakers, seed)
        utterances += group_into_chapters(pairs, FIRST_CHAPTER_ID + len({u.chapter_id for u in utterances}))
        speakers += split_speakers
    return speakers, utterances


def render_all(output_dir: Path, utterances: list[Utterance], seed: int) -> dict[str, tuple[str, float]]:
    """Renders every utterance with a process pool; returns utt_id -> (status, seconds)."""
    jobs = []
    for utt in utterances:
        (output_dir / utt.relative_dir).mkdir(parents=True, exist_ok=True)
        rng_seed = random.Random(f"{seed}-{utt.utt_id}").getrandbits(RNG_BITS)
        flac = output_dir / utt.relative_dir / f"{utt.utt_id}.flac"
        snr = (FLAGS.min_snr_db, FLAGS.max_snr_db)
        jobs.append(RenderJob(utt, str(flac), rng_seed, FLAGS.noise_prob, snr, FLAGS.max_gain_db))
    results = {}
    with concurrent.futures.ProcessPoolExecutor(max_workers=FLAGS.jobs) as pool:
        for done, (utt_id, status, seconds) in enumerate(pool.map(render, jobs, chunksize=8), start=1):
            results[utt_id] = (status, seconds)
            if done % PROGRESS_EVERY == 0:
                print(f"rendered {done}/{len(jobs)} utterances", flush=True)
    return results


def summarize(utterances: list[Utterance], results: dict, elapsed: float) -> dict[str, dict]:
    """Prints and returns per-split statistics of the rendered corpus."""
    summary = {}
    for split in SPLITS:
        split_utts = [u for u in utterances if u.speaker.split == split]
        kept = [u for u in split_utts if results[u.utt_id][0] in ("ok", "cached")]
        statuses = Counter(results[u.utt_id][0] for u in split_utts)
        summary[split] = {
            "utterances": len(kept),
            "hours": round(sum(results[u.utt_id][1] for u in kept) / SECONDS_PER_HOUR, 3),
            "speakers": len({u.speaker.speaker_id for u in kept}),
            "unique_sentences": len({normalize(u.text) for u in kept}),
            "skipped_bad_length": statuses["bad_length"],
            "failed": statuses["failed"],
        }
        print(f"{split}: " + ", ".join(f"{k}={v}" for k, v in summary[split].items()))
    print(f"elapsed: {elapsed:.1f} s")
    return summary


def build_voice_pool() -> dict[str, list[str]]:
    """The configured voices and variants that work here; reports the others."""
    espeak_voices, espeak_variants = working_espeak_voices()
    flite_voices = working_flite_voices()
    unusable = [v for v in ESPEAK_VOICES if v not in espeak_voices]
    unusable += [f"+{v}" for v in ESPEAK_VARIANTS if v not in espeak_variants]
    unusable += [f"flite:{v}" for v in FLITE_VOICES if v not in flite_voices]
    if unusable:
        print(f"unusable voices skipped: {' '.join(unusable)}")
    if not espeak_voices:
        raise app.UsageError("no espeak-ng English voice works")
    return {"espeak_voices": espeak_voices, "espeak_variants": espeak_variants, "flite_voices": flite_voices}


def check_tools() -> None:
    """Exits with a one-line message if a required program is missing."""
    for tool in REQUIRED_TOOLS:
        if shutil.which(tool) is None:
            print(f"{tool} not found: run tools/setup_system.sh", file=sys.stderr)
            sys.exit(1)


def main(argv: Sequence[str]) -> None:
    """Generates the corpus (and the cross sets asked for), or reports that it is up to date."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    start = time.monotonic()
    output_dir, seed, params = Path(FLAGS.output_dir), FLAGS.seed, generation_params()
    up_to_date = is_up_to_date(output_dir, params)
    if up_to_date:
        print("corpus up to date")
        if not FLAGS.cross_utterances:
            return
    check_tools()
    sentences = load_sentences(Path(FLAGS.fortunes_dir))
    print(f"found {len(sentences)} unique sentences")
    if len(sentences) <= FLAGS.num_dev_sentences + FLAGS.num_test_sentences:
        raise app.UsageError("not enough sentences for the requested dev/test sizes")
    voice_pool = build_voice_pool()
    speakers, utterances = plan_corpus(split_sentence_sets(sentences, seed), voice_pool, seed)
    if not up_to_date:
        prepare_output_dir(output_dir, params)
        remove_temporary_files(output_dir)
        results = render_all(output_dir, utterances, seed)
        write_speakers(output_dir, speakers)
        write_transcripts(output_dir, (u for u in utterances if results[u.utt_id][0] in ("ok", "cached")))
        summary = summarize(utterances, results, time.monotonic() - start)
        stamp = {
            "params": params,
            "voice_pool": voice_pool,
            "num_sentences": len(sentences),
            "sentences_sha1": hashlib.sha1("\n".join(sentences).encode()).hexdigest(),
            "summary": summary,
        }
        atomic.write_text(output_dir / STAMP_FILE, json.dumps(stamp, indent=1, sort_keys=True))
    if FLAGS.cross_utterances:
        remove_temporary_files(output_dir)
        cross = plan_cross_sets(utterances, speakers, FLAGS.cross_utterances, seed)
        results = render_all(output_dir, cross, seed)
        write_transcripts(output_dir, (u for u in cross if results[u.utt_id][0] in ("ok", "cached")))
        print(f"cross sets: {', '.join(str(output_dir / CROSS_DIR / name) for name in CROSS_SETS)}")


if __name__ == "__main__":
    app.run(main)
