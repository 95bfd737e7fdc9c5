"""Beam search: exact on a brute-forceable model, == greedy at width 1, resumable, batched."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict

import numpy as np
import pytest
import torch

from rnnt.beam import beam_search
from rnnt.config import BLANK_ID, UNK_ID, DecodeConfig
from rnnt.decoding import decode_features, greedy_search, search
from rnnt.hypothesis import Hypothesis, initial_hypothesis, log_softmax
from rnnt.model import Transducer
from rnnt.runtimes.pytorch import TorchRuntime

from .conftest import tiny_model_config
from .test_decoding import DOMINANT_BIAS, INPUT_DIM, assert_same_hypothesis, random_features, tiny_runtime

SMALL_VOCAB = 4  # blank, <unk> and two tokens: every alignment can be enumerated
SMALL_FRAMES = 4  # encoder frames of the brute-forced utterance
EXHAUSTIVE_BEAM = 1100  # more than the 3^0 + ... + 3^6 = 1093 token sequences of the brute-forced lattices


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


def brute_force(
    runtime: TorchRuntime, encoder_out: np.ndarray, max_symbols: int
) -> dict[tuple[int, ...], float]:
    """log P(tokens) summed over every alignment with at most `max_symbols` tokens per frame.

    The lattice the search walks: on a frame, blank moves to the next frame, a token stays
    on it, except the `max_symbols`-th, which moves on without a blank. Every path is
    enumerated by a forward pass over (frame, tokens, tokens on this frame).
    """
    log_probs: dict[tuple[int, tuple[int, ...]], np.ndarray] = {}

    def frame_log_probs(t: int, tokens: tuple[int, ...]) -> np.ndarray:
        if (t, tokens) not in log_probs:
            logits = runtime.join(encoder_out[t : t + 1], _predict_prefix(runtime, tokens)[None])
            log_probs[t, tokens] = log_softmax(logits)[0]
        return log_probs[t, tokens]

    paths: dict[tuple[int, tuple[int, ...], int], list[float]] = defaultdict(list)
    paths[0, (), 0].append(0.0)
    totals: dict[tuple[int, ...], list[float]] = defaultdict(list)
    while paths:
        (t, tokens, on_frame), scores = min(paths.items(), key=lambda item: (item[0][0], item[0][2]))
        del paths[t, tokens, on_frame]
        if t == len(encoder_out):
            totals[tokens] += scores
            continue
        score = float(np.logaddexp.reduce(scores))
        logp = frame_log_probs(t, tokens)
        paths[t + 1, tokens, 0].append(score + float(logp[BLANK_ID]))
        for token in range(1, SMALL_VOCAB):
            moves_on = on_frame + 1 == max_symbols
            paths[t + int(moves_on), (*tokens, token), 0 if moves_on else on_frame + 1].append(
                score + float(logp[token])
            )
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


@pytest.mark.parametrize(
    ("seed", "max_symbols", "frames"),
    [(0, 1, 4), (1, 1, 4), (3, 1, 4), (4, 1, 4), (5, 1, 4), (0, 2, 3), (3, 2, 3), (4, 3, 2)],
)  # greedy misses the best in several of these
def test_exhaustive_beam_finds_the_most_probable_tokens(seed: int, max_symbols: int, frames: int) -> None:
    runtime = small_runtime(seed)
    (features,) = random_features([frames], seed=seed)
    encoder_out = encode(runtime, features)
    expected = brute_force(runtime, encoder_out[0], max_symbols)
    config = DecodeConfig(
        beam_size=EXHAUSTIVE_BEAM, max_symbols_per_frame=max_symbols, suppress_unk=False, temperature=1.0
    )  # scores are log-probabilities only at temperature 1
    (beam,) = beam_search(runtime, encoder_out, [frames], [[initial_hypothesis(runtime)]], config)
    assert len(beam) == len(expected)
    for hyp in beam:
        assert hyp.score == pytest.approx(expected[tuple(hyp.tokens)], abs=1e-4)
    assert tuple(beam[0].tokens) == max(expected, key=expected.__getitem__)
    greedy_config = DecodeConfig(max_symbols_per_frame=max_symbols, suppress_unk=False)
    (greedy,) = greedy_search(runtime, encoder_out, [frames], [initial_hypothesis(runtime)], greedy_config)
    assert beam[0].score + 1e-6 >= expected[tuple(greedy.tokens)] >= greedy.score - 1e-6
    assert any(len(set(h.frames)) < len(h.frames) for h in beam) == (max_symbols > 1)


class TemperedRuntime:
    """`runtime` with its joint's logits divided by `temperature`: what the search at that
    temperature must see."""

    def __init__(self, runtime: TorchRuntime, temperature: float):
        self.runtime = runtime
        self.temperature = temperature

    def __getattr__(self, name: str) -> object:
        return getattr(self.runtime, name)

    def join(self, encoder_out: np.ndarray, predictor_out: np.ndarray) -> np.ndarray:
        return self.runtime.join(encoder_out, predictor_out) / self.temperature


@pytest.mark.parametrize(("seed", "temperature"), [(0, 2.0), (3, 0.5), (4, 3.0)])
def test_exhaustive_beam_at_a_temperature_scores_the_tempered_lattice(seed: int, temperature: float) -> None:
    runtime = small_runtime(seed)
    (features,) = random_features([3], seed=seed)
    encoder_out = encode(runtime, features)
    expected = brute_force(TemperedRuntime(runtime, temperature), encoder_out[0], max_symbols=1)  # type: ignore[arg-type]
    config = DecodeConfig(
        beam_size=EXHAUSTIVE_BEAM, max_symbols_per_frame=1, suppress_unk=False, temperature=temperature
    )
    (beam,) = beam_search(runtime, encoder_out, [3], [[initial_hypothesis(runtime)]], config)
    assert len(beam) == len(expected)
    for hyp in beam:
        assert hyp.score == pytest.approx(expected[tuple(hyp.tokens)], abs=1e-4)
    untempered = brute_force(runtime, encoder_out[0], max_symbols=1)
    assert any(abs(expected[t] - untempered[t]) > 1e-2 for t in expected)  # the temperature took part


@pytest.mark.parametrize("seed", [0, 3])
def test_width_one_equals_greedy_with_one_symbol_per_frame(seed: int) -> None:
    runtime = tiny_runtime(seed)
    features = random_features([30, 17, 44], seed=seed)
    greedy = decode_features(runtime, features, DecodeConfig(max_symbols_per_frame=1))
    assert any(h.tokens for h in greedy)
    for feats, expected in zip(features, greedy, strict=True):
        start = [[initial_hypothesis(runtime)]]
        config = DecodeConfig(max_symbols_per_frame=1, temperature=1.0)  # greedy's scores are untempered
        (beam,) = beam_search(runtime, encode(runtime, feats), [len(feats) // 2], start, config)
        assert len(beam) == 1
        assert_same_hypothesis(beam[0], expected)


@pytest.mark.parametrize("seed", range(4))  # not a theorem for a narrow beam: seeded examples
@pytest.mark.parametrize("max_symbols", [1, 4])
def test_wider_beam_scores_at_least_greedy(seed: int, max_symbols: int) -> None:
    runtime = tiny_runtime(seed)
    features = random_features([40, 26], seed=seed)
    greedy = decode_features(runtime, features, DecodeConfig(max_symbols_per_frame=max_symbols))
    untempered = DecodeConfig(
        beam_size=4, max_symbols_per_frame=max_symbols, temperature=1.0
    )  # greedy's scale
    beam = decode_features(runtime, features, untempered)
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
        assert max(Counter(hyp.frames).values(), default=0) <= config.max_symbols_per_frame
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
    assert any(h.tokens for h in suppressed) and all(UNK_ID not in h.tokens for h in suppressed)
    allowed = decode_features(runtime, features, DecodeConfig(beam_size=3, suppress_unk=False))
    assert all(set(h.tokens) == {UNK_ID} for h in allowed)
