"""Modified beam search: exact on a brute-forceable model, == greedy at width 1, resumable, batched."""

from __future__ import annotations

import itertools
from collections import defaultdict

import numpy as np
import pytest
import torch

from rnnt.config import BLANK_ID, UNK_ID, DecodeConfig
from rnnt.decoding import (
    Hypothesis,
    beam_search,
    decode_features,
    greedy_search,
    initial_hypothesis,
    log_softmax,
    search,
)
from rnnt.model import Transducer
from rnnt.runtimes.pytorch import TorchRuntime

from .conftest import tiny_model_config
from .test_decoding import DOMINANT_BIAS, INPUT_DIM, assert_same_hypothesis, random_features, tiny_runtime

SMALL_VOCAB = 4  # blank, <unk> and two tokens: every alignment can be enumerated
SMALL_FRAMES = 4  # encoder frames of the brute-forced utterance
EXHAUSTIVE_BEAM = 200  # more than the 1 + 3 + 9 + 27 + 81 token sequences of 4 frames


def small_runtime(seed: int) -> TorchRuntime:
    config = tiny_model_config(
        vocab_size=SMALL_VOCAB,
        input_dim=INPUT_DIM,
        encoder_layers=1,
        encoder_hidden=8,
        encoder_output=6,
        time_reduction=1,
        predictor_embed=4,
        predictor_hidden=8,
        predictor_output=6,
        joint_dim=8,
    )
    torch.manual_seed(seed)
    model = Transducer(config)
    with torch.no_grad():
        model.joint.out.weight.mul_(4.0)  # peaky distributions: a greedy path is often not the best
    return TorchRuntime(model)


def brute_force(runtime: TorchRuntime, encoder_out: np.ndarray) -> dict[tuple[int, ...], float]:
    """log P(tokens) summed over every alignment with at most one token per frame."""
    log_probs: dict[tuple[int, tuple[int, ...]], np.ndarray] = {}

    def frame_log_probs(t: int, tokens: tuple[int, ...]) -> np.ndarray:
        if (t, tokens) not in log_probs:
            logits = runtime.join(encoder_out[t : t + 1], _predict_prefix(runtime, tokens)[None])
            log_probs[t, tokens] = log_softmax(logits)[0]
        return log_probs[t, tokens]

    totals: dict[tuple[int, ...], list[float]] = defaultdict(list)
    for alignment in itertools.product(range(SMALL_VOCAB), repeat=len(encoder_out)):
        tokens: tuple[int, ...] = ()
        score = 0.0
        for t, choice in enumerate(alignment):
            score += float(frame_log_probs(t, tokens)[choice])
            tokens = tokens if choice == BLANK_ID else (*tokens, choice)
        totals[tokens].append(score)
    return {tokens: float(np.logaddexp.reduce(scores)) for tokens, scores in totals.items()}


def _predict_prefix(runtime: TorchRuntime, tokens: tuple[int, ...]) -> np.ndarray:
    state = runtime.init_predictor_state(1)
    out = None
    for token in (BLANK_ID, *tokens):
        out, state = runtime.predict(np.array([token], dtype=np.int64), state)
    assert out is not None
    return out[0]


def encode(runtime: TorchRuntime, features: np.ndarray) -> np.ndarray:
    encoder_out, _ = runtime.encode(features[None], runtime.init_encoder_state(1))
    return encoder_out


@pytest.mark.parametrize("seed", [0, 1, 3, 4, 5])  # greedy misses the best in 3, 4, 5
def test_exhaustive_beam_finds_the_most_probable_tokens(seed: int) -> None:
    runtime = small_runtime(seed)
    (features,) = random_features([SMALL_FRAMES], seed=seed)
    encoder_out = encode(runtime, features)
    expected = brute_force(runtime, encoder_out[0])
    config = DecodeConfig(beam_size=EXHAUSTIVE_BEAM, suppress_unk=False)
    (beam,) = beam_search(runtime, encoder_out, [SMALL_FRAMES], [[initial_hypothesis(runtime)]], config)
    assert len(beam) == len(expected)
    for hyp in beam:
        assert hyp.score == pytest.approx(expected[tuple(hyp.tokens)], abs=1e-4)
    assert tuple(beam[0].tokens) == max(expected, key=expected.__getitem__)
    greedy_config = DecodeConfig(max_symbols_per_frame=1, suppress_unk=False)
    (greedy,) = greedy_search(
        runtime, encoder_out, [SMALL_FRAMES], [initial_hypothesis(runtime)], greedy_config
    )
    assert beam[0].score + 1e-6 >= expected[tuple(greedy.tokens)] >= greedy.score - 1e-6


@pytest.mark.parametrize("seed", [0, 3])
def test_width_one_equals_greedy_with_one_symbol_per_frame(seed: int) -> None:
    runtime = tiny_runtime(seed)
    features = random_features([30, 17, 44], seed=seed)
    greedy = decode_features(runtime, features, DecodeConfig(max_symbols_per_frame=1))
    assert any(h.tokens for h in greedy)
    for feats, expected in zip(features, greedy, strict=True):
        start = [[initial_hypothesis(runtime)]]
        (beam,) = beam_search(runtime, encode(runtime, feats), [len(feats) // 2], start, DecodeConfig())
        assert len(beam) == 1
        assert_same_hypothesis(beam[0], expected)


@pytest.mark.parametrize("seed", range(4))  # not a theorem for a narrow beam: seeded examples
def test_wider_beam_scores_at_least_greedy(seed: int) -> None:
    runtime = tiny_runtime(seed)
    features = random_features([40, 26], seed=seed)
    greedy = decode_features(runtime, features, DecodeConfig(max_symbols_per_frame=1))
    beam = decode_features(runtime, features, DecodeConfig(beam_size=4))
    for b, g in zip(beam, greedy, strict=True):
        assert b.score >= g.score - 1e-6


def run_in_pieces(
    runtime: TorchRuntime, encoder_out: np.ndarray, pieces: list[int], config: DecodeConfig
) -> list[Hypothesis]:
    beam = [initial_hypothesis(runtime)]
    bounds = np.cumsum([0, *pieces, encoder_out.shape[1] - sum(pieces)])
    for start, stop in itertools.pairwise(bounds.tolist()):
        (beam,) = search(runtime, encoder_out[:, start:stop], [stop - start], [beam], config)
    return beam


@pytest.mark.parametrize("pieces", [[1, 1, 1], [3, 4], [5, 1, 2, 7]])
def test_resumed_beam_equals_one_call(pieces: list[int]) -> None:
    runtime = tiny_runtime(seed=1)
    config = DecodeConfig(beam_size=4)
    (features,) = random_features([2 * 20], seed=1)
    encoder_out = encode(runtime, features)
    whole = run_in_pieces(runtime, encoder_out, [], config)
    assert len(whole) == config.beam_size and whole[0].tokens
    resumed = run_in_pieces(runtime, encoder_out, pieces, config)
    assert len(resumed) == len(whole)
    for actual, expected in zip(resumed, whole, strict=True):
        assert_same_hypothesis(actual, expected)


def test_batched_beam_equals_one_at_a_time() -> None:
    runtime = tiny_runtime(seed=2)
    config = DecodeConfig(beam_size=3)
    features = random_features([14, 31, 22], seed=2)
    batched = decode_features(runtime, features, config)
    for hyp, feats in zip(batched, features, strict=True):
        (alone,) = decode_features(runtime, [feats], config)
        assert_same_hypothesis(hyp, alone)
        assert hyp.frames == sorted(hyp.frames)
        assert len(set(hyp.frames)) == len(hyp.frames)  # one token per frame
        assert all(0 <= f < hyp.num_frames for f in hyp.frames)


def test_beam_hypotheses_are_distinct_and_sorted() -> None:
    runtime = tiny_runtime(seed=3)
    (features,) = random_features([40], seed=3)
    beam = run_in_pieces(runtime, encode(runtime, features), [], DecodeConfig(beam_size=6))
    assert len({tuple(h.tokens) for h in beam}) == len(beam) == 6
    assert [h.score for h in beam] == sorted((h.score for h in beam), reverse=True)


def test_beam_suppresses_unk() -> None:
    runtime = tiny_runtime()
    with torch.no_grad():
        runtime.model.joint.out.bias[UNK_ID] += DOMINANT_BIAS
    features = random_features([10, 16])
    suppressed = decode_features(runtime, features, DecodeConfig(beam_size=3, suppress_unk=True))
    assert all(h.tokens and UNK_ID not in h.tokens for h in suppressed)
    allowed = decode_features(runtime, features, DecodeConfig(beam_size=3, suppress_unk=False))
    assert all(set(h.tokens) == {UNK_ID} for h in allowed)


def test_search_rejects_a_zero_beam() -> None:
    runtime = tiny_runtime()
    with pytest.raises(ValueError, match="beam_size"):
        decode_features(runtime, random_features([8]), DecodeConfig(beam_size=0))
