"""Corpus evaluation: audio -> features -> search over any runtime -> WER/CER."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnt import atomic
from rnnt.audio import AudioError
from rnnt.config import DecodeConfig, FeatureConfig
from rnnt.corpus import DataError, Utterance
from rnnt.decoding import decode_features
from rnnt.features import compute_features
from rnnt.fusion import NO_FUSION, Fusion
from rnnt.hypothesis import Runtime
from rnnt.scoring import ErrorRates, error_rates
from rnnt.tokenizer import Tokenizer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Transcript:
    id: str
    reference: str
    hypothesis: str


@dataclass(frozen=True)
class EvalResult:
    rates: ErrorRates
    transcripts: list[Transcript]
    unreadable: int = 0  # utterances whose audio could not be read (scored as empty)


def transcribe_features(
    runtime: Runtime,
    tokenizer: Tokenizer,
    features: Sequence[np.ndarray],
    config: DecodeConfig,
    fusion: Fusion = NO_FUSION,
) -> list[str]:
    """Texts for whole utterances' features (each (T, D)); empty inputs give ''."""
    usable = [i for i, f in enumerate(features) if len(f) >= runtime.time_reduction]
    texts = [""] * len(features)
    if usable:
        hyps = decode_features(runtime, [features[i] for i in usable], config, fusion)
        for i, hyp in zip(usable, hyps, strict=True):
            texts[i] = tokenizer.decode(hyp.tokens)
    return texts


def evaluate(
    runtime: Runtime,
    feature_config: FeatureConfig,
    tokenizer: Tokenizer,
    utterances: Sequence[Utterance],
    decode_config: DecodeConfig,
    batch_size: int = 32,
    fusion: Fusion = NO_FUSION,
) -> EvalResult:
    """Decode `utterances` in duration-sorted batches and score them at corpus level.

    An unreadable file is logged, counted and scored as an empty hypothesis (all
    deletions), so a bad file cannot stop a long training run; if no file can be read,
    DataError says so.
    """
    ordered = sorted(utterances, key=lambda u: u.duration)
    transcripts = []
    unreadable = 0
    for start in range(0, len(ordered), batch_size):
        batch = ordered[start : start + batch_size]
        loaded = [_features(u, feature_config) for u in batch]
        unreadable += sum(f is None for f in loaded)
        empty = np.zeros((0, feature_config.feature_dim), np.float32)
        features = [empty if f is None else f for f in loaded]
        texts = transcribe_features(runtime, tokenizer, features, decode_config, fusion)
        transcripts += [Transcript(u.id, u.text, t) for u, t in zip(batch, texts, strict=True)]
    if ordered and unreadable == len(ordered):
        raise DataError(
            f"none of the {unreadable} utterances' audio could be read (first: {ordered[0].audio})"
        )
    rates = error_rates([t.reference for t in transcripts], [t.hypothesis for t in transcripts])
    return EvalResult(rates, transcripts, unreadable)


def speaker_of(utterance_id: str) -> str:
    """The speaker of a LibriSpeech-style id, `speaker-chapter-utterance`: its first field."""
    return utterance_id.split("-", 1)[0]


def rates_by_speaker(transcripts: Sequence[Transcript]) -> dict[str, ErrorRates]:
    """Corpus-level rates of each speaker's utterances, by speaker id."""
    by_speaker: dict[str, list[Transcript]] = defaultdict(list)
    for transcript in transcripts:
        by_speaker[speaker_of(transcript.id)].append(transcript)
    return {
        speaker: error_rates([t.reference for t in group], [t.hypothesis for t in group])
        for speaker, group in sorted(by_speaker.items())
    }


def write_transcripts(path: str | Path, transcripts: Sequence[Transcript]) -> None:
    """One JSON line per utterance: id, reference, hypothesis."""
    lines = [json.dumps(dataclasses.asdict(t)) for t in transcripts]
    atomic.write_text(path, "".join(line + "\n" for line in lines))


def _features(utterance: Utterance, config: FeatureConfig) -> np.ndarray | None:
    """The utterance's features, or None (logged) if its audio cannot be read."""
    try:
        samples = utterance.load(config.sample_rate)
    except AudioError as error:
        log.warning("scored as empty: %s", error)
        return None
    return compute_features(samples, config)
