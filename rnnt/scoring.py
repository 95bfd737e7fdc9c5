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
    """Total edits over total reference length (not an average of per-utterance rates)."""
    refs = [normalize(r) for r in references]
    hyps = [normalize(h) for h in hypotheses]
    kept = [(r, h) for r, h in zip(refs, hyps, strict=True) if r]
    if not kept:
        raise ValueError("no non-empty reference transcripts to score")
    refs, hyps = [r for r, _ in kept], [h for _, h in kept]
    words = jiwer.process_words(refs, hyps)
    chars = jiwer.process_characters(refs, hyps)
    num_words = sum(len(r.split()) for r in refs)
    return ErrorRates(
        words.wer, chars.cer, len(refs), num_words, words.substitutions, words.deletions, words.insertions
    )
