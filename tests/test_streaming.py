"""Streaming recognizer: == offline for any chunking, endpointing, events, batched streams."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
import torch

from rnnt.config import BLANK_ID, DecodeConfig, FeatureConfig, ModelConfig, StreamConfig, TokenizerConfig
from rnnt.decoding import decode_features, search
from rnnt.features import compute_features
from rnnt.fusion import Fusion
from rnnt.hotwords import hotwords_from_text
from rnnt.hypothesis import Hypothesis
from rnnt.model import Transducer
from rnnt.rescoring import rescore_beam
from rnnt.runtimes import LoadedModel
from rnnt.runtimes.pytorch import TorchRuntime
from rnnt.state import LstmState
from rnnt.streaming import (
    FINAL,
    PARTIAL,
    CaptionEvent,
    EndpointFrames,
    StreamingRecognizer,
    chunk_frames,
    decode_chunks,
    endpoint_rule,
    frames_to_endpoint,
)
from rnnt.streams_benchmark import StreamsSetting, run_interleaved, stream_audio
from rnnt.tokenizer import Tokenizer

from .conftest import tiny_model_config

SAMPLE_RATE = 16000
FEATURES = FeatureConfig(num_mel_bins=20)  # 30 ms model frames
TIME_REDUCTION = 2
FRAME_S = FEATURES.frame_ms * TIME_REDUCTION / 1000  # 60 ms encoder frames
# A random model made to mix blank and token frames and to depend on its predictor.
BLANK_BIAS = 2.5
PREDICTOR_GAIN = 10.0
JOINT_GAIN = 3.0
SYLLABLE_S = 0.12
SPEECH_LOG_ENERGY = -8.0  # mean log-mel above this is "speech" for EnergyRuntime (silence: -15.9)
NO_ENDPOINTS = StreamConfig(endpointing=False)
TEXTS = ["the quick brown fox", "jumps over the lazy dog"]


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.train(TEXTS, TokenizerConfig(tokenizer_kind="char"))


def tiny_model(
    tokenizer: Tokenizer, decode: DecodeConfig, seed: int = 0, ctc_head: bool = False
) -> LoadedModel:
    config = tiny_model_config(
        vocab_size=tokenizer.vocab_size,
        input_dim=FEATURES.feature_dim,
        time_reduction=TIME_REDUCTION,
        ctc_head=ctc_head,
    )
    torch.manual_seed(seed)
    model = Transducer(config)
    with torch.no_grad():
        model.joint.pred_proj.weight.mul_(PREDICTOR_GAIN)
        model.joint.out.weight.mul_(JOINT_GAIN)
        model.joint.out.bias[BLANK_ID] += BLANK_BIAS
    return LoadedModel(TorchRuntime(model), FEATURES, config, tokenizer, decode)


def speech_like(seconds: float, seed: int) -> np.ndarray:
    """Syllable-long (120 ms) chords of random tones, some left silent, over faint noise."""
    rng = np.random.default_rng(seed)
    num_samples = round(seconds * SAMPLE_RATE)
    t = np.arange(round(SYLLABLE_S * SAMPLE_RATE)) / SAMPLE_RATE
    syllables = []
    for _ in range(0, num_samples, len(t)):
        hz = rng.uniform(150, 4000, size=(3, 1))
        amplitude = rng.uniform(0, 0.3, size=(3, 1)) * (rng.random() > 0.3)
        tones = amplitude * np.sin(2 * np.pi * hz * t + rng.uniform(0, 2 * np.pi, size=(3, 1)))
        syllables.append(tones.sum(axis=0) + 0.01 * rng.standard_normal(len(t)))
    return np.concatenate(syllables)[:num_samples].astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * SAMPLE_RATE), dtype=np.float32)


def slices(samples: np.ndarray, how: str, seed: int = 0) -> list[np.ndarray]:
    if how == "whole":
        return [samples]
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, len(samples)), size=len(samples) // 2000, replace=False))
    return np.split(samples, cuts)


def stream(recognizer: StreamingRecognizer, pieces: list[np.ndarray]) -> list[CaptionEvent]:
    events = []
    for piece in pieces:
        events += recognizer.accept(piece)
    return events + recognizer.finish()


def finals(events: list[CaptionEvent]) -> list[CaptionEvent]:
    return [e for e in events if e.kind == FINAL]


def assert_equals_offline(model: LoadedModel, samples: np.ndarray, events: list[CaptionEvent]) -> None:
    (offline,) = decode_features(model.runtime, [compute_features(samples, FEATURES)], model.decode)
    assert offline.tokens, "the test signal must decode to some tokens"
    (final,) = finals(events)
    assert [t.piece for t in final.tokens] == [model.tokenizer.piece(i) for i in offline.tokens]
    assert [t.start_s for t in final.tokens] == pytest.approx([f * FRAME_S for f in offline.frames])
    assert final.text == model.tokenizer.decode(offline.tokens)


@pytest.mark.parametrize("beam_size", [1, 3])
@pytest.mark.parametrize("chunk_ms", [60, 130, 600, 5000])
@pytest.mark.parametrize("how", ["whole", "random"])
def test_streaming_equals_offline(tokenizer: Tokenizer, beam_size: int, chunk_ms: int, how: str) -> None:
    model = tiny_model(tokenizer, DecodeConfig(beam_size=beam_size))
    samples = speech_like(2.0, seed=1)
    recognizer = StreamingRecognizer(model, StreamConfig(chunk_ms=chunk_ms, endpointing=False))
    assert_equals_offline(model, samples, stream(recognizer, slices(samples, how)))


@pytest.mark.parametrize("beam_size", [1, 3])
def test_one_sample_at_a_time_equals_offline(tokenizer: Tokenizer, beam_size: int) -> None:
    model = tiny_model(
        tokenizer, DecodeConfig(beam_size=beam_size, temperature=1.0), seed=2
    )  # decodes tokens
    samples = speech_like(0.7, seed=2)
    recognizer = StreamingRecognizer(model, StreamConfig(chunk_ms=120, endpointing=False))
    assert_equals_offline(model, samples, stream(recognizer, list(samples[:, None])))


@pytest.mark.parametrize("chunk_ms", [60, 600])
def test_streaming_with_ctc_rescoring_equals_offline(tokenizer: Tokenizer, chunk_ms: int) -> None:
    """The recogniser keeps the CTC log-probabilities of every chunk and re-ranks the beam when
    the segment closes, as offline decoding re-ranks the utterance's; the rescoring changes
    the transcript here, so the test sees it applied."""
    decode = DecodeConfig(beam_size=4, ctc_rescore_weight=3.0)
    model = tiny_model(tokenizer, decode, seed=5, ctc_head=True)
    samples = speech_like(2.0, seed=1)
    recognizer = StreamingRecognizer(model, StreamConfig(chunk_ms=chunk_ms, endpointing=False))
    assert_equals_offline(model, samples, stream(recognizer, slices(samples, "random")))
    features = [compute_features(samples, FEATURES)]
    (plain,) = decode_features(model.runtime, features, DecodeConfig(beam_size=4))
    (rescored,) = decode_features(model.runtime, features, decode)
    assert plain.tokens != rescored.tokens


def test_batched_streams_with_ctc_rescoring_equal_separate_streams(
    tokenizer: Tokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Segments closed by endpoints are each rescored on exactly their own frames, batched or not."""
    model = tiny_model(tokenizer, DecodeConfig(beam_size=3, ctc_rescore_weight=3.0), seed=5, ctc_head=True)
    config = StreamConfig(chunk_ms=180, endpoint_trailing_silence_s=0.3)
    signals = [
        np.concatenate([speech_like(1.0, seed), silence(0.6), speech_like(0.8, seed + 9)]) for seed in (1, 2)
    ]
    rescored_frames = []

    def spy(beam: list[Hypothesis], log_probs: list[np.ndarray], weight: float) -> list[Hypothesis]:
        (segment,) = log_probs  # one view: the segment's frames
        assert all(hyp.num_frames == len(segment) for hyp in beam)
        rescored_frames.append(len(segment))
        return rescore_beam(beam, log_probs, weight)

    monkeypatch.setattr("rnnt.streaming.rescore_beam", spy)
    separate = [stream(StreamingRecognizer(model, config), [s]) for s in signals]
    frames = [len(compute_features(s, FEATURES)) // TIME_REDUCTION for s in signals]
    assert sum(rescored_frames) == sum(frames)  # every frame in one segment's rescoring
    recognizers = [StreamingRecognizer(model, config) for _ in signals]
    batched = decode_chunks(recognizers, signals)
    batched = [events + r.finish() for events, r in zip(batched, recognizers, strict=True)]
    assert [finals(e) for e in batched] == [finals(e) for e in separate]
    assert any(len(finals(e)) > 1 for e in separate)


def test_timestamps_and_partials(tokenizer: Tokenizer) -> None:
    model = tiny_model(tokenizer, DecodeConfig())
    samples = speech_like(3.0, seed=3)
    events = stream(StreamingRecognizer(model, StreamConfig(chunk_ms=240, endpointing=False)), [samples])
    partials = [e for e in events if e.kind == PARTIAL]
    assert len(partials) > 1
    assert all(a.text != b.text for a, b in itertools.pairwise(partials))
    assert all(a.end_s < b.end_s for a, b in itertools.pairwise(partials))
    (final,) = finals(events)
    assert events[-1] is final and final.end_s >= partials[-1].end_s
    times = [t.start_s for t in final.tokens]
    assert times == sorted(times) and times[0] >= 0 and times[-1] < len(samples) / SAMPLE_RATE
    assert final.end_s <= len(samples) / SAMPLE_RATE


def test_finish_flushes_the_last_text_and_resets(tokenizer: Tokenizer) -> None:
    model = tiny_model(tokenizer, DecodeConfig())
    samples = speech_like(1.0, seed=4)
    recognizer = StreamingRecognizer(model, StreamConfig(chunk_ms=10_000, endpointing=False))
    assert recognizer.accept(samples) == []  # less than one chunk: nothing decoded yet
    first = recognizer.finish()
    assert [e.kind for e in first] == [FINAL] and first[0].text
    assert recognizer.text() == "" and len(recognizer.frames) == 0
    assert stream(recognizer, [samples]) == first  # a reset stream starts again at time 0


@pytest.mark.parametrize("beam_size", [1, 2])
def test_batched_streams_equal_separate_streams(
    tokenizer: Tokenizer, beam_size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Streams batched share encoder and search calls (endpoints included) and decode alike."""
    model = tiny_model(tokenizer, DecodeConfig(beam_size=beam_size))
    config = StreamConfig(chunk_ms=180, endpoint_trailing_silence_s=0.3)
    signals = [speech_like(seconds, seed) for seed, seconds in enumerate([1.5, 2.2, 0.9])]
    separate = [stream(StreamingRecognizer(model, config), slices(s, "random", seed=7)) for s in signals]
    streams_per_search = []

    def spy(runtime: Any, encoder_out: np.ndarray, *args: Any) -> list[list[Hypothesis]]:
        streams_per_search.append(len(encoder_out))
        return search(runtime, encoder_out, *args)

    monkeypatch.setattr("rnnt.streaming.search", spy)
    recognizers = [StreamingRecognizer(model, config) for _ in signals]
    batched: list[list[CaptionEvent]] = [[] for _ in signals]
    piece = 3000
    for start in range(0, max(len(s) for s in signals), piece):
        new = decode_chunks(recognizers, [s[start : start + piece] for s in signals])
        for events, more in zip(batched, new, strict=True):
            events += more
    for events, recognizer in zip(batched, recognizers, strict=True):
        events += recognizer.finish()
    assert [finals(e) for e in batched] == [finals(e) for e in separate]
    assert max(streams_per_search) == len(signals)
    assert any(len(finals(e)) > 1 for e in separate)  # endpoints fell inside shared calls


def test_streams_with_their_own_hotwords_share_search_calls(
    tokenizer: Tokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream given hotwords (`set_fusion`, before its audio) and a plain one, batched, share
    search calls and each decodes as it does alone; hotwords after the first samples refused."""
    model = tiny_model(tokenizer, DecodeConfig(beam_size=3))
    config = StreamConfig(chunk_ms=180, endpoint_trailing_silence_s=0.3)
    fusion = Fusion(None, hotwords_from_text("the lazy fox :4.0", tokenizer, 1.5, "test"))
    signal = speech_like(1.5, seed=1)

    def recognizer(with_hotwords: bool) -> StreamingRecognizer:
        made = StreamingRecognizer(model, config)
        if with_hotwords:
            made.set_fusion(fusion)
        return made

    separate = [finals(stream(recognizer(h), [signal])) for h in (True, False)]
    assert separate[0] != separate[1]  # the hotwords changed that stream's words
    streams_per_search = []

    def spy(runtime: Any, encoder_out: np.ndarray, *args: Any) -> list[list[Hypothesis]]:
        streams_per_search.append(len(encoder_out))
        return search(runtime, encoder_out, *args)

    monkeypatch.setattr("rnnt.streaming.search", spy)
    recognizers = [recognizer(h) for h in (True, False)]
    batched = decode_chunks(recognizers, [signal, signal])
    for events, one in zip(batched, recognizers, strict=True):
        events += one.finish()
    assert [finals(e) for e in batched] == separate
    assert max(streams_per_search) == 2
    started = StreamingRecognizer(model, config)
    started.accept(signal[:100])
    with pytest.raises(ValueError, match="before its first samples"):
        started.set_fusion(fusion)


def test_chunk_frames_are_whole_encoder_frames() -> None:
    assert chunk_frames(StreamConfig(chunk_ms=600), FEATURES, TIME_REDUCTION) == 20
    assert chunk_frames(StreamConfig(chunk_ms=130), FEATURES, TIME_REDUCTION) == 4
    assert chunk_frames(StreamConfig(chunk_ms=1), FEATURES, TIME_REDUCTION) == 2


# Endpointing ----------------------------------------------------------------------------


def hypothesis(tokens: list[int], trailing_blanks: int, num_frames: int) -> Hypothesis:
    state = LstmState(np.zeros((1, 1, 1)), np.zeros((1, 1, 1)))
    frames = [num_frames - trailing_blanks - 1] * len(tokens)
    return Hypothesis(tokens, frames, 0.0, np.zeros(1), state, num_frames, trailing_blanks)


def test_endpoint_rules_in_frames() -> None:
    rules = EndpointFrames.from_config(StreamConfig(), FRAME_S)
    assert rules == EndpointFrames(silence=40, trailing_silence=20, max_segment=334)
    assert EndpointFrames.from_config(NO_ENDPOINTS, FRAME_S) == EndpointFrames(0, 0, 0)
    assert endpoint_rule(hypothesis([], 39, 39), rules) == 0
    assert endpoint_rule(hypothesis([], 40, 40), rules) == 1
    assert endpoint_rule(hypothesis([5], 19, 60), rules) == 0
    assert endpoint_rule(hypothesis([5], 20, 60), rules) == 2
    assert endpoint_rule(hypothesis([5, 6], 3, 334), rules) == 3
    assert endpoint_rule(hypothesis([5], 500, 500), EndpointFrames(0, 0, 0)) == 0


def test_frames_to_endpoint_never_overshoots() -> None:
    rules = EndpointFrames(silence=40, trailing_silence=20, max_segment=100)
    assert frames_to_endpoint([hypothesis([], 10, 10)], rules) == 20  # a token, then 20 blanks
    assert frames_to_endpoint([hypothesis([], 30, 30)], rules) == 10  # rule 1
    assert frames_to_endpoint([hypothesis([5], 4, 50)], rules) == 16  # rule 2
    assert frames_to_endpoint([hypothesis([5], 4, 95)], rules) == 5  # rule 3
    assert frames_to_endpoint([hypothesis([5], 4, 50), hypothesis([5, 6], 15, 50)], rules) == 5
    assert frames_to_endpoint([hypothesis([5], 20, 50)], rules) == 1
    assert frames_to_endpoint([hypothesis([5], 4, 50)], EndpointFrames(0, 0, 0)) > 10**6


class EnergyRuntime:
    """A transducer stand-in: one token on every loud encoder frame, blank on silence.

    The encoder output is the mean log-mel energy; the predictor output is a one-hot of
    the last token, and the next token is the one after it in `cycle`.
    """

    time_reduction = TIME_REDUCTION

    def __init__(self, vocab_size: int, cycle: list[int]):
        self.vocab_size = vocab_size
        self.following = np.full(vocab_size, cycle[0])
        self.following[cycle] = np.roll(cycle, -1)

    def init_encoder_state(self, batch_size: int) -> LstmState:
        return LstmState(np.zeros((1, batch_size, 1)), np.zeros((1, batch_size, 1)))

    def encode(self, features: np.ndarray, state: LstmState) -> tuple[np.ndarray, LstmState]:
        batch, frames, _ = features.shape
        usable = frames // TIME_REDUCTION
        energy = features[:, : usable * TIME_REDUCTION].mean(axis=2).reshape(batch, usable, TIME_REDUCTION)
        return energy.mean(axis=2)[..., None], LstmState(state.h + usable, state.c)

    def init_predictor_state(self, batch_size: int) -> LstmState:
        return self.init_encoder_state(batch_size)

    def predict(self, tokens: np.ndarray, state: LstmState) -> tuple[np.ndarray, LstmState]:
        return np.eye(self.vocab_size, dtype=np.float32)[tokens], state

    def join(self, encoder_out: np.ndarray, predictor_out: np.ndarray) -> np.ndarray:
        following = self.following[predictor_out.argmax(axis=1)]
        speech = encoder_out[:, 0] > SPEECH_LOG_ENERGY
        logits = np.zeros((len(encoder_out), self.vocab_size), dtype=np.float32)
        logits[speech, following[speech]] = 10.0
        logits[~speech, BLANK_ID] = 10.0
        return logits


@pytest.fixture
def energy_model(tokenizer: Tokenizer) -> LoadedModel:
    letters = [i for i in range(tokenizer.vocab_size) if tokenizer.piece(i).isalpha()]
    config = ModelConfig(vocab_size=tokenizer.vocab_size, input_dim=FEATURES.feature_dim)
    runtime = EnergyRuntime(tokenizer.vocab_size, letters)
    return LoadedModel(runtime, FEATURES, config, tokenizer, DecodeConfig(max_symbols_per_frame=1))


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(round(seconds * SAMPLE_RATE))).astype(
        np.float32
    )


@pytest.mark.parametrize("beam_size", [1, 2])
def test_a_pause_splits_two_segments(energy_model: LoadedModel, beam_size: int) -> None:
    samples = np.concatenate([noise(1.0), silence(3.0), noise(1.0, seed=1)])
    config = StreamConfig(chunk_ms=600)
    decode = DecodeConfig(beam_size=beam_size, max_symbols_per_frame=1)
    events = stream(StreamingRecognizer(energy_model, config, decode), [samples])
    first, second = finals(events)
    assert (first.segment, second.segment) == (0, 1)
    assert first.start_s == 0 and all(t.start_s < 1.0 for t in first.tokens)
    last_token = first.tokens[-1].start_s
    assert first.end_s == pytest.approx(last_token + FRAME_S + config.endpoint_trailing_silence_s)
    assert second.start_s == first.end_s  # the next segment starts where the first ended
    assert all(4.0 - FRAME_S <= t.start_s < 5.0 for t in second.tokens)
    assert second.end_s <= 5.0
    assert len(first.tokens) >= 15 and len(second.tokens) >= 15
    assert [e.kind for e in events if e.segment == 0][-1] == FINAL


@pytest.mark.parametrize("chunk_ms", [60, 250, 1000])
def test_endpoints_do_not_depend_on_chunking(energy_model: LoadedModel, chunk_ms: int) -> None:
    samples = np.concatenate([noise(1.0), silence(1.5), noise(0.5, 1), silence(3.0), noise(1.3, 2)])
    reference = finals(stream(StreamingRecognizer(energy_model, StreamConfig(chunk_ms=600)), [samples]))
    assert len(reference) == 3
    recognizer = StreamingRecognizer(energy_model, StreamConfig(chunk_ms=chunk_ms))
    assert finals(stream(recognizer, slices(samples, "random", seed=chunk_ms))) == reference


def test_silence_alone_moves_the_segment_start(energy_model: LoadedModel) -> None:
    samples = np.concatenate([silence(5.0), noise(0.5)])
    events = stream(StreamingRecognizer(energy_model, StreamConfig()), [samples])
    (final,) = finals(events)
    assert final.segment == 0
    assert final.start_s == pytest.approx(2 * 40 * FRAME_S)  # two rule-1 endpoints of 2.4 s
    assert all(e.text for e in events)


def test_long_speech_is_cut_at_the_maximum_segment(energy_model: LoadedModel) -> None:
    samples = noise(3.0)
    config = StreamConfig(endpoint_max_segment_s=16 * FRAME_S)
    events = finals(stream(StreamingRecognizer(energy_model, config), [samples]))
    encoder_frames = len(compute_features(samples, FEATURES)) // TIME_REDUCTION
    assert len(events) == -(-encoder_frames // 16)
    assert [e.segment for e in events] == list(range(len(events)))
    assert [e.start_s for e in events] == pytest.approx([16 * FRAME_S * i for i in range(len(events))])
    assert sum(len(e.tokens) for e in events) == encoder_frames  # every frame decoded once


def test_streams_benchmark_decodes_all_audio_in_every_setting(
    tokenizer: Tokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every setting decodes all the audio; the streams take the decode config and fusion given."""
    model = tiny_model(tokenizer, DecodeConfig())
    utterances = [speech_like(seconds, seed) for seed, seconds in enumerate([0.9, 1.2, 0.7])]
    settings = [StreamsSetting(1, True), StreamsSetting(2, True), StreamsSetting(2, False)]
    results = run_interleaved(model, StreamConfig(chunk_ms=240), utterances, settings, repeats=2)
    audio_s = 2 * sum(len(u) for u in utterances) / SAMPLE_RATE
    for result in results:
        row = result.row()
        assert result.audio_s == pytest.approx(audio_s)
        assert row["audio_s_per_s"] > 0 and row["round_ms_p95"] >= row["round_ms_median"] > 0
    made: list[StreamingRecognizer] = []

    class Recorded(StreamingRecognizer):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            made.append(self)

    monkeypatch.setattr("rnnt.streams_benchmark.StreamingRecognizer", Recorded)
    decode = DecodeConfig(beam_size=2)
    fusion = Fusion(None, hotwords_from_text("the fox", tokenizer, 1.5, "test"))
    run_interleaved(model, StreamConfig(chunk_ms=240), utterances, settings[1:2], 1, decode, fusion)
    assert len(made) == 2 and all(r.decode == decode and r.fusion is fusion for r in made)
    assert [len(a) for a in stream_audio(utterances, 2)] == [
        len(utterances[0]) + len(utterances[2]),
        len(utterances[1]),
    ]
