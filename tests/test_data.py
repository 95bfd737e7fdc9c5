"""Corpora, manifests, the bucketed sampler, the dataset and collation."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from rnnt.augment import EQ_POINTS, NEPER_PER_DB, augment_features, augment_samples, change_speed, vtlp_warp
from rnnt.config import AugmentConfig, DataConfig, FeatureConfig, TokenizerConfig
from rnnt.corpus import (
    DataError,
    Utterance,
    filter_utterances,
    read_librispeech,
    read_manifest,
    read_weighted_corpora,
    token_density,
)
from rnnt.data import BucketBatchSampler, Example, UtteranceDataset, check_ranks_fed, collate
from rnnt.features import compute_features, warp_frequencies
from rnnt.text import normalize
from rnnt.tokenizer import Tokenizer

SAMPLE_RATE = 16000
TEXTS = ["Hello world", "the quick brown fox", "jumps over", "the lazy dog"]


def write_wav(path: Path, seconds: float, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(seed).uniform(-0.3, 0.3, round(seconds * SAMPLE_RATE))
    soundfile.write(path, noise.astype(np.float32), SAMPLE_RATE)
    return path


def write_jsonl(path: Path, entries: list[dict[str, object] | str]) -> Path:
    lines = [e if isinstance(e, str) else json.dumps(e) for e in entries]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_corpus(folder: Path, name: str, count: int = 4) -> Path:
    """A manifest of `count` short utterances with ids `<name>-<i>`."""
    entries: list[dict[str, object] | str] = []
    for i in range(count):
        write_wav(folder / f"{name}-{i}.wav", 0.5 + 0.25 * i, seed=i)
        entries.append({"id": f"{name}-{i}", "audio": f"{name}-{i}.wav", "text": TEXTS[i % len(TEXTS)]})
    return write_jsonl(folder / f"{name}.jsonl", entries)


# Manifests.


def test_manifest_resolves_relative_paths_and_reads_durations(tmp_path: Path) -> None:
    absolute = write_wav(tmp_path / "elsewhere" / "b.wav", 1.5)
    write_wav(tmp_path / "data" / "clips" / "a.wav", 0.75)
    manifest = write_jsonl(
        tmp_path / "data" / "train.jsonl",
        [
            {"audio": "clips/a.wav", "text": "Hello, World!"},
            "",
            {
                "audio": str(absolute),
                "text": "it's",
                "duration": 9.0,
                "offset": 0.5,
                "id": "x-1",
                "speaker": "s",
            },
        ],
    )
    first, second = read_manifest(manifest)
    assert first == Utterance("train-1", str(tmp_path / "data" / "clips" / "a.wav"), "hello world", 0.75)
    assert second == Utterance("x-1", str(absolute), "it's", 9.0, 0.5, speaker="s")
    assert (first.speaker_id, second.speaker_id) == ("train", "s")  # the id's first field, else its own


def test_manifest_bad_json_names_file_and_line(tmp_path: Path) -> None:
    manifest = write_jsonl(
        tmp_path / "m.jsonl", [{"audio": "a.wav", "text": "a", "duration": 1.0}, "{not json"]
    )
    with pytest.raises(DataError, match=f"{manifest}:2"):
        read_manifest(manifest)


def test_manifest_missing_text_names_file_and_line(tmp_path: Path) -> None:
    write_wav(tmp_path / "a.wav", 0.5)
    manifest = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"audio": "a.wav", "text": "a", "duration": 1.0},
            {"audio": "a.wav", "text": "b"},
            {"audio": "a.wav", "duration": 1.0},
        ],
    )
    with pytest.raises(DataError, match=f"{manifest}:3"):
        read_manifest(manifest)


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ({"text": None}, "'text' must be a string, got None"),  # not the word "none"
        ({"text": ["a", "b"]}, "'text' must be a string"),
        ({"speaker": 7}, "'speaker' must be a string, got 7"),
        ({"offset": -1.5, "duration": 0.3}, "needs offset >= 0 and duration > 0, got -1.5"),  # from the end
        ({"duration": 0}, "needs offset >= 0 and duration > 0"),
        ({"offset": 3.0}, "needs offset >= 0 and duration > 0, got 3.0 and -1.0"),  # past the end
    ],
)
def test_manifest_values_that_would_read_other_audio_or_text_are_refused(
    tmp_path: Path, entry: dict[str, object], words: str
) -> None:
    write_wav(tmp_path / "a.wav", 2.0)
    manifest = write_jsonl(tmp_path / "m.jsonl", [{"audio": "a.wav", "text": "a"} | entry])
    with pytest.raises(DataError, match=rf"{manifest}:1: {words}"):
        read_manifest(manifest)


def test_manifest_offset_without_duration_counts_the_rest_of_the_file(tmp_path: Path) -> None:
    write_wav(tmp_path / "a.wav", 2.0)
    manifest = write_jsonl(tmp_path / "m.jsonl", [{"audio": "a.wav", "text": "a", "offset": 0.5}])
    assert read_manifest(manifest)[0].duration == pytest.approx(1.5)


def test_unreadable_manifest_raises_data_error(tmp_path: Path) -> None:
    path = tmp_path / "binary.jsonl"
    path.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DataError, match=str(path)):
        read_manifest(path)


# Corpora.


def test_read_librispeech(tiny_corpus: Path) -> None:
    expected = {}
    for transcript in (tiny_corpus / "train").rglob("*.trans.txt"):
        for line in transcript.read_text().splitlines():
            utt_id, text = line.split(" ", 1)
            expected[utt_id] = (transcript.parent / f"{utt_id}.flac", text)
    utterances = read_librispeech(tiny_corpus / "train")
    assert len(utterances) == len(expected) == 24
    for utterance in utterances:
        audio, text = expected[utterance.id]
        assert utterance.audio == str(audio)
        assert utterance.text == normalize(text) == utterance.text.lower()
        assert utterance.text
        assert utterance.duration == pytest.approx(soundfile.info(str(audio)).duration)
        assert utterance.duration > 0.3


def test_weighted_corpora(tmp_path: Path) -> None:
    first = make_corpus(tmp_path, "a")
    second = make_corpus(tmp_path, "b")
    ids = [u.id for u in read_weighted_corpora(f"{first}:2, {second}:0.5")]
    assert ids == ["a-0", "a-1", "a-2", "a-3"] * 2 + ["b-0", "b-1"]
    ids = [u.id for u in read_weighted_corpora(f"{first}:1.5,{second}")]
    assert ids == ["a-0", "a-1", "a-2", "a-3", "a-0", "a-1", "b-0", "b-1", "b-2", "b-3"]
    with pytest.raises(DataError, match="no such manifest"):
        read_weighted_corpora(str(tmp_path / "missing.jsonl"))
    folder = tmp_path / "with:colon"
    folder.mkdir()
    third = make_corpus(folder, "c")
    assert len(read_weighted_corpora(f"{third}")) == 4  # the ':' is the path's, not a weight
    assert len(read_weighted_corpora(f"{third}:2")) == 8
    for weight in ("-1", "nan", "inf"):
        with pytest.raises(DataError, match="a corpus weight must be a finite number >= 0"):
            read_weighted_corpora(f"{first}:{weight}")


def test_filter_utterances() -> None:
    utterances = [
        Utterance("ok", "a.flac", "hello", 2.0),
        Utterance("empty", "b.flac", "", 2.0),
        Utterance("long", "c.flac", "hello", 14.5),
        Utterance("short", "d.flac", "hello", 0.1),
        Utterance("edge", "e.flac", "hello", 14.0),
    ]
    kept = filter_utterances(utterances, DataConfig(min_duration=0.3, max_duration=14.0))
    assert [u.id for u in kept] == ["ok", "edge"]


# The sampler.

BATCH_SECONDS = 25.0


@pytest.fixture(scope="module")
def durations() -> list[float]:
    """Durations up to 16 s, so that some batches hold a single utterance."""
    return np.random.default_rng(7).uniform(0.5, 16.0, 80).tolist()


def batches(
    durations: list[float], epoch: int, seed: int = 3, rank: int = 0, world: int = 1, start: int = 0
) -> list[list[int]]:
    """One rank's batches of `epoch`, as utterance indices."""
    sampler = BucketBatchSampler(durations, BATCH_SECONDS, seed, rank=rank, world=world)
    sampler.epoch, sampler.start = epoch, start
    result = list(sampler)
    assert all(key[1] == epoch for batch in result for key in batch)
    return [[key[0] for key in batch] for batch in result]


def test_sampler_batches_cover_the_corpus_within_budget(durations: list[float]) -> None:
    global_batches = batches(durations, epoch=0)
    assert sorted(i for b in global_batches for i in b) == list(range(len(durations)))
    for batch in global_batches:
        assert len(batch) == 1 or sum(durations[i] for i in batch) <= BATCH_SECONDS
    assert any(len(b) == 1 for b in global_batches)  # the case world > 1 must drop


@pytest.mark.parametrize("epoch", [0, 1])
def test_sampler_ranks_together_equal_one_rank(durations: list[float], epoch: int) -> None:
    single = batches(durations, epoch)
    rank0 = batches(durations, epoch, rank=0, world=2)
    rank1 = batches(durations, epoch, rank=1, world=2)
    expected = [sorted(b) for b in single if len(b) >= 2]
    assert len(rank0) == len(rank1) == len(expected)
    for step, (part0, part1) in enumerate(zip(rank0, rank1, strict=True)):
        assert part0 and part1
        assert not set(part0) & set(part1)
        assert sorted(part0 + part1) == expected[step]


def test_ranks_that_the_longest_utterances_cannot_all_feed_are_refused(durations: list[float]) -> None:
    """Their batches would be dropped every epoch (fewer utterances than ranks)."""
    check_ranks_fed(durations, BATCH_SECONDS, world=1)
    check_ranks_fed(durations, 2 * 16.0 * 1.1, world=2)
    with pytest.raises(ValueError, match="over 2 ranks: the longest utterances"):
        check_ranks_fed(durations, BATCH_SECONDS, world=2)


def test_sampler_order_is_deterministic_per_seed_and_epoch(durations: list[float]) -> None:
    assert batches(durations, epoch=0) == batches(durations, epoch=0)
    assert batches(durations, epoch=1) != batches(durations, epoch=0)
    assert batches(durations, epoch=0, seed=4) != batches(durations, epoch=0)


@pytest.mark.parametrize("start", [0, 1, 5])
def test_sampler_start_skips_batches(durations: list[float], start: int) -> None:
    full = batches(durations, epoch=2, world=2, rank=1)
    assert batches(durations, epoch=2, world=2, rank=1, start=start) == full[start:]
    sampler = BucketBatchSampler(durations, BATCH_SECONDS, seed=3)
    sampler.start = start
    assert len(sampler) == len(batches(durations, epoch=0))  # len counts the whole epoch


# The dataset and collation.


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.train([normalize(t) for t in TEXTS], TokenizerConfig(tokenizer_kind="char"))


def test_token_density_counts_tokens_per_encoder_frame(tokenizer: Tokenizer) -> None:
    dense = Utterance("dense", "a.wav", "hello world", 0.5)  # 5 frames of 100 ms
    sparse = Utterance("sparse", "b.wav", "hi", 2.0)  # 20 frames
    n_dense, n_sparse = len(tokenizer.encode("hello world")), len(tokenizer.encode("hi"))
    density = token_density([dense, sparse], tokenizer, encoder_frame_s=0.1)
    assert density.tokens_per_frame == pytest.approx((n_dense + n_sparse) / 25)
    assert density.tokens_per_word == pytest.approx((n_dense + n_sparse) / 3)
    assert density.over_one == 0.5  # only the dense one has more tokens than frames


def test_dataset_skips_missing_audio(
    tmp_path: Path, tokenizer: Tokenizer, caplog: pytest.LogCaptureFixture
) -> None:
    present = Utterance("present", str(write_wav(tmp_path / "a.wav", 1.0)), "hello world", 1.0)
    missing = Utterance("gone", str(tmp_path / "gone.wav"), "hello world", 1.0)
    dataset = UtteranceDataset([present, missing], FeatureConfig(), tokenizer)
    with caplog.at_level(logging.WARNING, logger="rnnt.data"):
        assert dataset[(1, 0)] is None
    assert "gone" in caplog.text
    example = dataset[(0, 0)]
    assert example is not None
    assert example.tokens == tokenizer.encode("hello world")
    assert example.features.shape[1] == FeatureConfig().feature_dim
    assert example.duration == pytest.approx(1.0)


def test_augmentation_is_reproducible(tmp_path: Path, tokenizer: Tokenizer) -> None:
    utterances = [
        Utterance(f"u{i}", str(write_wav(tmp_path / f"{i}.wav", 1.0, seed=i)), "the lazy dog", 1.0)
        for i in range(2)
    ]
    augment = AugmentConfig(time_masks=2, time_mask_frames=5, freq_masks=2, noise_prob=1.0, gain_db=6.0)

    def features(seed: int, epoch: int, index: int) -> np.ndarray:
        dataset = UtteranceDataset(utterances, FeatureConfig(), tokenizer, augment, seed=seed)
        example = dataset[(index, epoch)]
        assert example is not None
        return example.features

    reference = features(seed=1, epoch=0, index=0)
    assert np.array_equal(features(seed=1, epoch=0, index=0), reference)
    assert not np.array_equal(features(seed=1, epoch=1, index=0), reference)
    assert not np.array_equal(features(seed=2, epoch=0, index=0), reference)
    clean = UtteranceDataset(utterances, FeatureConfig(), tokenizer)[(0, 0)]
    assert clean is not None
    assert not np.array_equal(clean.features, reference)


def test_collate_pads() -> None:
    rng = np.random.default_rng(0)
    short = Example(rng.normal(size=(3, 6)).astype(np.float32), [4, 5, 6, 7], "short", 0.5)
    long = Example(rng.normal(size=(5, 6)).astype(np.float32), [8, 9], "long", 1.5)
    batch = collate([short, None, long])
    assert batch is not None
    assert batch.features.shape == (2, 5, 6)
    assert batch.feature_lengths.tolist() == [3, 5]
    assert torch.equal(batch.features[0, :3], torch.from_numpy(short.features))
    assert torch.equal(batch.features[1], torch.from_numpy(long.features))
    assert not batch.features[0, 3:].any()
    assert batch.targets.tolist() == [[4, 5, 6, 7], [8, 9, 0, 0]]
    assert batch.target_lengths.tolist() == [4, 2]
    assert batch.texts == ["short", "long"]
    assert batch.audio_seconds == pytest.approx(2.0)
    assert collate([None, None]) is None


@pytest.mark.parametrize("speed", [0.9, 1.1])
def test_speed_perturbation_changes_tempo_and_pitch(speed: float) -> None:
    sample_rate, tone_hz = 16000, 440.0
    time_s = np.arange(sample_rate) / sample_rate
    tone = np.sin(2 * np.pi * tone_hz * time_s).astype(np.float32)
    faster = change_speed(tone, speed)
    assert faster.dtype == np.float32
    assert len(faster) == pytest.approx(sample_rate / speed, abs=1)
    spectrum = np.abs(np.fft.rfft(faster[1000:-1000] * np.hanning(len(faster) - 2000)))
    peak_hz = np.argmax(spectrum) * sample_rate / (len(faster) - 2000)
    assert peak_hz == pytest.approx(tone_hz * speed, rel=0.01)


def test_speed_perturbation_draws_one_of_three_speeds() -> None:
    config = AugmentConfig(speed_perturb=0.1)
    samples = np.zeros(16000, np.float32)
    lengths = {len(augment_samples(samples, config, np.random.default_rng(seed))) for seed in range(30)}
    assert lengths == {
        math.ceil(16000 * 10 / 9),
        16000,
        math.ceil(16000 * 10 / 11),
    }  # resample_poly rounds up


@pytest.mark.parametrize("warp", [0.9, 1.1])
def test_vtlp_moves_a_tone_as_far_as_a_tone_that_much_higher(warp: float) -> None:
    config = FeatureConfig()
    time_s = np.arange(config.sample_rate) / config.sample_rate

    def peak_bin(tone_hz: float, tone_warp: float) -> int:
        tone = (0.5 * np.sin(2 * np.pi * tone_hz * time_s)).astype(np.float32)
        feats = compute_features(tone, config, tone_warp).reshape(-1, config.num_mel_bins)
        return int(np.bincount(feats.argmax(axis=1)).argmax())

    assert peak_bin(1500.0, warp) == peak_bin(1500.0 * warp, 1.0) != peak_bin(1500.0, 1.0)


def test_vtlp_warp_keeps_the_band_edges_and_order() -> None:
    hz = np.linspace(0.0, 8000.0, 257)
    for warp in (0.9, 0.95, 1.05, 1.1):
        warped = warp_frequencies(hz, warp, 8000.0)
        assert warped[0] == 0.0 and warped[-1] == pytest.approx(8000.0)
        assert np.all(np.diff(warped) > 0)
        assert warped[32] == pytest.approx(hz[32] * warp)  # 1 kHz: below the boundary


def test_vtlp_draws_rounded_warps_and_nothing_when_off() -> None:
    rng = np.random.default_rng(0)
    warps = {vtlp_warp(AugmentConfig(vtlp=0.1), rng) for _ in range(200)}
    assert min(warps) >= 0.9 - 1e-9 and max(warps) <= 1.1 + 1e-9 and len(warps) > 10
    assert all(abs(w * 100 - round(w * 100)) < 1e-6 for w in warps)
    state = rng.bit_generator.state
    assert vtlp_warp(AugmentConfig(), rng) == 1.0
    assert rng.bit_generator.state == state  # recipes without VTLP keep their random stream


def test_a_flat_random_eq_is_a_gain_change() -> None:
    """Checks the dB -> log-power units: +3 dB at every control point equals a louder signal."""

    class FlatRng:
        def uniform(self, low: float, high: float, size: int) -> np.ndarray:
            return np.full(size, 3.0)

    config = FeatureConfig(stack_frames=2)
    samples = np.random.default_rng(0).uniform(-0.3, 0.3, config.sample_rate).astype(np.float32)
    no_masks = AugmentConfig(eq_db=6.0, time_masks=0, freq_masks=0)
    equalised = augment_features(compute_features(samples, config), no_masks, config, FlatRng())  # type: ignore[arg-type]
    louder = compute_features(samples * np.float32(10 ** (3.0 / 20)), config)
    np.testing.assert_allclose(equalised, louder, atol=1e-4)


def test_random_eq_is_one_smooth_bounded_response_and_draws_nothing_when_off() -> None:
    config = FeatureConfig(stack_frames=3)
    features = np.random.default_rng(1).normal(size=(40, 3 * config.num_mel_bins)).astype(np.float32)
    rng = np.random.default_rng(2)
    eq = AugmentConfig(eq_db=6.0, time_masks=0, freq_masks=0)
    responses = {
        augment_features(features, eq, config, rng).tobytes() for _ in range(3)
    }  # a new response per call
    assert len(responses) == 3
    delta = augment_features(features, eq, config, rng) - features
    np.testing.assert_allclose(delta, np.broadcast_to(delta[0], delta.shape), atol=1e-6)  # every frame
    per_sub_frame = delta[0].reshape(3, config.num_mel_bins)
    np.testing.assert_allclose(per_sub_frame, per_sub_frame[[0, 0, 0]], atol=1e-6)  # every sub-frame
    curve = per_sub_frame[0]
    assert np.abs(curve).max() <= 6.0 * NEPER_PER_DB + 1e-6 and np.ptp(curve) > 0.1
    bends = np.flatnonzero(np.abs(np.diff(curve, 2)) > 1e-5) + 1  # piecewise linear: bends only
    assert len(bends) <= 2 * (EQ_POINTS - 2)  # beside the inner control points
    state = rng.bit_generator.state
    off = AugmentConfig(time_masks=0, freq_masks=0)
    assert np.array_equal(augment_features(features, off, config, rng), features)
    assert rng.bit_generator.state == state  # recipes without EQ keep their random stream
