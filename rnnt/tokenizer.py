"""Sentencepiece tokenizer (BPE or characters) whose id 0 is the transducer blank.

The trained model is kept as bytes so that it travels inside every checkpoint and export.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import sentencepiece as spm

from rnnt.config import BLANK_ID, UNK_ID, TokenizerConfig

BLANK_PIECE = "<blk>"
UNK_PIECE = "<unk>"


class Tokenizer:
    """Text <-> ids. Ids: 0 blank, 1 <unk>, then the pieces."""

    def __init__(self, model_proto: bytes):
        self.model_proto = model_proto
        try:
            self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        except RuntimeError as error:  # sentencepiece reports a damaged proto as RuntimeError
            raise ValueError(f"not a sentencepiece model ({error})") from error
        if self._sp.id_to_piece(BLANK_ID) != BLANK_PIECE or self._sp.unk_id() != UNK_ID:
            raise ValueError("not an rnnt tokenizer: id 0 must be <blk> and id 1 <unk>")

    @classmethod
    def train(cls, texts: Iterable[str], config: TokenizerConfig) -> Tokenizer:
        """Train on normalised transcripts (one per item); ValueError for a setting
        sentencepiece refuses (an unknown kind, a vocabulary larger than the text allows)."""
        if config.tokenizer_kind not in ("bpe", "char"):
            raise ValueError(f"--tokenizer_kind must be bpe or char, got {config.tokenizer_kind!r}")
        texts = list(texts)  # iterated twice for a char model
        proto = io.BytesIO()
        options: dict[str, Any] = {
            "model_type": config.tokenizer_kind,
            "pad_id": BLANK_ID,
            "pad_piece": BLANK_PIECE,
            "unk_id": UNK_ID,
            "unk_piece": UNK_PIECE,
            "bos_id": -1,
            "eos_id": -1,
            "character_coverage": 1.0,
            "num_threads": 1,  # deterministic merges
            "minloglevel": 2,
        }
        if config.tokenizer_kind == "bpe":
            options["vocab_size"] = config.vocab_size
        else:
            options["use_all_vocab"] = True
            options["vocab_size"] = len({ch for t in texts for ch in t.replace(" ", "\u2581")}) + 2
        try:
            spm.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_writer=proto, **options)
        except RuntimeError as error:  # sentencepiece's checks, e.g. "Vocabulary size too high"
            raise ValueError(f"sentencepiece cannot train this tokenizer: {error}") from None
        return cls(proto.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        return cls(Path(path).read_bytes())

    def save(self, path: str | Path) -> None:
        Path(path).write_bytes(self.model_proto)

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self._sp.encode(text, out_type=int)

    def decode(self, ids: Iterable[int]) -> str:
        return self._sp.decode([i for i in ids if i != BLANK_ID])

    def piece(self, token_id: int) -> str:
        return self._sp.id_to_piece(token_id)

    def score(self, token_id: int) -> float:
        """The piece's score in the sentencepiece model (its merge priority, for BPE)."""
        return self._sp.get_score(token_id)
