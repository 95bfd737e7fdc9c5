"""Tokenizer (blank at 0, <unk> at 1, round trips, bytes in and out) and text normalisation."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import sentencepiece as spm

from rnnt.config import BLANK_ID, UNK_ID, TokenizerConfig
from rnnt.text import normalize
from rnnt.tokenizer import BLANK_PIECE, UNK_PIECE, Tokenizer

# No 'z' or 'q' anywhere, so that the char tokenizer has no piece for them.
TRANSCRIPTS = [
    "Hello world, it's a test.",
    "Speech recognition with transducers",
    "Streaming ASR is fun to build",
    "Numbers 123 and 456 are read aloud",
    "the predictor network reads the labels",
    "the encoder reads the audio frames",
    "a joint network combines them",
    "every checkpoint carries its own tokenizer",
]
TEXTS = [normalize(t) for t in TRANSCRIPTS]
UNSEEN_TEXT = "the network reads the test frames"  # made of seen characters, not a training line


@pytest.fixture(scope="module", params=["bpe", "char"])
def tokenizer(request: pytest.FixtureRequest) -> Tokenizer:
    return Tokenizer.train(TEXTS, TokenizerConfig(tokenizer_kind=request.param, vocab_size=64))


def test_blank_and_unk_ids(tokenizer: Tokenizer) -> None:
    assert tokenizer.piece(BLANK_ID) == BLANK_PIECE
    assert tokenizer.piece(UNK_ID) == UNK_PIECE
    assert BLANK_ID not in tokenizer.encode(" ".join(TEXTS))


def test_round_trip(tokenizer: Tokenizer) -> None:
    for text in [*TEXTS, UNSEEN_TEXT]:
        ids = tokenizer.encode(text)
        assert ids and all(0 < i < tokenizer.vocab_size for i in ids)
        assert tokenizer.decode(ids) == text


def test_decode_skips_blanks(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode(TEXTS[0])
    with_blanks = [BLANK_ID, *(x for i in ids for x in (i, BLANK_ID))]
    assert tokenizer.decode(with_blanks) == TEXTS[0]


def test_unknown_character_is_unk() -> None:
    chars = Tokenizer.train(TEXTS, TokenizerConfig(tokenizer_kind="char"))
    assert UNK_ID in chars.encode("quiz")
    assert UNK_ID not in chars.encode(UNSEEN_TEXT)


def test_char_vocabulary_is_the_characters() -> None:
    chars = Tokenizer.train(TEXTS, TokenizerConfig(tokenizer_kind="char"))
    pieces = {chars.piece(i) for i in range(2, chars.vocab_size)}
    assert pieces == {c for t in TEXTS for c in t.replace(" ", "\u2581")}


def test_save_load_gives_identical_ids(tokenizer: Tokenizer, tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.model"
    tokenizer.save(path)
    loaded = Tokenizer.load(path)
    assert loaded.model_proto == tokenizer.model_proto
    assert loaded.vocab_size == tokenizer.vocab_size
    for text in [*TEXTS, UNSEEN_TEXT]:
        assert loaded.encode(text) == tokenizer.encode(text)
    assert Tokenizer(tokenizer.model_proto).encode(UNSEEN_TEXT) == tokenizer.encode(UNSEEN_TEXT)


def test_training_is_deterministic_and_accepts_any_iterable() -> None:
    for kind in ["bpe", "char"]:
        config = TokenizerConfig(tokenizer_kind=kind, vocab_size=64)
        from_list = Tokenizer.train(TEXTS, config)
        from_generator = Tokenizer.train((t for t in TEXTS), config)
        assert from_generator.model_proto == from_list.model_proto


def test_foreign_sentencepiece_model_is_rejected() -> None:
    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(  # sentencepiece defaults: <unk> 0, <s> 1, </s> 2
        sentence_iterator=iter(TEXTS), model_writer=proto, vocab_size=40, minloglevel=2, num_threads=1
    )
    with pytest.raises(ValueError, match="not an rnnt tokenizer"):
        Tokenizer(proto.getvalue())


def test_garbage_bytes_are_rejected() -> None:
    with pytest.raises(ValueError, match="not a sentencepiece model"):
        Tokenizer(b"this is not a model proto")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Hello, World!  It's 'quoted'.", "hello world it's quoted"),
        ("Café déjà vu, naïve coöperation", "cafe deja vu naive cooperation"),
        ("state-of-the-art", "state of the art"),
        ("don\u2019t \u2018quote\u2019 me", "don't quote me"),
        ("`backtick`", "backtick"),
        ("don\u00b4t, don\u02bct, don\u2032t", "don't don't don't"),  # not "don t" / "dont"
        ("Straße, Bjørn Ødegaard, Œuvre, Æsir", "strasse bjorn odegaard oeuvre aesir"),  # not "strae"
        ("Łódź, Þór, Ðaði", "lodz thor dadi"),
        ("'tis the season's end'", "tis the season's end"),
        ("rock 'n' roll at o'clock", "rock n roll at o'clock"),
        ("  multiple   spaces\tand\nnewlines ", "multiple spaces and newlines"),
        ("Numbers 42 and 7!", "numbers 42 and 7"),
        ("a_b;c:d", "a b c d"),
        ("!!!", ""),
        ("", ""),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize(raw) == expected
    assert normalize(expected) == expected  # idempotent
