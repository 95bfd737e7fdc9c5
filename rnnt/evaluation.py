"""Corpus evaluation: audio -> features -> search over any runtime -> WER/CER."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnt import atomic
from rnnt.audio import AudioError
from rnnt.augment import change_speed
from rnnt.config import DecodeConfig, FeatureConfig
from rnnt.corpus import DataError, Utterance
from rnnt.decoding import decode_views
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
    speaker: str = ""


@dataclass(frozen=True)
class View:
    """One way of hearing an utterance in an ensemble (`rnnt.decoding.decode_views`): played
    `speed` times faster (training's speed perturbation, `rnnt.augment.change_speed`), its mel
    filterbank warped by `warp` (training's VTLP, `rnnt.features.mel_filterbank`)."""

    speed: float = 1.0
    warp: float = 1.0

    def __post_init__(self) -> None:
        if not all(math.isfinite(x) and x > 0 for x in (self.speed, self.warp)):
            raise ValueError(
                f"an ensemble's speeds and warps must be numbers > 0 (1.0: unchanged), got {self}"
            )


ONE_VIEW = (View(),)


@dataclass(frozen=True)
class EvalResult:
    rates: ErrorRates
    transcripts: list[Transcript]
    unreadable: int = 0  # utterances whose audio could not be read (scored as empty)


def transcribe_features(
    runtime: Runtime,
    tokenizer: Tokenizer,
    views: Sequence[Sequence[np.ndarray]],
    config: DecodeConfig,
    fusion: Fusion = NO_FUSION,
) -> list[str]:
    """Texts for whole utterances' features (`views[k][i]`: utterance i's (T, D) in view k, as
    `decode_views` takes them); an utterance too short in any view gives ''."""
    usable = [i for i in range(len(views[0])) if min(len(v[i]) for v in views) >= runtime.time_reduction]
    texts = [""] * len(views[0])
    if usable:
        hyps = decode_views(runtime, [[view[i] for i in usable] for view in views], config, fusion)
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
    views: Sequence[View] = ONE_VIEW,
) -> EvalResult:
    """Decode `utterances` in duration-sorted batches and score them at corpus level.

    More than one of `views` decodes an ensemble (`rnnt.decoding.decode_views`): each
    utterance heard each way, len(views) times the search.
    An unreadable file is logged, counted and scored as an empty hypothesis (all
    deletions), so a bad file cannot stop a long training run; if no file can be read,
    DataError says so.
    """
    ordered = sorted(utterances, key=lambda u: u.duration)
    transcripts = []
    unreadable = 0
    for start in range(0, len(ordered), batch_size):
        batch = ordered[start : start + batch_size]
        loaded = [_samples(u, feature_config) for u in batch]
        unreadable += sum(x is None for x in loaded)
        features = [[_view_features(x, feature_config, view) for x in loaded] for view in views]
        texts = transcribe_features(runtime, tokenizer, features, decode_config, fusion)
        transcripts += [Transcript(u.id, u.text, t, u.speaker_id) for u, t in zip(batch, texts, strict=True)]
    if ordered and unreadable == len(ordered):
        raise DataError(
            f"none of the {unreadable} utterances' audio could be read (first: {ordered[0].audio})"
        )
    rates = error_rates([t.reference for t in transcripts], [t.hypothesis for t in transcripts])
    return EvalResult(rates, transcripts, unreadable)


def rates_by_speaker(transcripts: Sequence[Transcript]) -> dict[str, ErrorRates]:
    """Corpus-level rates of each speaker's utterances, by speaker id (`Utterance.speaker_id`)."""
    by_speaker: dict[str, list[Transcript]] = defaultdict(list)
    for transcript in transcripts:
        by_speaker[transcript.speaker].append(transcript)
    return {
        speaker: error_rates([t.reference for t in group], [t.hypothesis for t in group])
        for speaker, group in sorted(by_speaker.items())
    }


def write_transcripts(path: str | Path, transcripts: Sequence[Transcript]) -> None:
    """One JSON line per utterance: id, reference, hypothesis, speaker."""
    lines = [json.dumps(dataclasses.asdict(t)) for t in transcripts]
    atomic.write_text(path, "".join(line + "\n" for line in lines))


def _samples(utterance: Utterance, config: FeatureConfig) -> np.ndarray | None:
    """The utterance's audio, or None (logged) if it cannot be read."""
    try:
        return utterance.load(config.sample_rate)
    except AudioError as error:
        log.warning("scored as empty: %s", error)
        return None


def _view_features(samples: np.ndarray | None, config: FeatureConfig, view: View) -> np.ndarray:
    if samples is None:
        return np.zeros((0, config.feature_dim), np.float32)
    return compute_features(change_speed(samples, view.speed), config, view.warp)
