"""Transcript normalisation shared by tokenizer training, training targets and scoring."""

from __future__ import annotations

import re
import unicodedata

# Apostrophe look-alikes (’ ‘ ` ´ ʼ ′) become ASCII before the ASCII filter would drop them or
# split the word; letters with no accent-free decomposition are spelled out (Straße, Ødegaard,
# Æsir, œuvre, as Whisper's normaliser's ADDITIONAL_DIACRITICS do), not deleted.
_TRANSLITERATED = str.maketrans(
    {
        **dict.fromkeys("\u2019\u2018`\u00b4\u02bc\u2032", "'"),
        "ß": "ss",
        "æ": "ae",
        "Æ": "AE",
        "ø": "o",
        "Ø": "O",
        "œ": "oe",
        "Œ": "OE",
        "ł": "l",
        "Ł": "L",
        "ð": "d",
        "Ð": "D",
        "đ": "d",
        "Đ": "D",
        "þ": "th",
        "Þ": "Th",
    }
)
_NOT_KEPT = re.compile(r"[^a-z0-9' ]+")
_SPACES = re.compile(r"\s+")
_EDGE_QUOTES = re.compile(r"(^|\s)'+|'+(\s|$)")


def normalize(text: str) -> str:
    """Lowercase, strip accents and punctuation, keep in-word apostrophes, single spaces.

    >>> normalize("Hello, World!  It's 'quoted'.")
    "hello world it's quoted"
    """
    text = unicodedata.normalize("NFKD", text.translate(_TRANSLITERATED)).encode("ascii", "ignore").decode()
    text = text.lower().replace("-", " ")
    text = _NOT_KEPT.sub(" ", text)
    text = _EDGE_QUOTES.sub(" ", f" {text} ")
    return _SPACES.sub(" ", text).strip()
