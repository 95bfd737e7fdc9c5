"""Corpus-level error rates: totals over the corpus, normalised text, edits by kind."""

from __future__ import annotations

import pytest

from rnnt.scoring import error_rates


def test_error_rates_count_edits_over_the_whole_corpus() -> None:
    rates = error_rates(["The cat, sat.", "a b", ""], ["the dog sat on", "", ""])
    assert (rates.num_utterances, rates.num_words) == (3, 5)
    assert (rates.substitutions, rates.deletions, rates.insertions) == (1, 2, 1)
    assert rates.wer == pytest.approx(4 / 5)  # not the mean of the utterances' 2/3 and 1
    assert rates.breakdown() == "sub 20.00% del 40.00% ins 20.00%"
    assert rates.cer == pytest.approx((3 + 3 + 3) / (len("the cat sat") + len("a b")))


def test_words_output_over_an_empty_reference_are_insertions() -> None:
    """As sclite scores them: output over silence is not free."""
    rates = error_rates(["the cat sat", ""], ["the cat sat", "made up words"])
    assert (rates.substitutions, rates.deletions, rates.insertions) == (0, 0, 3)
    assert rates.wer == pytest.approx(3 / 3)
    assert rates.cer == pytest.approx(len("made up words") / len("the cat sat"))


def test_error_rates_need_a_reference() -> None:
    with pytest.raises(ValueError, match="no non-empty reference"):
        error_rates(["", " "], ["a", "b"])
