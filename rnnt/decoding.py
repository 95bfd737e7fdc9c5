"""Transducer search over any runtime (PyTorch, ONNX Runtime, OpenVINO), in numpy.

The search only calls the runtime's three networks, so one implementation serves
evaluation, streaming and every backend. It is resumable: pass back the hypotheses a call
returned and the next chunk's encoder frames continue them.
Shapes: B streams, T' encoder frames, E encoder width, P predictor width, V vocab.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from rnnt.config import BLANK_ID, UNK_ID, DecodeConfig
from rnnt.state import LstmState, select_state, stack_states


class Runtime(Protocol):
    """The three networks of a transducer, numpy in and out."""

    time_reduction: int  # input frames per encoder frame

    def init_encoder_state(self, batch_size: int) -> LstmState: ...

    def encode(self, features: np.ndarray, state: LstmState) -> tuple[np.ndarray, LstmState]:
        """(B, T, D) float32 frames -> (B, T', E) and the new state."""
        ...

    def init_predictor_state(self, batch_size: int) -> LstmState: ...

    def predict(self, tokens: np.ndarray, state: LstmState) -> tuple[np.ndarray, LstmState]:
        """(B,) int64 tokens -> (B, P) and the new state."""
        ...

    def join(self, encoder_out: np.ndarray, predictor_out: np.ndarray) -> np.ndarray:
        """(N, E) and (N, P) -> (N, V) logits."""
        ...


@dataclass
class Hypothesis:
    """A partial transcript with what is needed to extend it."""

    tokens: list[int]
    frames: list[int]  # encoder frame index at which each token was emitted
    score: float  # total log-probability
    predictor_out: np.ndarray  # (P,) output after the last token
    predictor_state: LstmState  # (layers, 1, H) after the last token
    num_frames: int = 0  # encoder frames consumed so far
    trailing_blanks: int = field(default=0)  # encoder frames since the last token


def initial_hypothesis(runtime: Runtime) -> Hypothesis:
    """The empty hypothesis: the predictor has seen only the start (blank) token."""
    state = runtime.init_predictor_state(1)
    out, state = runtime.predict(np.array([BLANK_ID], dtype=np.int64), state)
    return Hypothesis([], [], 0.0, out[0], state)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def greedy_search(
    runtime: Runtime,
    encoder_out: np.ndarray,
    lengths: Sequence[int],
    hyps: Sequence[Hypothesis],
    config: DecodeConfig,
) -> list[Hypothesis]:
    """Batched greedy search, at most `max_symbols_per_frame` tokens per frame.

    `encoder_out` (B, T', E) holds B streams' next frames, `lengths[b]` of them valid.
    """
    out = [_copy(h) for h in hyps]
    for t in range(encoder_out.shape[1]):
        active = [b for b in range(len(out)) if t < lengths[b]]
        for _ in range(config.max_symbols_per_frame):
            if not active:
                break
            pred = np.stack([out[b].predictor_out for b in active])
            logp = log_softmax(runtime.join(encoder_out[active, t], pred))
            if config.suppress_unk:
                logp[:, UNK_ID] = -np.inf
            best = logp.argmax(axis=1)
            for row, b in enumerate(active):
                out[b].score += float(logp[row, best[row]])
            active = [b for row, b in enumerate(active) if best[row] != BLANK_ID]
            emitted = [int(best[row]) for row in np.flatnonzero(best != BLANK_ID)]
            _extend(runtime, [out[b] for b in active], emitted)
        for b in range(len(out)):
            if t < lengths[b]:
                _advance_frame(out[b])
    return out


def _copy(hyp: Hypothesis) -> Hypothesis:
    return Hypothesis(
        list(hyp.tokens),
        list(hyp.frames),
        hyp.score,
        hyp.predictor_out,
        hyp.predictor_state,
        hyp.num_frames,
        hyp.trailing_blanks,
    )


def _extend(runtime: Runtime, hyps: Sequence[Hypothesis], tokens: Sequence[int]) -> None:
    """Append `tokens[i]` to `hyps[i]` (in place), running the predictor once for all."""
    if not hyps:
        return
    state = stack_states([h.predictor_state for h in hyps])
    pred, state = runtime.predict(np.array(tokens, dtype=np.int64), state)
    for i, (hyp, token) in enumerate(zip(hyps, tokens, strict=True)):
        hyp.tokens.append(token)
        hyp.frames.append(hyp.num_frames)
        hyp.predictor_out = pred[i]
        hyp.predictor_state = select_state(state, [i])
        hyp.trailing_blanks = -1  # _advance_frame makes it 0 for this frame


def _advance_frame(hyp: Hypothesis) -> None:
    hyp.num_frames += 1
    hyp.trailing_blanks = 0 if hyp.trailing_blanks < 0 else hyp.trailing_blanks + 1


def decode_features(
    runtime: Runtime, features: Sequence[np.ndarray], config: DecodeConfig
) -> list[Hypothesis]:
    """Offline search over whole utterances' features (each (T, D)), batched."""
    lengths = [len(f) for f in features]
    padded = np.zeros((len(features), max(lengths), features[0].shape[1]), dtype=np.float32)
    for i, f in enumerate(features):
        padded[i, : len(f)] = f
    encoder_out, _ = runtime.encode(padded, runtime.init_encoder_state(len(features)))
    encoder_lengths = [length // runtime.time_reduction for length in lengths]
    start = initial_hypothesis(runtime)
    return search(runtime, encoder_out, encoder_lengths, [start] * len(features), config)


def search(
    runtime: Runtime,
    encoder_out: np.ndarray,
    lengths: Sequence[int],
    hyps: Sequence[Hypothesis],
    config: DecodeConfig,
) -> list[Hypothesis]:
    """The configured search: greedy (beam 1) for now."""
    return greedy_search(runtime, encoder_out, lengths, hyps, config)
