"""The torch side of the data: Dataset, collation into padded batches, and the
length-bucketed, rank-sharded batch sampler. The data model lives in `rnnt.corpus`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from rnnt.audio import AudioError
from rnnt.augment import augment_features, augment_samples, vtlp_warp
from rnnt.config import AugmentConfig, FeatureConfig
from rnnt.corpus import Utterance
from rnnt.features import compute_features
from rnnt.tokenizer import Tokenizer

log = logging.getLogger(__name__)


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
            samples = utterance.load(self.features.sample_rate)
        except AudioError as error:
            log.warning("skipped utterance %s: %s", utterance.id, error)
            return None
        rng = np.random.default_rng([self.seed, epoch, index])
        warp = 1.0
        if self.augment is not None:
            samples = augment_samples(samples, self.augment, rng)
            warp = vtlp_warp(self.augment, rng)
        feats = compute_features(samples, self.features, warp)
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


def check_ranks_fed(durations: Sequence[float], batch_seconds: float, world: int) -> None:
    """ValueError if batches of the longest utterances would hold fewer than one per rank:
    `BucketBatchSampler` drops those every epoch, so the long end of a corpus would never be
    trained on."""
    longest = max(durations, default=0.0) * (1 + BucketBatchSampler.JITTER)
    if world > 1 and batch_seconds < world * longest:
        raise ValueError(
            f"--batch_seconds={batch_seconds:g} over {world} ranks: the longest utterances "
            f"({longest:.1f} s with jitter) would not give every rank one; use at least "
            f"{world * longest:.0f} or a lower --max_duration"
        )


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
        dropped = len(self.durations) - sum(len(b) for b in self.global_batches(0))
        if dropped:
            log.info("%d utterances of epoch 0 fall in a last batch too small for %d ranks", dropped, world)

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
