"""What every search works with: the runtime's three networks, hypotheses, and the steps
that extend a hypothesis (`rnnt.decoding`'s greedy search, `rnnt.beam`'s beam search).

Shapes: B streams, T' encoder frames, J joint width, V vocab, N hypotheses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from rnnt.config import BLANK_ID, UNK_ID, DecodeConfig
from rnnt.state import LstmState, select_state, stack_states


class Runtime(Protocol):
    """The three networks of a transducer, numpy in and out.

    Encoder and predictor outputs are J-dimensional joint-space vectors (the joint's input
    projections already applied, `Transducer.search_encode`), so `join` is only
    tanh(enc + pred) -> Linear(V).
    """

    time_reduction: int  # input frames per encoder frame
    has_ctc: bool  # the model has a CTC head (and the export its output): `encode_with_ctc` works

    def init_encoder_state(self, batch_size: int) -> LstmState: ...

    def encode(self, features: np.ndarray, state: LstmState) -> tuple[np.ndarray, LstmState]:
        """(B, T, D) float32 frames -> (B, T', J) and the new state."""
        ...

    def encode_with_ctc(
        self, features: np.ndarray, state: LstmState
    ) -> tuple[np.ndarray, np.ndarray, LstmState]:
        """`encode`, plus the CTC head's (B, T', V) log-probabilities (`rnnt.rescoring`)."""
        ...

    def init_predictor_state(self, batch_size: int) -> LstmState: ...

    def predict(self, tokens: np.ndarray, state: LstmState) -> tuple[np.ndarray, LstmState]:
        """(B,) int64 tokens -> (B, J) and the new state."""
        ...

    def join(self, encoder_out: np.ndarray, predictor_out: np.ndarray) -> np.ndarray:
        """(N, J) and (N, J) -> (N, V) logits."""
        ...


@dataclass
class Hypothesis:
    """A partial transcript with what is needed to extend it."""

    tokens: list[int]
    frames: list[int]  # encoder frame index at which each token was emitted
    score: float  # total log-probability
    predictor_out: np.ndarray  # (J,) output after the last token
    predictor_state: LstmState  # (layers, 1, H) after the last token
    num_frames: int = 0  # encoder frames consumed so far
    trailing_blanks: int = field(default=0)  # encoder frames since the last token
    hotword_state: int = 0  # where its tokens stand among the hotword phrases (`rnnt.hotwords`)


def initial_hypothesis(runtime: Runtime) -> Hypothesis:
    """The empty hypothesis: the predictor has seen only the start (blank) token."""
    state = runtime.init_predictor_state(1)
    out, state = runtime.predict(np.array([BLANK_ID], dtype=np.int64), state)
    return Hypothesis([], [], 0.0, out[0], state)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def joint_logits(
    runtime: Runtime, encoder_out: np.ndarray, predictor_out: np.ndarray, config: DecodeConfig
) -> np.ndarray:
    """(N, J) and (N, J) -> (N, V) logits; if suppressed, <unk>'s is -inf, so that it is
    removed from the distribution (the others renormalised) rather than only never chosen.
    The blank penalty lowers blank's logit, as sherpa-onnx's does."""
    logits = runtime.join(encoder_out, predictor_out)
    if config.blank_penalty:
        logits[:, BLANK_ID] -= config.blank_penalty
    if config.suppress_unk:
        logits[:, UNK_ID] = -np.inf
    return logits


def joint_log_probs(
    runtime: Runtime, encoder_out: np.ndarray, predictor_out: np.ndarray, config: DecodeConfig
) -> np.ndarray:
    """(N, J) and (N, J) -> (N, V) log-probabilities of `joint_logits` at `config.temperature`."""
    return log_softmax(joint_logits(runtime, encoder_out, predictor_out, config) / config.temperature)


def copy_hypothesis(hyp: Hypothesis) -> Hypothesis:
    return Hypothesis(
        list(hyp.tokens),
        list(hyp.frames),
        hyp.score,
        hyp.predictor_out,
        hyp.predictor_state,
        hyp.num_frames,
        hyp.trailing_blanks,
        hyp.hotword_state,
    )


def extend(runtime: Runtime, hyps: Sequence[Hypothesis], tokens: Sequence[int]) -> None:
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
        hyp.trailing_blanks = -1  # advance_frame makes it 0 for this frame


def advance_frame(hyp: Hypothesis) -> None:
    hyp.num_frames += 1
    hyp.trailing_blanks = 0 if hyp.trailing_blanks < 0 else hyp.trailing_blanks + 1
