"""Token n-gram LM: Kneser-Ney by hand, normalised, saved and refused; fused into beam search exactly."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from rnnt.beam import beam_search
from rnnt.config import BLANK_ID, DecodeConfig
from rnnt.corpus import DataError, read_librispeech, read_sentences
from rnnt.decoding import search
from rnnt.fusion import Fusion
from rnnt.hypothesis import initial_hypothesis
from rnnt.lm import LmError, NgramLm

from .conftest import assert_eval_refuses, run_beam_scripts, run_script
from .test_beam import EXHAUSTIVE_BEAM, SMALL_VOCAB, brute_force, encode, small_runtime
from .test_decoding import random_features

D = 0.75
V = 6
SENTENCES = [[2, 3, 4], [2, 3], [5, 3, 4, 4], [3], [2, 5, 3, 1]]


def lm_of(sentences: list[list[int]], order: int, vocab_size: int = V) -> NgramLm:
    return NgramLm.train(sentences, vocab_size, "tokenizer-a", order, D)


def test_unigram_is_absolute_discounting_by_hand() -> None:
    lm = lm_of([[2, 3], [2]], order=1)
    # counts: 2 twice, 3 once, the sentence end (blank) twice; 5 tokens, 3 types
    probs = np.exp(lm.log_probs([]))
    uniform = D * 3 / 5 / V
    expected = {
        BLANK_ID: (2 - D) / 5 + uniform,
        1: uniform,
        2: (2 - D) / 5 + uniform,
        3: (1 - D) / 5 + uniform,
    }
    for token, p in expected.items():
        assert probs[token] == pytest.approx(p, rel=1e-6)
    assert np.exp(lm.log_probs([3, 2, 2])) == pytest.approx(probs)  # order 1: no context


def test_bigram_backs_off_to_continuation_counts() -> None:
    lm = lm_of([[2, 3], [4, 3]], order=2)
    # Below the top order a token counts once per distinct token before it: 3 after 2 and after 4
    # (2 contexts); 2, 4 after the start; the end after 3. Five continuations of four types.
    lower = {token: n for token, n in {2: 1, 4: 1, 3: 2, BLANK_ID: 1}.items()}
    uniform = D * 4 / 5 / V

    def unigram(token: int) -> float:
        return max(lower.get(token, 0) - D, 0) / 5 + uniform

    probs = np.exp(lm.log_probs([2]))
    assert probs[3] == pytest.approx((1 - D) + D * unigram(3), rel=1e-6)
    assert probs[4] == pytest.approx(D * unigram(4), rel=1e-6)
    unseen_context = np.exp(lm.log_probs([5]))  # 5 never seen: the unigram itself
    assert unseen_context[3] == pytest.approx(unigram(3), rel=1e-6)
    start = np.exp(lm.log_probs([]))  # after the sentence start, 2 and 4 once each
    assert start[2] == pytest.approx((1 - D) / 2 + D * 2 / 2 * unigram(2), rel=1e-6)


@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_every_distribution_sums_to_one(order: int) -> None:
    lm = lm_of(SENTENCES, order)
    contexts = [[], [2], [2, 3], [2, 3, 4, 4, 4], [5, 5, 5], [1, 2, 3, 4, 5]]
    for context in contexts:
        probs = np.exp(lm.log_probs(context).astype(np.float64))
        assert probs.sum() == pytest.approx(1.0, abs=1e-6)
        assert (probs > 0).all()
    sentence_probs = [np.exp(lm.sentence_log_prob(s)) for s in SENTENCES]
    assert all(0 < p < 1 for p in sentence_probs)


def test_higher_order_prefers_the_seen_continuation() -> None:
    lm = lm_of(SENTENCES, order=3)
    after = lm.log_probs([5, 3])
    assert int(np.argmax(after)) == 4  # "5 3" was followed by 4
    assert lm.sentence_log_prob([2, 3, 4]) > lm.sentence_log_prob([4, 3, 2])
    seen, count = lm.perplexity(SENTENCES)
    assert count == sum(len(sentence) + 1 for sentence in SENTENCES)
    assert 1 < seen < lm.perplexity([sentence[::-1] for sentence in SENTENCES])[0]


def test_read_sentences_normalises_and_counts_each_once(tmp_path: Path, tiny_corpus: Path) -> None:
    text = tmp_path / "text.txt"
    text.write_text("Hello, World!\n\nhello world\nSecond one.\n")
    assert read_sentences(str(text)) == ["hello world", "second one"]
    train = read_librispeech(tiny_corpus / "train")
    both = read_sentences(f"{text},{tiny_corpus / 'train'}")
    assert both == sorted({"hello world", "second one", *(u.text for u in train)})
    (tmp_path / "empty.txt").write_text("\n,.\n")
    with pytest.raises(DataError, match="no sentences"):
        read_sentences(str(tmp_path / "empty.txt"))
    with pytest.raises(DataError, match="no such manifest"):
        read_sentences(str(tmp_path / "missing"))


def test_save_load_and_refusals(tmp_path: Path) -> None:
    lm = lm_of(SENTENCES, order=3)
    path = tmp_path / "lm.npz"
    lm.save(path)
    loaded = NgramLm.load(path, "tokenizer-a")
    for context in ([], [2], [5, 3], [4, 4, 1]):
        assert np.array_equal(loaded.log_probs(context), lm.log_probs(context))
    with pytest.raises(LmError, match="another tokenizer"):
        NgramLm.load(path, "tokenizer-b")
    with pytest.raises(LmError, match="no such LM file"):
        NgramLm.load(tmp_path / "missing.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not an lm")
    with pytest.raises(LmError, match="not an LM file"):
        NgramLm.load(garbage)
    with pytest.raises(ValueError, match="token ids"):
        lm_of([[2, BLANK_ID]], order=2)


@pytest.mark.parametrize(("seed", "weight", "bonus"), [(0, 0.5, 0.0), (3, 1.0, 0.5), (4, 2.0, -0.3)])
def test_fused_exhaustive_beam_finds_the_best_fused_score(seed: int, weight: float, bonus: float) -> None:
    """Fusion adds w * log P_lm(tokens) + bonus * len(tokens) to every alignment of the tokens,
    so an exhaustive fused beam scores each token sequence by its brute-forced acoustic
    log-probability plus exactly that."""
    runtime = small_runtime(seed)
    frames = 3
    (features,) = random_features([frames], seed=seed)
    encoder_out = encode(runtime, features)
    acoustic = brute_force(runtime, encoder_out[0], max_symbols=1)
    lm = lm_of([[3, 3, 2], [3, 2], [2, 2, 2]], order=2, vocab_size=SMALL_VOCAB)
    fused = {
        tokens: score
        + weight * (lm.sentence_log_prob(tokens) - float(lm.log_probs(tokens)[BLANK_ID]))
        + bonus * len(tokens)
        for tokens, score in acoustic.items()
    }
    config = DecodeConfig(
        beam_size=EXHAUSTIVE_BEAM,
        max_symbols_per_frame=1,
        suppress_unk=False,
        lm_weight=weight,
        lm_token_bonus=bonus,
        temperature=1.0,  # the brute force's acoustic scores are untempered
    )
    (beam,) = beam_search(runtime, encoder_out, [frames], [[initial_hypothesis(runtime)]], config, Fusion(lm))
    assert len(beam) == len(fused)
    for hyp in beam:
        assert hyp.score == pytest.approx(fused[tuple(hyp.tokens)], abs=1e-4)
    assert tuple(beam[0].tokens) == max(fused, key=fused.__getitem__)


@pytest.mark.parametrize("pieces", [[1, 1, 1], [3, 4]])
def test_fused_search_resumes_exactly(pieces: list[int]) -> None:
    """The LM's context is the hypothesis's own tokens, so a stream decoded in pieces (as live
    audio is) equals one call."""
    runtime = small_runtime(1)
    (features,) = random_features([12], seed=1)
    encoder_out = encode(runtime, features)
    lm = lm_of([[3, 3, 2], [3, 2], [2, 2, 2]], order=3, vocab_size=SMALL_VOCAB)
    config = DecodeConfig(beam_size=3, max_symbols_per_frame=2, lm_weight=0.8, lm_token_bonus=0.2)
    (whole,) = search(runtime, encoder_out, [12], [[initial_hypothesis(runtime)]], config, Fusion(lm))
    beam = [initial_hypothesis(runtime)]
    bounds = np.cumsum([0, *pieces, 12 - sum(pieces)]).tolist()
    for start, stop in itertools.pairwise(bounds):
        (beam,) = search(runtime, encoder_out[:, start:stop], [stop - start], [beam], config, Fusion(lm))
    assert [h.tokens for h in beam] == [h.tokens for h in whole]
    assert [h.score for h in beam] == pytest.approx([h.score for h in whole], abs=1e-5)
    plain_config = DecodeConfig(beam_size=3, max_symbols_per_frame=2)
    (plain,) = search(runtime, encoder_out, [12], [[initial_hypothesis(runtime)]], plain_config)
    assert plain[0].score != pytest.approx(whole[0].score, abs=1e-3)  # the LM took part


def test_lm_weight_zero_is_the_search_without_an_lm() -> None:
    """No weight, no token bonus either: the bonus offsets the LM's cost, and there is none."""
    runtime = small_runtime(1)
    (features,) = random_features([12], seed=1)
    encoder_out = encode(runtime, features)
    lm = lm_of([[3, 3, 2], [3, 2], [2, 2, 2]], order=3, vocab_size=SMALL_VOCAB)
    start = [[initial_hypothesis(runtime)]]
    (plain,) = search(runtime, encoder_out, [12], start, DecodeConfig(beam_size=3))
    (zero,) = search(runtime, encoder_out, [12], start, DecodeConfig(beam_size=3, lm_weight=0.0), Fusion(lm))
    assert [h.tokens for h in zero] == [h.tokens for h in plain]
    assert [h.score for h in zero] == [h.score for h in plain]


def test_train_lm_then_evaluate_with_it(tmp_path: Path, tiny_checkpoint: Path, tiny_corpus: Path) -> None:
    lm_path = tmp_path / "lm.npz"
    result = run_script(
        "tools/train_lm.py",
        f"--model={tiny_checkpoint}",
        f"--text={tiny_corpus / 'train'}",
        f"--dev={tiny_corpus / 'dev'}",
        f"--output={lm_path}",
        "--order=3",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    sentences = {u.text for u in read_librispeech(tiny_corpus / "train")}
    assert f"3-gram over {len(sentences)} sentences" in result.stdout
    assert "perplexity" in result.stdout
    assert "WER" in run_beam_scripts(tiny_checkpoint, tiny_corpus, f"--lm={lm_path}")
    assert_eval_refuses(
        tiny_checkpoint,
        tiny_corpus,
        [
            (["--beam_size=2", f"--lm={tmp_path / 'none.npz'}"], "no such LM file"),
            ([f"--lm={lm_path}"], "an LM needs beam search"),
        ],
    )
