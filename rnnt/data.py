"""Utterances, corpora, the torch Dataset and the length-bucketed batch sampler.

The data model (`Utterance`, manifest and LibriSpeech readers) stays apart from the torch
side (`UtteranceDataset`, `BucketBatchSampler`, `collate`), as in lhotse.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from rnnt.audio import AudioError, audio_duration, load_audio
from rnnt.augment import augment_features, augment_samples
from rnnt.config import AugmentConfig, DataConfig, FeatureConfig
from rnnt.features import compute_features
from rnnt.text import normalize
from rnnt.tokenizer import Tokenizer

log = logging.getLogger(__name__)


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


def read_manifest(path: str | Path) -> list[Utterance]:
    """JSONL lines {"audio", "text", "duration"?, "offset"?, "id"?}; relative audio paths
    are resolved against the manifest's folder."""
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
        duration = entry.get("duration")
        duration = float(duration) if duration is not None else audio_duration(audio)
        return Utterance(
            id=str(entry.get("id", f"{path.stem}-{number}")),
            audio=str(audio),
            text=normalize(str(entry["text"])),
            duration=duration,
            offset=float(entry.get("offset", 0.0)),
        )
    except json.JSONDecodeError as error:
        raise DataError(f"{path}:{number}: not a JSON line ({error.msg})") from error
    except AudioError as error:
        raise DataError(f"{path}:{number}: {error}") from error
    except (KeyError, TypeError, ValueError) as error:
        raise DataError(f"{path}:{number}: needs 'audio' and 'text' ({error!r})") from error


def write_manifest(path: str | Path, utterances: Sequence[Utterance]) -> None:
    lines = [json.dumps(dataclasses.asdict(u)) for u in utterances]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


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


def read_corpus(spec: str | Path) -> list[Utterance]:
    """A JSONL manifest or a LibriSpeech-layout folder."""
    path = Path(spec)
    if path.is_dir():
        utterances = read_librispeech(path)
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
        path, _, weight_text = spec.partition(":")
        weight = float(weight_text) if weight_text else 1.0
        utterances = read_corpus(path)
        whole, fraction = divmod(weight, 1.0)
        merged += utterances * int(whole) + utterances[: round(fraction * len(utterances))]
    return merged


def filter_utterances(utterances: Sequence[Utterance], config: DataConfig) -> list[Utterance]:
    """Drop (and count in the log) empty transcripts and out-of-range durations."""
    kept = [u for u in utterances if u.text and config.min_duration <= u.duration <= config.max_duration]
    dropped = len(utterances) - len(kept)
    if dropped:
        log.warning(
            "skipped %d of %d utterances (empty text or duration out of range)", dropped, len(utterances)
        )
    return kept


def feature_statistics(
    utterances: Sequence[Utterance], config: FeatureConfig, limit: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and standard deviation of the features of `limit` utterances
    spread evenly over `utterances` (for global mean/variance normalisation)."""
    step = max(1, len(utterances) // limit)
    frames = []
    for utterance in list(utterances)[::step][:limit]:
        try:
            samples = load_audio(utterance.audio, config.sample_rate, utterance.offset, utterance.duration)
        except AudioError as error:
            log.warning("statistics: skipped %s: %s", utterance.id, error)
            continue
        frames.append(compute_features(samples, config))
    if not frames:
        raise DataError("no readable audio to compute feature statistics from")
    stacked = np.concatenate(frames).astype(np.float64)
    return stacked.mean(axis=0), stacked.std(axis=0)


@dataclass
class Batch:
    """A padded mini-batch."""

    features: Tensor  # (B, T, D)
    feature_lengths: Tensor  # (B,)
    targets: Tensor  # (B, U) padded with blank
    target_lengths: Tensor  # (B,)
    texts: list[str]
    durations: list[float]  # seconds

    @property
    def audio_seconds(self) -> float:
        return float(sum(self.durations))


@dataclass(frozen=True)
class Example:
    features: np.ndarray  # (T, D)
    tokens: list[int]
    text: str
    duration: float


class UtteranceDataset(torch.utils.data.Dataset):
    """Loads, augments and featurises utterance `(index, epoch)`; None when unusable.

    Augmentation draws from a generator seeded by (seed, epoch, index), so every run, rank
    count and resume sees the same augmented example.
    """

    def __init__(
        self,
        utterances: Sequence[Utterance],
        features: FeatureConfig,
        tokenizer: Tokenizer,
        augment: AugmentConfig | None = None,
        seed: int = 0,
    ):
        self.utterances = list(utterances)
        self.features = features
        self.tokenizer = tokenizer
        self.augment = augment
        self.seed = seed

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, key: tuple[int, int]) -> Example | None:
        index, epoch = key
        utterance = self.utterances[index]
        try:
            samples = load_audio(
                utterance.audio, self.features.sample_rate, utterance.offset, utterance.duration
            )
        except AudioError as error:
            log.warning("skipped utterance %s: %s", utterance.id, error)
            return None
        rng = np.random.default_rng([self.seed, epoch, index])
        if self.augment is not None:
            samples = augment_samples(samples, self.augment, rng)
        feats = compute_features(samples, self.features)
        if self.augment is not None:
            feats = augment_features(feats, self.augment, self.features, rng)
        tokens = self.tokenizer.encode(utterance.text)
        if len(feats) == 0 or not tokens:
            log.warning("skipped utterance %s: too short or no tokens", utterance.id)
            return None
        return Example(feats, tokens, utterance.text, len(samples) / self.features.sample_rate)


def collate(examples: Sequence[Example | None]) -> Batch | None:
    """Pad usable examples into a `Batch` (None if none is usable)."""
    usable = [e for e in examples if e is not None]
    if not usable:
        return None
    feature_lengths = torch.tensor([len(e.features) for e in usable])
    target_lengths = torch.tensor([len(e.tokens) for e in usable])
    features = torch.zeros(len(usable), int(feature_lengths.max()), usable[0].features.shape[1])
    targets = torch.zeros(len(usable), int(target_lengths.max()), dtype=torch.long)
    for i, example in enumerate(usable):
        features[i, : len(example.features)] = torch.from_numpy(example.features)
        targets[i, : len(example.tokens)] = torch.tensor(example.tokens)
    return Batch(
        features,
        feature_lengths,
        targets,
        target_lengths,
        [e.text for e in usable],
        [e.duration for e in usable],
    )


def collate_micro_batches(examples: Sequence[Example | None], micro_batch_seconds: float) -> list[Batch]:
    """One step's examples -> micro-batches of at most `micro_batch_seconds` (0: one)."""
    usable = sorted((e for e in examples if e is not None), key=lambda e: e.duration)
    groups = _pack_by_seconds([e.duration for e in usable], micro_batch_seconds or math.inf)
    batches = [collate([usable[i] for i in group]) for group in groups]
    return [b for b in batches if b is not None]


def _pack_by_seconds(durations: Sequence[float], limit: float) -> list[list[int]]:
    """Consecutive groups of indices whose durations sum to at most `limit` (>= 1 each)."""
    groups: list[list[int]] = [[]]
    total = 0.0
    for index, duration in enumerate(durations):
        if groups[-1] and total + duration > limit:
            groups.append([])
            total = 0.0
        groups[-1].append(index)
        total += duration
    return [g for g in groups if g]


class BucketBatchSampler:
    """Length-bucketed batches of about `batch_seconds` of audio, sharded across ranks.

    Epoch e sorts utterances by jittered duration, cuts consecutive runs into global
    batches, and shuffles the batch order, all from a generator seeded by (seed, e).
    Rank r of W takes every W-th utterance of each global batch, so the ranks together
    see exactly what one rank would see with the whole batch. `start` skips batches
    already consumed (resume).
    """

    JITTER = 0.1  # relative duration noise, so batches differ between epochs

    def __init__(
        self, durations: Sequence[float], batch_seconds: float, seed: int, rank: int = 0, world: int = 1
    ):
        self.durations = np.asarray(durations, dtype=np.float64)
        self.batch_seconds = batch_seconds
        self.seed = seed
        self.rank = rank
        self.world = world
        self.epoch = 0
        self.start = 0

    def global_batches(self, epoch: int) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, epoch])
        keys = self.durations * rng.uniform(1 - self.JITTER, 1 + self.JITTER, len(self.durations))
        order = np.argsort(keys, kind="stable")
        groups = _pack_by_seconds(self.durations[order].tolist(), self.batch_seconds)
        batches = [order[groups[i]].tolist() for i in rng.permutation(len(groups))]
        # Batches too small to give every rank an utterance are dropped after the shuffle,
        # so that the remaining order is the same whatever the world size.
        return [b for b in batches if len(b) >= self.world]

    def __len__(self) -> int:
        return len(self.global_batches(self.epoch))

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for batch in self.global_batches(self.epoch)[self.start :]:
            yield [(index, self.epoch) for index in batch[self.rank :: self.world]]
