"""Second-pass CTC rescoring: the numpy CTC forward equals torch's, and decoding re-ranks
each final beam by score + weight x CTC log-likelihood."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnt.config import BLANK_ID, DecodeConfig
from rnnt.decoding import decode_features, decode_views, encode_utterances, search
from rnnt.hypothesis import Hypothesis, initial_hypothesis
from rnnt.model import Transducer
from rnnt.rescoring import check_rescoring, ctc_log_likelihoods, rescore_beam
from rnnt.runtimes.pytorch import TorchRuntime

from .conftest import tiny_model_config

VOCAB = 7


def torch_ctc_log_likelihood(log_probs: np.ndarray, tokens: list[int]) -> float:
    if not tokens:  # torch's ctc_loss wants at least one target
        return float(log_probs[:, BLANK_ID].sum())
    loss = torch.nn.functional.ctc_loss(
        torch.from_numpy(log_probs).double()[:, None],
        torch.tensor([tokens]),
        [len(log_probs)],
        [len(tokens)],
        blank=BLANK_ID,
        reduction="sum",
    )
    return -float(loss)


@pytest.mark.parametrize(
    ("frames", "tokens"),
    [(1, []), (6, []), (1, [3]), (5, [1, 2]), (5, [2, 2]), (6, [2, 2, 2]), (9, [1, 4, 4, 2, 1]), (3, [3, 3])],
)
def test_ctc_log_likelihood_equals_torch(frames: int, tokens: list[int]) -> None:
    generator = torch.Generator().manual_seed(frames + len(tokens))
    log_probs = torch.randn(frames, VOCAB, generator=generator).double().log_softmax(-1).numpy()
    want = torch_ctc_log_likelihood(log_probs, tokens)
    (got,) = ctc_log_likelihoods(log_probs, [tokens])
    if np.isinf(want):  # (3, [3, 3]): a repeat needs a blank between, 4 frames
        assert got == -np.inf
    else:
        assert got == pytest.approx(want, abs=1e-9)


def test_ctc_log_likelihoods_of_a_beam_equal_each_alone() -> None:
    """Sequences of different lengths share one padded forward pass."""
    log_probs = (
        torch.randn(8, VOCAB, generator=torch.Generator().manual_seed(1)).double().log_softmax(-1).numpy()
    )
    beam = [[1, 4, 4, 2], [], [3], [2, 2, 2, 2, 2], [5, 5]]  # [2] * 5 needs 9 frames: -inf
    together = ctc_log_likelihoods(log_probs, beam)
    alone = [torch_ctc_log_likelihood(log_probs, tokens) for tokens in beam]
    np.testing.assert_allclose(together, alone, atol=1e-9)
    assert together[3] == -np.inf


def test_ctc_log_likelihood_of_no_frames() -> None:
    empty = np.zeros((0, VOCAB))
    assert list(ctc_log_likelihoods(empty, [[], [2]])) == [0.0, -np.inf]


def hypothesis(tokens: list[int], score: float, frames: int) -> Hypothesis:
    state = TorchRuntime(Transducer(tiny_model_config(vocab_size=VOCAB))).init_predictor_state(1)
    return Hypothesis(tokens, [0] * len(tokens), score, np.zeros(1), state, frames)


def test_rescore_beam_reranks_by_the_weighted_sum() -> None:
    """Frames that say "2" then blank: the CTC head prefers [2] to the search's best [3]."""
    log_probs = np.log(np.full((2, VOCAB), 1e-3))
    log_probs[0, 2] = log_probs[1, BLANK_ID] = np.log(1 - (VOCAB - 1) * 1e-3)
    beam = [hypothesis([3], -1.0, 2), hypothesis([2], -2.0, 2), hypothesis([], -3.0, 2)]
    assert rescore_beam(beam, [log_probs], 0.0) == beam
    reranked = rescore_beam(beam, [log_probs], 0.5)
    assert [h.tokens for h in reranked] == [[2], [3], []]
    assert [h.score for h in reranked] == [-2.0, -1.0, -3.0]  # scores themselves unchanged


def test_check_rescoring_refuses_what_it_cannot_do() -> None:
    with_head = TorchRuntime(Transducer(tiny_model_config(vocab_size=VOCAB, ctc_head=True)))
    without = TorchRuntime(Transducer(tiny_model_config(vocab_size=VOCAB)))
    check_rescoring(with_head, DecodeConfig(beam_size=2, ctc_rescore_weight=0.2))
    check_rescoring(without, DecodeConfig())  # off: nothing needed
    with pytest.raises(ValueError, match="beam_size above 1"):
        check_rescoring(with_head, DecodeConfig(ctc_rescore_weight=0.2))
    with pytest.raises(ValueError, match="trained with a CTC head"):
        check_rescoring(without, DecodeConfig(beam_size=2, ctc_rescore_weight=0.2))


def test_decoding_picks_the_best_rescored_hypothesis_of_each_beam() -> None:
    """Against an independent computation: the beams of the same search, each hypothesis scored
    with torch's CTC loss over the model's own CTC head."""
    torch.manual_seed(3)
    model = Transducer(tiny_model_config(vocab_size=VOCAB, ctc_head=True, input_dim=8)).eval()
    with torch.no_grad():
        model.ctc.weight.mul_(5.0)  # a confident head, so that it changes some choices
    runtime = TorchRuntime(model)
    rng = np.random.default_rng(0)
    features = [rng.standard_normal((n, 8)).astype(np.float32) for n in (30, 44, 18, 52)]
    weight = 1.5
    config = DecodeConfig(beam_size=4, suppress_unk=False, ctc_rescore_weight=weight)
    got = [hyp.tokens for hyp in decode_features(runtime, features, config)]
    plain = DecodeConfig(beam_size=4, suppress_unk=False)
    encoder_out, lengths = encode_utterances(runtime, features)
    beams = search(runtime, encoder_out, lengths, [[initial_hypothesis(runtime)]] * len(features), plain)
    want = []
    for feats, beam in zip(features, beams, strict=True):
        with torch.no_grad():
            encoded, _ = model.encode(torch.from_numpy(feats)[None])
            log_probs = model.ctc(encoded)[0].log_softmax(-1).double().numpy()
        totals = [hyp.score + weight * torch_ctc_log_likelihood(log_probs, hyp.tokens) for hyp in beam]
        want.append(beam[int(np.argmax(totals))].tokens)
    assert got == want
    assert want != [beam[0].tokens for beam in beams]  # the rescoring changed something


def test_an_ensemble_of_views_picks_the_best_of_the_pooled_beams() -> None:
    """`decode_views` against an independent computation: each view's own beams, pooled per
    utterance (a sequence keeps its best score), ranked by score + weight x the CTC
    log-likelihood averaged over the views (torch's loss); without the weight, by score."""
    torch.manual_seed(3)
    model = Transducer(tiny_model_config(vocab_size=VOCAB, ctc_head=True, input_dim=8)).eval()
    with torch.no_grad():
        model.ctc.weight.mul_(5.0)
        model.joint.out.weight.mul_(3.0)  # confident, so that the views' beams differ
    runtime = TorchRuntime(model)
    rng = np.random.default_rng(2)
    first = [rng.standard_normal((n, 8)).astype(np.float32) for n in (30, 44, 18, 52, 36, 40, 24, 48, 33, 27)]
    second = [f + rng.standard_normal(f.shape).astype(np.float32) for f in first]
    plain = DecodeConfig(beam_size=4, suppress_unk=False)
    beams, log_probs = [], []
    for features in (first, second):
        encoder_out, lengths = encode_utterances(runtime, features)
        beams.append(
            search(runtime, encoder_out, lengths, [[initial_hypothesis(runtime)]] * len(features), plain)
        )
        with torch.no_grad():
            log_probs.append(
                [
                    model.ctc(model.encode(torch.from_numpy(f)[None])[0])[0].log_softmax(-1).double().numpy()
                    for f in features
                ]
            )
    for weight in (0.0, 3.0):
        want = []
        for i in range(len(first)):
            pool: dict[tuple[int, ...], float] = {}
            for beam in (beams[0][i], beams[1][i]):
                for hyp in beam:
                    pool[tuple(hyp.tokens)] = max(pool.get(tuple(hyp.tokens), -np.inf), hyp.score)
            totals = {
                tokens: score
                + weight * np.mean([torch_ctc_log_likelihood(lp[i], list(tokens)) for lp in log_probs])
                for tokens, score in pool.items()
            }
            want.append(list(max(totals, key=lambda tokens: totals[tokens])))
        config = DecodeConfig(beam_size=4, suppress_unk=False, ctc_rescore_weight=weight)
        got = [hyp.tokens for hyp in decode_views(runtime, [first, second], config)]
        assert got == want
        assert want != [beam[0].tokens for beam in beams[0]]  # the second view changed something
        assert want != [beam[0].tokens for beam in beams[1]]


def test_one_view_twice_is_the_single_decoding() -> None:
    torch.manual_seed(3)
    model = Transducer(tiny_model_config(vocab_size=VOCAB, ctc_head=True, input_dim=8)).eval()
    runtime = TorchRuntime(model)
    rng = np.random.default_rng(0)
    features = [rng.standard_normal((n, 8)).astype(np.float32) for n in (30, 44, 18, 52)]
    config = DecodeConfig(beam_size=4, suppress_unk=False, ctc_rescore_weight=0.7)
    single = decode_features(runtime, features, config)
    twice = decode_views(runtime, [features, features], config)
    assert [(h.tokens, h.score) for h in twice] == [(h.tokens, h.score) for h in single]
