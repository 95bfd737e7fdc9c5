"""Hotwords (contextual biasing): phrases a beam search is nudged towards, token by token.

A user lists names and terms (one per line, optionally with ` :score`); each token of a
listed phrase earns `score` while the hypothesis is inside the phrase. A completed phrase
keeps what it earned; a hypothesis that leaves a phrase half-way gives it back, so only
whole phrases gain (icefall's ContextGraph and sherpa-onnx's hotwords, in strict mode). The
phrases form an Aho-Corasick automaton over token ids, so overlapping phrases and one
starting inside another are followed. Written here, numpy only: the search runs without
torch, icefall's ContextGraph is recipe code rather than a package, and pyahocorasick finds
matches in whole strings, where beam search needs each state's score for every next token.
Shapes: V vocab.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnt.text import normalize
from rnnt.tokenizer import Tokenizer

ROOT = 0  # the automaton's start: no phrase under way
SCORE_MARK = " :"  # `phrase :score` in a hotwords file (sherpa-onnx's syntax)


class HotwordsError(ValueError):
    """A hotwords file that cannot be used."""


@dataclass(frozen=True)
class Phrase:
    tokens: tuple[int, ...]
    score: float  # earned per token, log-probability units
    text: str = ""  # the phrase as listed (normalised), for reports


class Hotwords:
    """The automaton: a state is a trie node, the phrase prefix a hypothesis has matched.

    `bonus(state)` (V,) is what each next token earns (negative when it abandons a partial
    match), `next_state(state, token)` where it leads, and `unmatched(state)` what a
    hypothesis still inside a phrase must give back when its segment ends.
    """

    def __init__(self, phrases: Sequence[Phrase], vocab_size: int):
        self.phrases = tuple(phrases)
        self.vocab_size = vocab_size
        self._children: list[dict[int, int]] = [{}]  # the trie: node -> {token: child}
        token_score, ends = self._insert(phrases)
        self._fail, order = self._failure_links()
        self._node_score = np.zeros(len(self._children))  # earned along the path from ROOT
        self._output = np.full(len(self._children), -1)  # the longest phrase ending here, or -1
        for node in order:  # breadth first: parents and failure targets come first
            for child in self._children[node].values():
                self._node_score[child] = self._node_score[node] + token_score[child]
            self._output[node] = node if ends[node] else self._output[self._fail[node]]
        self._targets: dict[int, np.ndarray] = {}
        self._rows: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def bonus(self, state: int) -> np.ndarray:
        """(V,) the score each token adds in `state`."""
        return self._row(state)[1]

    def next_state(self, state: int, token: int) -> int:
        return int(self._row(state)[0][token])

    def unmatched(self, state: int) -> float:
        """The bonus earned by an unfinished phrase, taken back at a segment's end."""
        return float(self._node_score[state])

    def _insert(self, phrases: Sequence[Phrase]) -> tuple[list[float], list[bool]]:
        """Build the trie; each node's score per token (the highest of the phrases through
        it) and whether a phrase ends there."""
        token_score, ends = [0.0], [False]
        for phrase in phrases:
            if not phrase.tokens:
                raise HotwordsError("a hotword phrase has no tokens")
            if not math.isfinite(phrase.score):
                raise HotwordsError(f"hotword phrase {phrase.text!r}: score {phrase.score} is not finite")
            node = ROOT
            for token in phrase.tokens:
                if not 0 <= token < self.vocab_size:
                    raise HotwordsError(f"token id {token} outside the vocabulary of {self.vocab_size}")
                if token not in self._children[node]:
                    self._children[node][token] = len(self._children)
                    self._children.append({})
                    token_score.append(phrase.score)
                    ends.append(False)
                node = self._children[node][token]
                token_score[node] = max(token_score[node], phrase.score)
            ends[node] = True
        return token_score, ends

    def _failure_links(self) -> tuple[list[int], list[int]]:
        """Each node's failure link (its longest proper suffix in the trie) and the nodes in
        breadth-first order."""
        fail = [ROOT] * len(self._children)
        order = [ROOT]
        queue = deque([ROOT])
        while queue:
            node = queue.popleft()
            for token, child in self._children[node].items():
                if node != ROOT:
                    suffix = fail[node]
                    while suffix != ROOT and token not in self._children[suffix]:
                        suffix = fail[suffix]
                    fail[child] = self._children[suffix].get(token, ROOT)
                order.append(child)
                queue.append(child)
        return fail, order

    def _transitions(self, state: int) -> np.ndarray:
        """(V,) the node each token leads to from `state`, before completed phrases reset."""
        if state not in self._targets:
            base = (
                np.zeros(self.vocab_size, np.int64) if state == ROOT else self._transitions(self._fail[state])
            )
            targets = base.copy()
            for token, child in self._children[state].items():
                targets[token] = child
            self._targets[state] = targets
        return self._targets[state]

    def _row(self, state: int) -> tuple[np.ndarray, np.ndarray]:
        """(next states, bonuses), (V,) each. Reaching a node where a phrase ends confirms it:
        the hypothesis keeps that phrase's score and starts afresh from ROOT."""
        if state not in self._rows:
            targets = self._transitions(state)
            output = self._output[targets]
            matched = output >= 0
            earned = np.where(matched, self._node_score[np.maximum(output, ROOT)], self._node_score[targets])
            bonus = (earned - self._node_score[state]).astype(np.float32)
            self._rows[state] = (np.where(matched, ROOT, targets), bonus)
        return self._rows[state]


def parse_hotwords(text: str, default_score: float, source: str = "hotwords") -> list[tuple[str, float]]:
    """Lines `phrase` or `phrase :score` -> (normalised phrase, score); `#` lines and blank
    lines are skipped. HotwordsError names the line of a bad (or infinite, or NaN) score."""
    phrases = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        phrase, score = line, default_score
        if SCORE_MARK in line:
            phrase, _, value = line.rpartition(SCORE_MARK)
            score = _score(value, f"{source}:{number}")
        phrase = normalize(phrase)
        if not phrase:
            raise HotwordsError(f"{source}:{number}: no words in {line!r}")
        phrases.append((phrase, score))
    return phrases


def _score(value: str, where: str) -> float:
    """A listed score: a finite number (`inf` would swamp the search, `nan` void the phrase)."""
    try:
        score = float(value)
    except ValueError:
        score = math.nan
    if not math.isfinite(score):
        raise HotwordsError(f"{where}: bad score {value.strip()!r} (expected a finite number: `phrase :2.0`)")
    return score


def unseen_words(known: Iterable[str], texts: Iterable[str]) -> list[str]:
    """The words of `texts` that no text of `known` holds, sorted: what a hotwords list is
    for (names, terms) and what a model trained on `known` has never had to spell."""
    seen = {word for text in known for word in normalize(text).split()}
    return sorted({word for text in texts for word in normalize(text).split()} - seen)


def load_hotwords(path: str | Path, tokenizer: Tokenizer, default_score: float) -> Hotwords:
    """A hotwords file (see `parse_hotwords`) tokenised with the model's tokenizer."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise HotwordsError(f"cannot read hotwords file {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise HotwordsError(f"hotwords file {path}: not UTF-8 text") from None
    return hotwords_from_text(text, tokenizer, default_score, str(path))


def hotwords_from_text(text: str, tokenizer: Tokenizer, default_score: float, source: str) -> Hotwords:
    """Hotwords from the lines of `text` (see `parse_hotwords`); `source` names it in errors."""
    phrases = parse_hotwords(text, default_score, source)
    if not phrases:
        raise HotwordsError(f"{source} lists no phrases")
    return Hotwords(
        [Phrase(tuple(tokenizer.encode(phrase)), score, phrase) for phrase, score in phrases],
        tokenizer.vocab_size,
    )
