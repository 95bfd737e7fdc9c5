"""Hotwords: the phrase automaton, its fusion into beam search, and the scripts' --hotwords."""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import numpy as np
import pytest

from rnnt.beam import beam_search
from rnnt.config import DecodeConfig
from rnnt.corpus import read_sentences
from rnnt.decoding import encode_utterances, search
from rnnt.fusion import NO_FUSION, Fusion, close_beam
from rnnt.hotwords import ROOT, Hotwords, HotwordsError, Phrase, parse_hotwords, unseen_words
from rnnt.hypothesis import initial_hypothesis
from rnnt.lm import NgramLm
from rnnt.scoring import phrase_recall

from .conftest import DEMO_MODEL, INSPECTOR_SENTENCE, assert_eval_refuses, run_beam_scripts, run_script
from .test_beam import EXHAUSTIVE_BEAM, SMALL_VOCAB, TemperedRuntime, brute_force, encode, small_runtime
from .test_decoding import assert_same_hypothesis, random_features

V = 10
S = 1.5


def walk(hotwords: Hotwords, tokens: list[int]) -> tuple[list[float], int]:
    """Each token's bonus along `tokens` from the start, and the state they end in."""
    state, bonuses = ROOT, []
    for token in tokens:
        bonuses.append(float(hotwords.bonus(state)[token]))
        state = hotwords.next_state(state, token)
    return bonuses, state


def test_a_finished_phrase_keeps_its_bonus_and_an_abandoned_one_gives_it_back() -> None:
    hotwords = Hotwords([Phrase((5, 6, 7), 2.0)], V)
    bonuses, state = walk(hotwords, [4, 5, 6, 7, 4])
    assert bonuses == [0.0, 2.0, 2.0, 2.0, 0.0]
    assert state == ROOT
    bonuses, state = walk(hotwords, [5, 6, 9])
    assert bonuses == [2.0, 2.0, -4.0]
    bonuses, state = walk(hotwords, [5, 6])
    assert hotwords.unmatched(state) == 4.0  # what closing the segment here takes back


def test_a_phrase_starting_inside_another_is_followed() -> None:
    """1 2 4 leaves the phrase 1 2 3 after two tokens but finishes 2 4 (a failure link)."""
    hotwords = Hotwords([Phrase((1, 2, 3), S), Phrase((2, 4), S)], V)
    bonuses, state = walk(hotwords, [1, 2, 4])
    assert sum(bonuses) == pytest.approx(2 * S)  # the phrase 2 4's two tokens
    assert state == ROOT
    hotwords = Hotwords([Phrase((1, 2, 3, 4), S), Phrase((2, 3), S)], V)
    bonuses, state = walk(hotwords, [1, 2, 3])  # 2 3 ends inside 1 2 3 4: it counts
    assert sum(bonuses) == pytest.approx(2 * S)
    assert state == ROOT


def confirmed_by_brute_force(phrases: list[tuple[int, ...]], tokens: list[int]) -> tuple[float, list[float]]:
    """The bonus the rules give, found without an automaton: after each token the partial
    match is the longest suffix of the tokens since the last finished phrase that begins a
    phrase; if a suffix of it is a whole phrase, the longest such is finished (its tokens
    earn S each, kept) and matching starts afresh. Returns the kept total and, after each
    token, kept + S x the partial match's length."""
    prefixes = {p[:n] for p in phrases for n in range(1, len(p) + 1)}
    kept, since, running = 0.0, [], []
    for token in tokens:
        since.append(token)
        partial = next((tuple(since[i:]) for i in range(len(since)) if tuple(since[i:]) in prefixes), ())
        done = next((partial[i:] for i in range(len(partial)) if partial[i:] in phrases), None)
        if done is not None:
            kept += S * len(done)
            since, partial = [], ()
        running.append(kept + S * len(partial))
    return kept, running


@pytest.mark.parametrize("seed", range(30))
def test_the_automaton_equals_the_rules_on_random_phrases(seed: int) -> None:
    rng = np.random.default_rng(seed)
    phrases = list({tuple(rng.integers(1, 4, size=rng.integers(1, 5)).tolist()) for _ in range(4)})
    tokens = rng.integers(1, 5, size=25).tolist()
    hotwords = Hotwords([Phrase(p, S) for p in phrases], 5)
    bonuses, state = walk(hotwords, tokens)
    kept, running = confirmed_by_brute_force(phrases, tokens)
    np.testing.assert_allclose(np.cumsum(bonuses), running, atol=1e-5)
    assert sum(bonuses) - hotwords.unmatched(state) == pytest.approx(kept)


def test_parse_hotwords_reads_scores_and_names_the_bad_line() -> None:
    text = "# names\nAda Lovelace\n\n  Grace Hopper :2.5\n"
    assert parse_hotwords(text, S) == [("ada lovelace", S), ("grace hopper", 2.5)]
    with pytest.raises(HotwordsError, match=r"words\.txt:2: bad score 'x'"):
        parse_hotwords("ok\nbad :x\n", S, "words.txt")
    with pytest.raises(HotwordsError, match=r"ids\.txt:1: no words"):
        parse_hotwords("?! :1\n", S, "ids.txt")
    with pytest.raises(HotwordsError, match="outside the vocabulary"):
        Hotwords([Phrase((V,), S)], V)


@pytest.mark.parametrize("score", ["inf", "-inf", "nan", "Infinity"])
def test_a_score_that_is_not_finite_is_refused_with_its_line(score: str) -> None:
    """`:inf` swamps every other score in the search and `:nan` silently voids the phrase."""
    with pytest.raises(HotwordsError, match=rf"words\.txt:2: bad score '{score}' \(expected a finite number"):
        parse_hotwords(f"ok\nhumor :{score}\n", S, "words.txt")
    with pytest.raises(HotwordsError, match=f"hotword phrase 'humor': score {float(score)} is not finite"):
        Hotwords([Phrase((2,), float(score), "humor")], V)  # e.g. a default score of inf


@pytest.mark.parametrize(("seed", "temperature"), [(0, 1.0), (3, 1.0), (4, 1.0), (0, 2.0), (3, 0.5)])
def test_exhaustive_beam_scores_are_acoustic_plus_hotword_bonuses(seed: int, temperature: float) -> None:
    """The bonus depends on the tokens only, so every alignment of a token sequence gains the
    same: an exhaustive beam scores each sequence by its brute-forced acoustic log-probability
    (at the search's temperature) plus its running bonus over the temperature, and closing the
    beam leaves only finished phrases' bonuses."""
    runtime = small_runtime(seed)
    (features,) = random_features([3], seed=seed)
    encoder_out = encode(runtime, features)
    acoustic = brute_force(TemperedRuntime(runtime, temperature), encoder_out[0], max_symbols=1)  # type: ignore[arg-type]
    phrases = [(2, 3), (3, 3, 2)]
    hotwords = Hotwords([Phrase(p, S * temperature) for p in phrases], SMALL_VOCAB)  # S once tempered
    config = DecodeConfig(
        beam_size=EXHAUSTIVE_BEAM, max_symbols_per_frame=1, suppress_unk=False, temperature=temperature
    )
    (beam,) = beam_search(
        runtime, encoder_out, [3], [[initial_hypothesis(runtime)]], config, Fusion(None, hotwords)
    )
    assert len(beam) == len(acoustic)
    for hyp in beam:
        _, running = confirmed_by_brute_force(phrases, hyp.tokens)
        assert hyp.score == pytest.approx(
            acoustic[tuple(hyp.tokens)] + (running[-1] if running else 0), abs=1e-4
        )
    closed = close_beam(beam, Fusion(None, hotwords), config)
    expected = {
        tokens: score + confirmed_by_brute_force(phrases, list(tokens))[0]
        for tokens, score in acoustic.items()
    }
    for hyp in closed:
        assert hyp.score == pytest.approx(expected[tuple(hyp.tokens)], abs=1e-4)
    assert tuple(closed[0].tokens) == max(expected, key=expected.__getitem__)


def holds(tokens: list[int], phrase: tuple[int, ...]) -> bool:
    return any(tuple(tokens[i : i + len(phrase)]) == phrase for i in range(len(tokens)))


def test_hotwords_change_the_best_hypothesis_and_resume_exactly() -> None:
    """A large enough bonus makes the search emit a phrase it would not; a stream decoded in
    pieces (the hotword state rides in the hypotheses) equals one call."""
    runtime = small_runtime(1)
    (features,) = random_features([12], seed=1)
    encoder_out = encode(runtime, features)
    start = [[initial_hypothesis(runtime)]]
    config = DecodeConfig(beam_size=4, max_symbols_per_frame=2)
    (plain,) = search(runtime, encoder_out, [12], start, config)
    phrase = next(p for p in [(3, 2, 3, 2), (2, 2, 2, 2), (3, 3, 3, 3)] if not holds(plain[0].tokens, p))
    fusion = Fusion(None, Hotwords([Phrase(phrase, 8.0)], SMALL_VOCAB))
    (whole,) = search(runtime, encoder_out, [12], start, config, fusion)
    assert holds(close_beam(whole, fusion, config)[0].tokens, phrase)
    beam = start[0]
    for begin, stop in itertools.pairwise([0, 1, 4, 5, 12]):
        (beam,) = search(runtime, encoder_out[:, begin:stop], [stop - begin], [beam], config, fusion)
    assert [h.tokens for h in beam] == [h.tokens for h in whole]
    assert [h.score for h in beam] == pytest.approx([h.score for h in whole], abs=1e-5)


def test_streams_searched_together_each_keep_their_own_fusion() -> None:
    """One batched search with a fusion per stream (hotwords, none, an LM) equals each stream
    searched alone with its own: the caption server's streams share search calls this way."""
    runtime = small_runtime(1)
    encoder_out, lengths = encode_utterances(runtime, random_features([12, 9, 12], seed=1))
    config = DecodeConfig(beam_size=4, max_symbols_per_frame=2)
    start = [initial_hypothesis(runtime)]
    (plain,) = search(runtime, encoder_out[:1], lengths[:1], [start], config)
    phrase = next(p for p in [(3, 2, 3, 2), (2, 2, 2, 2), (3, 3, 3, 3)] if not holds(plain[0].tokens, p))
    fusions = [
        Fusion(None, Hotwords([Phrase(phrase, 8.0)], SMALL_VOCAB)),
        NO_FUSION,
        Fusion(NgramLm.train([[2, 3, 2], [3, 3]], SMALL_VOCAB, "any", order=2)),
    ]
    together = search(runtime, encoder_out, lengths, [start] * 3, config, fusions)
    assert holds(together[0][0].tokens, phrase)
    for row, fusion in enumerate(fusions):
        one = slice(row, row + 1)
        (alone,) = search(runtime, encoder_out[one], lengths[one], [start], config, fusion)
        assert len(together[row]) == len(alone)
        for actual, expected in zip(together[row], alone, strict=True):
            assert_same_hypothesis(actual, expected)
    with pytest.raises(ValueError, match="2 fusions for 3 streams"):
        search(runtime, encoder_out, lengths, [start] * 3, config, fusions[:2])


@pytest.mark.parametrize(
    ("fusion", "message"),
    [
        (Fusion(NgramLm.train([[2, 3]], SMALL_VOCAB, "any", order=2)), "an LM needs beam search"),
        (Fusion(None, Hotwords([Phrase((2,), S)], SMALL_VOCAB)), "hotwords need beam search"),
    ],
)
def test_fusion_needs_beam_search(fusion: Fusion, message: str) -> None:
    runtime = small_runtime(0)
    start = [[initial_hypothesis(runtime)]]
    with pytest.raises(ValueError, match=message):
        search(runtime, np.zeros((1, 2, 6), np.float32), [2], start, DecodeConfig(), fusion)


def test_phrase_recall_counts_whole_word_occurrences() -> None:
    found = phrase_recall(
        ["ada met ada lovelace", "no names here", "grace"],
        ["ada met lovelace", "no grace here", "graceful"],
        ["ada", "ada lovelace", "grace"],
    )
    # `ada` once of twice; `graceful` is not `grace`; the second line's `grace` is a false alarm
    assert (found.found, found.total, found.false_alarms) == (1, 4, 1)


def test_unseen_words_are_the_new_words_normalised() -> None:
    known = ["The cat sat.", "a dog"]
    assert unseen_words(known, ["the CAT ran, a Dog ran", "Zebras!"]) == ["ran", "zebras"]


def test_hotword_list_tool_writes_the_unseen_words(tmp_path: Path, tiny_corpus: Path) -> None:
    output = tmp_path / "list.txt"
    train, dev = tiny_corpus / "train", tiny_corpus / "dev"
    result = run_script(
        "tools/hotword_list.py",
        f"--train={train}",
        f"--eval_set={dev}",
        f"--distractors={train}",
        f"--output={output}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    expected = unseen_words(read_sentences(str(train)), read_sentences(str(dev)))
    assert expected  # the dev sentences hold words training does not
    assert output.read_text().splitlines() == expected  # the train set adds no distractors


def test_scripts_take_a_hotwords_file(tmp_path: Path, tiny_checkpoint: Path, tiny_corpus: Path) -> None:
    words = tmp_path / "hotwords.txt"
    words.write_text("the cat :2\nsat\n")
    output = run_beam_scripts(tiny_checkpoint, tiny_corpus, f"--hotwords={words}")
    assert "hotwords: " in output and "more in the hypotheses" in output
    bad = tmp_path / "bad.txt"
    bad.write_text("fine\nnot fine :high\n")
    assert_eval_refuses(
        tiny_checkpoint,
        tiny_corpus,
        [
            (["--beam_size=2", f"--hotwords={bad}"], f"error: {bad}:2: bad score 'high'"),
            (["--beam_size=2", f"--hotwords={tmp_path / 'none.txt'}"], "cannot read hotwords file"),
            ([f"--hotwords={words}"], "hotwords need beam search"),
        ],
    )


def test_a_hotword_fixes_a_word_the_demo_model_misses(tmp_path: Path) -> None:
    """The shipped demo model hears espeak-ng's `inspector` as `in spector`; listed (among
    words the sentence does not hold) it is recognised, and the rest of the sentence stays."""
    audio = tmp_path / "sentence.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(audio), INSPECTOR_SENTENCE], check=True)
    words = tmp_path / "hotwords.txt"
    words.write_text("inspector\nchocolates\nconfiguration\n")
    stream = ["stream.py", f"--model={DEMO_MODEL}", f"--input={audio}", "--beam_size=4"]
    plain, biased = run_script(*stream), run_script(*stream, f"--hotwords={words}")
    assert plain.returncode == 0 and biased.returncode == 0, plain.stderr[-2000:] + biased.stderr[-2000:]
    assert "inspector" not in plain.stdout.split()
    assert biased.stdout.strip() == plain.stdout.strip().replace("in spector", "inspector")
