"""Transcript normalisation shared by tokenizer training, training targets and scoring."""

from __future__ import annotations

import re
import unicodedata

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'"})
_NOT_KEPT = re.compile(r"[^a-z0-9' ]+")
_SPACES = re.compile(r"\s+")
_EDGE_QUOTES = re.compile(r"(^|\s)'+|'+(\s|$)")


def normalize(text: str) -> str:
    """Lowercase, strip accents and punctuation, keep in-word apostrophes, single spaces.

    >>> normalize("Hello, World!  It's 'quoted'.")
    "hello world it's quoted"
    """
    # Curly apostrophes become ASCII before the ASCII filter would drop them.
    text = unicodedata.normalize("NFKD", text.translate(_APOSTROPHES)).encode("ascii", "ignore").decode()
    text = text.lower().replace("-", " ")
    text = _NOT_KEPT.sub(" ", text)
    text = _EDGE_QUOTES.sub(" ", f" {text} ")
    return _SPACES.sub(" ", text).strip()
