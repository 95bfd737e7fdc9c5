"""The data model: utterances, JSONL manifests, LibriSpeech and TED-LIUM folders, corpus weights.

Torch-free (as lhotse keeps its data model apart from the torch Dataset and sampler in
`rnnt.data`), so evaluation and benchmarks read corpora without importing torch.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnt import atomic
from rnnt.audio import AudioError, audio_duration, load_audio
from rnnt.config import DataConfig, FeatureConfig
from rnnt.features import compute_features
from rnnt.text import normalize
from rnnt.tokenizer import Tokenizer

log = logging.getLogger(__name__)


TEDLIUM_IGNORED = "ignore_time_segment_in_scoring"  # STM transcript of an unscored segment
# <unk>, <sil> and other marks, {NOISE}s, and parenthesised alternative numbers "(2)" and
# utterance keys "(talk-7.00-8.00-male)" (release 1's train lines end with one).
TEDLIUM_NOISE = re.compile(r"<[^>]*>|\{[^}]*\}|\([^)]*\)")
TEDLIUM_CLITIC = re.compile(r" '(?=[A-Za-z])")  # TED-LIUM splits clitics: "it 's" -> "it's"


class DataError(Exception):
    """Unusable corpus input; the message names the file (and line)."""


@dataclass(frozen=True)
class Utterance:
    """One transcribed stretch of audio."""

    id: str
    audio: str  # path to the audio file
    text: str  # normalised transcript
    duration: float  # seconds
    offset: float = 0.0  # seconds into the file
    speaker: str = ""  # "" for LibriSpeech-style ids, whose first `-` field is the speaker

    @property
    def speaker_id(self) -> str:
        """Its speaker: `speaker`, else the first field of a `speaker-chapter-utterance` id."""
        return self.speaker or self.id.split("-", 1)[0]

    def load(self, sample_rate: int) -> np.ndarray:
        """Its mono samples at `sample_rate` (raises `AudioError`)."""
        return load_audio(self.audio, sample_rate, self.offset, self.duration)


def read_manifest(path: str | Path) -> list[Utterance]:
    """JSONL lines {"audio", "text", "duration"?, "offset"?, "id"?, "speaker"?}; relative
    audio paths are resolved against the manifest's folder."""
    path = Path(path)
    utterances = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if line.strip():
            utterances.append(_parse_manifest_line(line, path, number))
    return utterances


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read ({error})") from error


def _parse_manifest_line(line: str, path: Path, number: int) -> Utterance:
    try:
        entry = json.loads(line)
        audio = Path(entry["audio"])
        audio = audio if audio.is_absolute() else path.parent / audio
        offset = float(entry.get("offset", 0.0))
        duration = entry.get("duration")
        duration = float(duration) if duration is not None else audio_duration(audio) - offset
        text = entry["text"]
        if not isinstance(text, str):  # str(None) would be trained on as the word "none"
            raise DataError(f"{path}:{number}: 'text' must be a string, got {text!r}")
        speaker = entry.get("speaker", "")
        if not isinstance(speaker, str):
            raise DataError(f"{path}:{number}: 'speaker' must be a string, got {speaker!r}")
        if not (math.isfinite(offset) and offset >= 0 and math.isfinite(duration) and duration > 0):
            # soundfile counts a negative start from the file's end: other audio, silently
            raise DataError(
                f"{path}:{number}: needs offset >= 0 and duration > 0, got {offset} and {duration}"
            )
        return Utterance(
            id=str(entry.get("id", f"{path.stem}-{number}")),
            audio=str(audio),
            text=normalize(text),
            duration=duration,
            offset=offset,
            speaker=speaker,
        )
    except json.JSONDecodeError as error:
        raise DataError(f"{path}:{number}: not a JSON line ({error.msg})") from error
    except AudioError as error:
        raise DataError(f"{path}:{number}: {error}") from error
    except (KeyError, TypeError, ValueError) as error:
        raise DataError(f"{path}:{number}: needs 'audio' and 'text' ({error!r})") from error


def write_manifest(path: str | Path, utterances: Sequence[Utterance]) -> None:
    lines = [json.dumps(dataclasses.asdict(u)) for u in utterances]
    atomic.write_text(path, "\n".join(lines) + "\n")


def read_librispeech(root: str | Path) -> list[Utterance]:
    """Every `*.trans.txt` under `root` with its `<id>.flac` files (LibriSpeech layout)."""
    utterances = []
    for transcript in sorted(Path(root).rglob("*.trans.txt")):
        for number, line in enumerate(_read_text(transcript).splitlines(), start=1):
            if not line.strip():
                continue
            utt_id, _, text = line.partition(" ")
            audio = transcript.parent / f"{utt_id}.flac"
            if not audio.is_file():
                raise DataError(f"{transcript}:{number}: missing audio {audio.name}")
            utterances.append(Utterance(utt_id, str(audio), normalize(text), audio_duration(audio)))
    return utterances


def tedlium_text(transcript: str) -> str:
    """A TED-LIUM transcript as the toolkit's text: noise and unknown-word marks dropped,
    split clitics rejoined ("it 's" -> "it's"), then `normalize`."""
    return normalize(TEDLIUM_CLITIC.sub("'", TEDLIUM_NOISE.sub(" ", transcript)))


def read_tedlium(root: str | Path) -> list[Utterance]:
    """Every scored segment of `<root>/stm/*.stm`, in `<root>/sph/<talk>.sph`."""
    root = Path(root)
    utterances = []
    for stm in sorted((root / "stm").glob("*.stm")):
        for number, line in enumerate(_read_text(stm).splitlines(), start=1):
            utterance = stm_segment(root, stm, number, line)
            if utterance is not None:
                utterances.append(utterance)
    return utterances


def stm_segment(root: Path, stm: Path, number: int, line: str) -> Utterance | None:
    """One STM line `talk channel speaker start end [<label>] transcript`, or None if unscored."""
    fields = line.split(maxsplit=5)
    if not fields or line.startswith(";;"):
        return None
    if len(fields) < 5:
        raise DataError(f"{stm}:{number}: not an STM segment line")
    talk, _, speaker, start, end = fields[:5]
    transcript = fields[5] if len(fields) > 5 else ""
    if transcript.startswith("<"):  # the optional label, e.g. <o,f0,male>
        transcript = transcript.partition(">")[2]
    text = tedlium_text(transcript)
    if TEDLIUM_IGNORED in transcript or not text:
        return None
    audio = root / "sph" / f"{talk}.sph"
    if not audio.is_file():
        raise DataError(f"{stm}:{number}: missing audio {audio.name}")
    try:
        offset, stop = float(start), float(end)
    except ValueError as error:
        raise DataError(f"{stm}:{number}: bad segment times ({error})") from error
    if not 0 <= offset < stop:
        raise DataError(f"{stm}:{number}: a segment must start at 0 or later and end after it starts")
    return Utterance(f"{talk}-{offset:.2f}", str(audio), text, stop - offset, offset, speaker=speaker)


def is_tedlium(root: Path) -> bool:
    return (root / "stm").is_dir() and (root / "sph").is_dir()


def read_corpus(spec: str | Path) -> list[Utterance]:
    """A JSONL manifest, a TED-LIUM folder (`stm/`, `sph/`) or a LibriSpeech-layout folder."""
    path = Path(spec)
    if path.is_dir():
        utterances = read_tedlium(path) if is_tedlium(path) else read_librispeech(path)
    elif path.is_file():
        utterances = read_manifest(path)
    else:
        raise DataError(f"{path}: no such manifest or folder")
    if not utterances:
        raise DataError(f"{path}: no utterances found")
    return utterances


def read_weighted_corpora(specs: str) -> list[Utterance]:
    """Merge `PATH[:WEIGHT],...`; weight w repeats a corpus floor(w) times plus a fraction
    (a deterministic prefix of it), so 0.5 takes half, 2 takes it twice."""
    merged: list[Utterance] = []
    for spec in filter(None, (s.strip() for s in specs.split(","))):
        path, weight = _weighted(spec)
        utterances = read_corpus(path)
        whole, fraction = divmod(weight, 1.0)
        merged += utterances * int(whole) + utterances[: round(fraction * len(utterances))]
    return merged


def _weighted(spec: str) -> tuple[str, float]:
    """`PATH[:WEIGHT]` -> (path, weight); a `:` not followed by a number belongs to the path."""
    path, _, weight_text = spec.rpartition(":")
    try:
        weight = float(weight_text)
    except ValueError:
        return spec, 1.0
    if not path or not math.isfinite(weight) or weight < 0:
        raise DataError(f"{spec}: a corpus weight must be a finite number >= 0")
    return path, weight


def read_sentences(specs: str) -> list[str]:
    """Normalised non-empty sentences from comma-separated manifests, LibriSpeech folders and
    plain .txt files (one sentence a line), each distinct sentence once (for LM text)."""
    sentences: set[str] = set()
    for spec in filter(None, (s.strip() for s in specs.split(","))):
        path = Path(spec)
        if path.suffix == ".txt" and path.is_file():
            lines = [normalize(line) for line in _read_text(path).splitlines()]
        else:
            lines = [u.text for u in read_corpus(path)]
        sentences.update(filter(None, lines))
    if not sentences:
        raise DataError(f"{specs}: no sentences")
    return sorted(sentences)


def filter_utterances(utterances: Sequence[Utterance], config: DataConfig) -> list[Utterance]:
    """Drop (and count in the log) empty transcripts and out-of-range durations."""
    kept = [u for u in utterances if u.text and config.min_duration <= u.duration <= config.max_duration]
    dropped = len(utterances) - len(kept)
    if dropped:
        log.warning(
            "skipped %d of %d utterances (empty text or duration out of range)", dropped, len(utterances)
        )
    return kept


def training_corpus(data: DataConfig) -> list[Utterance]:
    """The training utterances; DataError before anything trains if none is usable."""
    if not data.train_manifests:
        raise DataError("--train_manifests is required")
    utterances = filter_utterances(read_weighted_corpora(data.train_manifests), data)
    if not utterances:
        raise DataError(
            f"{data.train_manifests}: no training utterance has text and a duration within "
            f"--min_duration={data.min_duration} and --max_duration={data.max_duration} s"
        )
    return usable_audio(data.train_manifests, utterances)


def dev_corpus(data: DataConfig) -> list[Utterance]:
    """The dev utterances (none without --dev_manifest); DataError if the manifest has none
    with text or none whose audio exists."""
    if not data.dev_manifest:
        return []
    utterances = [u for u in read_corpus(data.dev_manifest) if u.text]
    if not utterances:
        raise DataError(f"{data.dev_manifest}: no dev utterance has text")
    return usable_audio(data.dev_manifest, utterances[: data.dev_max_utterances or None])


def usable_audio(source: str, utterances: list[Utterance]) -> list[Utterance]:
    """`utterances` unchanged, or DataError when none of their audio files exists (a wrong
    path or an unmounted disk, found before training rather than by skipping every batch).
    A few missing files are left to the loader, which skips and counts them."""
    if not any(Path(u.audio).is_file() for u in utterances):
        raise DataError(
            f"{source}: none of the {len(utterances)} audio files exists (first: {utterances[0].audio})"
        )
    return utterances


def feature_statistics(
    utterances: Sequence[Utterance], config: FeatureConfig, limit: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and standard deviation of the features of `limit` utterances
    spread evenly over `utterances` (for global mean/variance normalisation)."""
    step = max(1, len(utterances) // limit)
    frames = []
    for utterance in list(utterances)[::step][:limit]:
        try:
            samples = utterance.load(config.sample_rate)
        except AudioError as error:
            log.warning("statistics: skipped %s: %s", utterance.id, error)
            continue
        frames.append(compute_features(samples, config))
    if not frames:
        raise DataError("no readable audio to compute feature statistics from")
    stacked = np.concatenate(frames).astype(np.float64)
    return stacked.mean(axis=0), stacked.std(axis=0)


@dataclass(frozen=True)
class TokenDensity:
    """How many tokens the transducer must emit per encoder frame on a corpus.

    A dense target (many utterances with more tokens than frames) needs several emissions per
    frame; a coarser vocabulary or shorter encoder frames make it sparser.
    """

    tokens_per_frame: float  # corpus mean
    tokens_per_word: float
    over_one: float  # fraction of utterances with more tokens than encoder frames


def token_density(
    utterances: Sequence[Utterance], tokenizer: Tokenizer, encoder_frame_s: float
) -> TokenDensity:
    """Tokens per encoder frame of `utterances` (durations from the corpus, no audio read)."""
    tokens = np.array([len(tokenizer.encode(u.text)) for u in utterances], dtype=np.float64)
    frames = np.maximum(np.array([u.duration for u in utterances]) / encoder_frame_s, 1.0)
    words = sum(len(u.text.split()) for u in utterances)
    return TokenDensity(
        tokens_per_frame=float(tokens.sum() / frames.sum()),
        tokens_per_word=float(tokens.sum() / max(words, 1)),
        over_one=float(np.mean(tokens > frames)),
    )
