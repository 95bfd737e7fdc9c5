"""Corpus-level word and character error rates (jiwer), on normalised text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jiwer

from rnnt.text import normalize


@dataclass(frozen=True)
class ErrorRates:
    wer: float  # word errors / reference words, corpus level
    cer: float  # character errors / reference characters, corpus level
    num_utterances: int
    num_words: int
    substitutions: int  # word edits by kind: wer = (S + D + I) / num_words
    deletions: int
    insertions: int

    def breakdown(self) -> str:
        """The word edits by kind as `sub a% del b% ins c%`, each over the reference words."""
        sub, dele, ins = (
            100 * n / max(self.num_words, 1) for n in (self.substitutions, self.deletions, self.insertions)
        )
        return f"sub {sub:.2f}% del {dele:.2f}% ins {ins:.2f}%"


def error_rates(references: Sequence[str], hypotheses: Sequence[str]) -> ErrorRates:
    """Total edits over total reference length (not an average of per-utterance rates). What
    is output for an utterance with an empty reference (silence, noise) is all insertions, as
    sclite counts it: jiwer, which aligns the others, refuses an empty reference."""
    refs = [normalize(r) for r in references]
    hyps = [normalize(h) for h in hypotheses]
    kept = [(r, h) for r, h in zip(refs, hyps, strict=True) if r]
    if not kept:
        raise ValueError("no non-empty reference transcripts to score")
    spoken_over_silence = [h for r, h in zip(refs, hyps, strict=True) if not r and h]
    extra_words = sum(len(h.split()) for h in spoken_over_silence)
    extra_chars = sum(len(h) for h in spoken_over_silence)
    refs, hyps = [r for r, _ in kept], [h for _, h in kept]
    words = jiwer.process_words(refs, hyps)
    chars = jiwer.process_characters(refs, hyps)
    num_words = sum(len(r.split()) for r in refs)
    num_chars = sum(len(r) for r in refs)
    char_edits = chars.substitutions + chars.deletions + chars.insertions + extra_chars
    insertions = words.insertions + extra_words
    return ErrorRates(
        (words.substitutions + words.deletions + insertions) / num_words,
        char_edits / num_chars,
        len(references),
        num_words,
        words.substitutions,
        words.deletions,
        insertions,
    )


@dataclass(frozen=True)
class PhraseRecall:
    found: int  # reference occurrences of the phrases that the hypotheses also hold
    total: int  # occurrences of the phrases in the references
    false_alarms: int  # occurrences in the hypotheses beyond their references'

    @property
    def recall(self) -> float:
        return self.found / self.total if self.total else 0.0


def phrase_recall(
    references: Sequence[str], hypotheses: Sequence[str], phrases: Sequence[str]
) -> PhraseRecall:
    """How many of the phrases' occurrences (whole words) in each reference its hypothesis
    holds too, up to as many as the reference has (the recall of a hotwords list), and how
    many more the hypotheses hold (its false alarms)."""
    needles = [f" {normalize(phrase)} " for phrase in phrases]
    found = total = false_alarms = 0
    for reference, hypothesis in zip(references, hypotheses, strict=True):
        ref, hyp = f" {normalize(reference)} ", f" {normalize(hypothesis)} "
        for needle in needles:
            in_ref, in_hyp = _occurrences(ref, needle), _occurrences(hyp, needle)
            total += in_ref
            found += min(in_ref, in_hyp)
            false_alarms += max(0, in_hyp - in_ref)
    return PhraseRecall(found, total, false_alarms)


def _occurrences(text: str, needle: str) -> int:
    """Occurrences of `needle` (a phrase padded by spaces) in `text` (also padded), overlapping."""
    count, start = 0, text.find(needle)
    while start >= 0:
        count += 1
        start = text.find(needle, start + 1)
    return count
