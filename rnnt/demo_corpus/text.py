"""Sentences for the demo corpus: complete, plain English sentences from Debian's fortunes."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from pathlib import Path

from rnnt.text import normalize

# Text selection.
MIN_WORDS, MAX_WORDS = 3, 20
MIN_LETTER_FRACTION = 0.8  # letters among non-space characters of a sentence
MIN_FILE_LETTER_FRACTION = 0.6  # below this a fortune file is ASCII art
SKIPPED_SUFFIXES = (".dat", ".u8")
FORBIDDEN_CHARS = re.compile(r"[@#$%&*_/\\<>=|~^\[\]{}]")
URL = re.compile(r"https?:|www\.|\.(com|org|net|edu)\b", re.IGNORECASE)
ACRONYM = re.compile(r"\b[A-Z]{2,}\b|\b[A-Za-z]\.[A-Za-z]\.")
_ABBREVIATION_WORDS = "mr mrs ms dr st jr sr vs etc prof gen col lt capt sgt mt no rev gov sen rep ft"
ABBREVIATIONS = frozenset(_ABBREVIATION_WORDS.split())
FORTUNE_SEPARATOR = re.compile(r"^%\s*$", re.MULTILINE)
ATTRIBUTION = re.compile(r"^\s*--.*$", re.MULTILINE)
SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')]))\s+")
COMPLETE_SENTENCE = re.compile(r"^[\"'(]?[A-Z].*[.!?][\"')]*$")


def fortune_files(fortunes_dir: Path) -> list[Path]:
    """Fortune text files, sorted; skips index files, the offensive dir and ASCII art."""
    files = []
    for path in sorted(fortunes_dir.iterdir()):
        if not path.is_file() or path.suffix in SKIPPED_SUFFIXES:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        visible = [c for c in text if not c.isspace()]
        if visible and sum(c.isalpha() for c in visible) / len(visible) >= MIN_FILE_LETTER_FRACTION:
            files.append(path)
    return files


def split_sentences(fortune: str) -> list[str]:
    """Joins wrapped lines of one fortune (minus attributions) and splits it into sentences."""
    text = " ".join(ATTRIBUTION.sub("", fortune).split())
    sentences = []
    after_abbreviation = False  # a piece following "Mr." or an initial is a fragment
    for piece in SENTENCE_END.split(text):
        is_abbreviated = ends_with_abbreviation(piece)
        if piece and not (after_abbreviation or is_abbreviated):
            sentences.append(piece)
        after_abbreviation = is_abbreviated
    return sentences


def ends_with_abbreviation(piece: str) -> bool:
    """True if a split point after this piece was an abbreviation or initial rather than a sentence end."""
    words = piece.rstrip(".").split()
    return piece.endswith(".") and bool(words) and (words[-1].lower() in ABBREVIATIONS or len(words[-1]) == 1)


def is_good_sentence(sentence: str) -> bool:
    """A complete, plain-ASCII sentence of 3-20 words that TTS reads exactly as its transcript."""
    if not (sentence.isascii() and sentence.isprintable() and COMPLETE_SENTENCE.match(sentence)):
        return False
    if FORBIDDEN_CHARS.search(sentence) or URL.search(sentence) or ACRONYM.search(sentence):
        return False
    words = normalize(sentence).split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS or any(c.isdigit() for c in sentence):
        return False
    visible = [c for c in sentence if not c.isspace()]
    return sum(c.isalpha() for c in visible) / len(visible) >= MIN_LETTER_FRACTION


def load_sentences(fortunes_dir: Path) -> list[str]:
    """Unique good sentences (deduplicated by normalised text) in file order."""
    seen: set[str] = set()
    sentences = []
    for path in fortune_files(fortunes_dir):
        for fortune in FORTUNE_SEPARATOR.split(path.read_text(encoding="utf-8", errors="replace")):
            for sentence in split_sentences(fortune):
                key = normalize(sentence)
                if key not in seen and is_good_sentence(sentence):
                    seen.add(key)
                    sentences.append(sentence)
    return sentences


def split_sentence_sets(
    sentences: Sequence[str], num_dev: int, num_test: int, seed: int
) -> dict[str, list[str]]:
    """Seeded shuffle, then dev and test take the first sentences and train the rest."""
    shuffled = list(sentences)
    random.Random(f"{seed}-sentences").shuffle(shuffled)
    return {
        "dev": shuffled[:num_dev],
        "test": shuffled[num_dev : num_dev + num_test],
        "train": shuffled[num_dev + num_test :],
    }
