"""Greedy search over the PyTorch runtime: batching, resuming, symbol limits, <unk> suppression,
blank penalty."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from rnnt.config import BLANK_ID, UNK_ID, DecodeConfig
from rnnt.decoding import decode_features, greedy_search
from rnnt.hypothesis import Hypothesis, initial_hypothesis
from rnnt.model import Transducer
from rnnt.runtimes.pytorch import TorchRuntime

from .conftest import tiny_model_config

VOCAB = 10
INPUT_DIM = 12
TIME_REDUCTION = 2
BLANK_BIAS = 0.3  # raises the blank logit so that a random model mixes blank and token frames
DOMINANT_BIAS = 100.0  # a joint bias that makes one class win every time


def tiny_runtime(seed: int = 0) -> TorchRuntime:
    config = tiny_model_config(vocab_size=VOCAB, input_dim=INPUT_DIM, time_reduction=TIME_REDUCTION)
    torch.manual_seed(seed)
    model = Transducer(config)
    with torch.no_grad():
        model.joint.out.bias[BLANK_ID] += BLANK_BIAS
    return TorchRuntime(model)


def random_features(lengths: list[int], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(length, INPUT_DIM)).astype(np.float32) for length in lengths]


def assert_same_hypothesis(actual: Hypothesis, expected: Hypothesis) -> None:
    assert actual.tokens == expected.tokens
    assert actual.frames == expected.frames
    assert actual.num_frames == expected.num_frames
    assert actual.trailing_blanks == expected.trailing_blanks
    assert actual.score == pytest.approx(expected.score, abs=1e-4)
    np.testing.assert_allclose(actual.predictor_out, expected.predictor_out, atol=1e-5)


def test_batched_equals_one_at_a_time() -> None:
    runtime = tiny_runtime()
    config = DecodeConfig()
    features = random_features([14, 31, 22])
    batched = decode_features(runtime, features, config)
    emitting = [len(set(h.frames)) for h in batched]
    assert 0 < sum(emitting) < sum(h.num_frames for h in batched)  # some frames blank, some not
    for hyp, feats in zip(batched, features, strict=True):
        (alone,) = decode_features(runtime, [feats], config)
        assert_same_hypothesis(hyp, alone)
        assert hyp.num_frames == len(feats) // TIME_REDUCTION
        assert all(0 <= f < hyp.num_frames for f in hyp.frames)
        assert hyp.frames == sorted(hyp.frames)


@pytest.mark.parametrize("pieces", [[1, 1, 1], [3, 4], [5, 1, 2, 7]])
def test_resumed_search_equals_one_call(pieces: list[int]) -> None:
    runtime = tiny_runtime(seed=1)
    config = DecodeConfig()
    (features,) = random_features([2 * 20], seed=1)
    encoder_out, _ = runtime.encode(features[None], runtime.init_encoder_state(1))
    whole = greedy_search(runtime, encoder_out, [encoder_out.shape[1]], [initial_hypothesis(runtime)], config)
    assert whole[0].tokens

    hyps = [initial_hypothesis(runtime)]
    bounds = np.cumsum([0, *pieces, encoder_out.shape[1] - sum(pieces)])
    for start, stop in itertools.pairwise(bounds.tolist()):
        hyps = greedy_search(runtime, encoder_out[:, start:stop], [stop - start], hyps, config)
    assert_same_hypothesis(hyps[0], whole[0])


def frame_by_frame_greedy(runtime: TorchRuntime, encoder_out: np.ndarray, max_symbols: int) -> Hypothesis:
    """The textbook greedy search: one `join` per (frame, symbol), for one stream."""
    hyp = initial_hypothesis(runtime)
    for t in range(encoder_out.shape[0]):
        for _ in range(max_symbols):
            logits = runtime.join(encoder_out[t : t + 1], hyp.predictor_out[None])[0]
            logits[UNK_ID] = -np.inf  # suppressed: out of the distribution
            logp = logits - np.logaddexp.reduce(logits)
            token = int(logp.argmax())
            hyp.score += float(logp[token])
            if token == BLANK_ID:
                break
            out, hyp.predictor_state = runtime.predict(np.array([token]), hyp.predictor_state)
            hyp.predictor_out = out[0]
            hyp.tokens.append(token)
            hyp.frames.append(t)
    return hyp


@pytest.mark.parametrize("max_symbols", [1, 2, 4])
def test_lookahead_greedy_equals_frame_by_frame(max_symbols: int) -> None:
    runtime = tiny_runtime(seed=2)
    with torch.no_grad():
        runtime.model.joint.out.bias[BLANK_ID] += 0.55  # mostly blank, as a trained model
    features = random_features([2 * 45, 2 * 7, 2 * 16], seed=2)  # longer and shorter than the lookahead
    config = DecodeConfig(max_symbols_per_frame=max_symbols)
    calls = 0
    join = runtime.join

    def counting_join(encoder_out: np.ndarray, predictor_out: np.ndarray) -> np.ndarray:
        nonlocal calls
        calls += 1
        return join(encoder_out, predictor_out)

    runtime.join = counting_join  # type: ignore[method-assign]
    hyps = decode_features(runtime, features, config)
    searched_calls = calls
    for hyp, feats in zip(hyps, features, strict=True):
        encoder_out, _ = runtime.encode(feats[None], runtime.init_encoder_state(1))
        expected = frame_by_frame_greedy(runtime, encoder_out[0], max_symbols)
        assert hyp.tokens == expected.tokens and hyp.frames == expected.frames
        assert hyp.score == pytest.approx(expected.score, abs=1e-4)
    frames = sum(len(f) // TIME_REDUCTION for f in features)
    tokens = sum(len(h.tokens) for h in hyps)
    assert 0 < tokens < frames / 2
    assert searched_calls < frames  # frame by frame would need at least one join per frame


def test_search_does_not_modify_its_input() -> None:
    runtime = tiny_runtime()
    (features,) = random_features([16])
    encoder_out, _ = runtime.encode(features[None], runtime.init_encoder_state(1))
    start = initial_hypothesis(runtime)
    greedy_search(runtime, encoder_out, [encoder_out.shape[1]], [start], DecodeConfig())
    assert start.tokens == [] and start.num_frames == 0 and start.score == 0.0


@pytest.mark.parametrize("max_symbols", [1, 2, 5])
def test_max_symbols_per_frame(max_symbols: int) -> None:
    runtime = tiny_runtime()
    with torch.no_grad():
        runtime.model.joint.out.bias[5] += DOMINANT_BIAS
    features = random_features([12, 7])
    config = DecodeConfig(max_symbols_per_frame=max_symbols)
    for hyp, feats in zip(decode_features(runtime, features, config), features, strict=True):
        frames = len(feats) // TIME_REDUCTION
        assert hyp.tokens == [5] * (max_symbols * frames)
        assert hyp.frames == [t for t in range(frames) for _ in range(max_symbols)]


def test_suppress_unk() -> None:
    runtime = tiny_runtime()
    with torch.no_grad():
        runtime.model.joint.out.bias[UNK_ID] += DOMINANT_BIAS
    features = random_features([10, 16])
    suppressed = decode_features(runtime, features, DecodeConfig(suppress_unk=True))
    assert all(UNK_ID not in h.tokens for h in suppressed)
    allowed = decode_features(runtime, features, DecodeConfig(suppress_unk=False, max_symbols_per_frame=2))
    assert all(h.tokens and set(h.tokens) == {UNK_ID} for h in allowed)  # the bias does dominate


@pytest.mark.parametrize("beam_size", [1, 3])
def test_blank_penalty_equals_a_lower_blank_bias(beam_size: int) -> None:
    """--blank_penalty=p decodes exactly as the model whose blank logit is p lower, and
    emits more tokens than no penalty."""
    penalty = 0.8
    features = random_features([2 * 20, 2 * 9], seed=4)
    runtime = tiny_runtime(seed=4)
    with torch.no_grad():
        runtime.model.joint.out.bias[BLANK_ID] += 1.0  # mostly blank, so the penalty has room
    plain = decode_features(runtime, features, DecodeConfig(beam_size=beam_size))
    penalised = decode_features(runtime, features, DecodeConfig(beam_size=beam_size, blank_penalty=penalty))
    with torch.no_grad():
        runtime.model.joint.out.bias[BLANK_ID] -= penalty
    lowered = decode_features(runtime, features, DecodeConfig(beam_size=beam_size))
    for actual, expected in zip(penalised, lowered, strict=True):
        assert actual.tokens == expected.tokens and actual.frames == expected.frames
        assert actual.score == pytest.approx(expected.score, abs=1e-4)
    assert sum(len(h.tokens) for h in penalised) > sum(len(h.tokens) for h in plain)
