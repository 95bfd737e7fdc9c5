"""A token n-gram language model for shallow fusion in beam search.

Interpolated Kneser-Ney over the transducer's own token ids: absolute discounting at every
order, continuation counts (how many distinct tokens precede) below the top one, the empty
context backed off to uniform. Beam search adds `lm_weight * log P_lm(token | last n-1
tokens) + lm_token_bonus` to every token's log-probability (`rnnt.decoding`).

Written here because no maintained package estimates one that the search can query without
torch: KenLM's estimator (`lmplz`) is not on PyPI and needs a C++ build, and torchaudio's LM
hooks serve only its CTC decoder. An n-gram over a few hundred thousand tokens is a few
sorted numpy arrays, looked up with `searchsorted`, and the onnx/openvino deployments keep
their numpy-only footprint.

The sentence boundary (before the first token and after the last) is the blank id, which a
transcript never contains.
"""

from __future__ import annotations

import functools
import hashlib
import math
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnt import atomic
from rnnt.config import BLANK_ID

BOUNDARY = BLANK_ID
FORMAT_VERSION = 1
CACHE_CONTEXTS = 8192  # distributions kept per model (V floats each): a beam revisits its contexts


class LmError(Exception):
    """An LM file that cannot be used; the message names the file and why."""


def tokenizer_fingerprint(model_proto: bytes) -> str:
    """Identifies the tokenizer an LM's ids belong to."""
    return hashlib.sha1(model_proto).hexdigest()


@dataclass(frozen=True)
class _Order:
    """The n-grams with contexts of one length: contexts packed into sorted keys, and for
    context i its next tokens and counts at `tokens[offsets[i]:offsets[i + 1]]`."""

    keys: np.ndarray  # (C,) uint64, sorted
    offsets: np.ndarray  # (C + 1,) int64
    tokens: np.ndarray  # (N,) int64
    counts: np.ndarray  # (N,) float64


class NgramLm:
    """log P(next token | context) over a tokenizer's ids; see the module docstring."""

    def __init__(
        self, order: int, vocab_size: int, discount: float, tokenizer: str, orders: Sequence[_Order]
    ):
        self.order = order
        self.vocab_size = vocab_size
        self.discount = discount
        self.tokenizer = tokenizer  # `tokenizer_fingerprint` of the tokenizer it was trained with
        self._orders = list(orders)  # index k: contexts of k tokens
        self._distribution = functools.lru_cache(maxsize=CACHE_CONTEXTS)(self._compute)

    @classmethod
    def train(
        cls,
        sequences: Iterable[Sequence[int]],
        vocab_size: int,
        tokenizer: str,
        order: int = 5,
        discount: float = 0.75,
    ) -> NgramLm:
        """Estimate from token sequences (one per sentence, no boundary tokens)."""
        if order < 1:
            raise ValueError(f"order must be at least 1, got {order}")
        if not 0 < discount < 1:
            raise ValueError(f"discount must be between 0 and 1, got {discount}")
        if float(vocab_size) ** (order - 1) >= 2**63:
            raise ValueError(
                f"{order - 1} context tokens of a {vocab_size}-token vocabulary do not fit a 64-bit key"
            )
        counts: list[defaultdict[tuple[int, ...], defaultdict[int, int]]] = [
            defaultdict(lambda: defaultdict(int)) for _ in range(order)
        ]
        for sequence in sequences:
            if any(not 0 < token < vocab_size for token in sequence):
                raise ValueError(f"token ids must be in 1..{vocab_size - 1}: {list(sequence)[:20]}")
            padded = [BOUNDARY] * (order - 1) + list(sequence) + [BOUNDARY]
            top = counts[order - 1]
            for i in range(order - 1, len(padded)):
                top[tuple(padded[i - order + 1 : i])][padded[i]] += 1
        if not counts[order - 1]:
            raise ValueError("no sentences to estimate an LM from")
        # Below the top order, Kneser-Ney's continuation counts: the distinct tokens seen before.
        for k in range(order - 1, 0, -1):
            for context, following in counts[k].items():
                for token in following:
                    counts[k - 1][context[1:]][token] += 1
        orders = [_pack(table, vocab_size) for table in counts]
        return cls(order, vocab_size, discount, tokenizer, orders)

    def log_probs(self, tokens: Sequence[int]) -> np.ndarray:
        """(V,) float32 natural-log probabilities of the token after `tokens` (a sentence so far)."""
        context = tuple(tokens[len(tokens) - self.order + 1 :]) if self.order > 1 else ()
        return self._distribution((BOUNDARY,) * (self.order - 1 - len(context)) + context)

    def sentence_log_prob(self, tokens: Sequence[int]) -> float:
        """log P of a whole sentence, its end included."""
        tokens = list(tokens)
        total = 0.0
        for i, token in enumerate([*tokens, BOUNDARY]):
            total += float(self.log_probs(tokens[:i])[token])
        return total

    def perplexity(self, sequences: Iterable[Sequence[int]]) -> tuple[float, int]:
        """Per-token perplexity over sentences (each end counted as a token), and that count."""
        log_prob, count = 0.0, 0
        for tokens in sequences:
            log_prob += self.sentence_log_prob(tokens)
            count += len(tokens) + 1
        return math.exp(-log_prob / max(count, 1)), count

    def _compute(self, context: tuple[int, ...]) -> np.ndarray:
        probs = np.full(self.vocab_size, 1.0 / self.vocab_size)
        for k, table in enumerate(self._orders):
            key = _key(context[len(context) - k :] if k else (), self.vocab_size)
            i = int(np.searchsorted(table.keys, key))
            if i == len(table.keys) or table.keys[i] != key:
                break  # no longer context was seen either
            tokens = table.tokens[table.offsets[i] : table.offsets[i + 1]]
            counts = table.counts[table.offsets[i] : table.offsets[i + 1]]
            total = counts.sum()
            discounted = np.zeros(self.vocab_size)
            discounted[tokens] = np.maximum(counts - self.discount, 0.0)
            probs = discounted / total + (self.discount * len(tokens) / total) * probs
        with np.errstate(divide="ignore"):
            out = np.log(probs).astype(np.float32)
        out.flags.writeable = False  # shared by every hypothesis with this context
        return out

    def save(self, path: str | Path) -> None:
        arrays: dict[str, np.ndarray] = {
            "format_version": np.array(FORMAT_VERSION),
            "order": np.array(self.order),
            "vocab_size": np.array(self.vocab_size),
            "discount": np.array(self.discount),
            "tokenizer": np.array(self.tokenizer),
        }
        for k, table in enumerate(self._orders):
            for name in ("keys", "offsets", "tokens", "counts"):
                arrays[f"{name}_{k}"] = getattr(table, name)
        with atomic.atomic_open(path, "wb") as file:
            np.savez_compressed(file, **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: str | Path, tokenizer: str | None = None) -> NgramLm:
        """Read `path`; with `tokenizer` (a fingerprint), refuse an LM of another tokenizer."""
        try:
            with np.load(path, allow_pickle=False) as data:
                if int(data["format_version"]) != FORMAT_VERSION:
                    raise LmError(
                        f"{path}: LM format {int(data['format_version'])}, expected {FORMAT_VERSION}"
                    )
                order = int(data["order"])
                orders = [
                    _Order(*(data[f"{name}_{k}"] for name in ("keys", "offsets", "tokens", "counts")))
                    for k in range(order)
                ]
                lm = cls(
                    order, int(data["vocab_size"]), float(data["discount"]), str(data["tokenizer"]), orders
                )
        except FileNotFoundError:
            raise LmError(f"{path}: no such LM file") from None
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as error:
            raise LmError(f"{path}: not an LM file written by tools/train_lm.py ({error})") from None
        if tokenizer is not None and lm.tokenizer != tokenizer:
            raise LmError(f"{path}: this LM was trained with another tokenizer than the model's")
        return lm


def _key(context: Sequence[int], vocab_size: int) -> np.uint64:
    key = 0
    for token in context:
        key = key * vocab_size + token
    return np.uint64(key)


def _pack(table: Mapping[tuple[int, ...], Mapping[int, int]], vocab_size: int) -> _Order:
    keyed = sorted((int(_key(context, vocab_size)), context) for context in table)
    offsets = np.zeros(len(keyed) + 1, dtype=np.int64)
    tokens, counts = [], []
    for i, (_, context) in enumerate(keyed):
        following = sorted(table[context].items())
        tokens += [t for t, _ in following]
        counts += [n for _, n in following]
        offsets[i + 1] = offsets[i] + len(following)
    keys = np.array([key for key, _ in keyed], dtype=np.uint64)
    return _Order(keys, offsets, np.array(tokens, dtype=np.int64), np.array(counts, dtype=np.float64))
