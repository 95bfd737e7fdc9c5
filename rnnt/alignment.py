"""Joint-network posteriors over the transducer lattice, for alignment figures.

Shapes: T' encoder frames, U hypothesis tokens, V vocab. Torch-free: any runtime works.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rnnt.config import BLANK_ID
from rnnt.hypothesis import Runtime, initial_hypothesis, log_softmax


@dataclass(frozen=True)
class LatticePosteriors:
    blank: np.ndarray  # (T', U + 1): p(blank | frame t, first u tokens)
    label: np.ndarray  # (T', U): p(token u | frame t, first u tokens)


def predictor_outputs(runtime: Runtime, tokens: Sequence[int]) -> np.ndarray:
    """(U + 1, J): the predictor output after each prefix of `tokens` (empty first)."""
    hyp = initial_hypothesis(runtime)
    outputs, state = [hyp.predictor_out], hyp.predictor_state
    for token in tokens:
        out, state = runtime.predict(np.array([token], dtype=np.int64), state)
        outputs.append(out[0])
    return np.stack(outputs)


def lattice_posteriors(runtime: Runtime, encoder_out: np.ndarray, tokens: Sequence[int]) -> LatticePosteriors:
    """Blank and next-token probabilities at every node (t, u) of one utterance's lattice.

    `encoder_out` is (T', J) for one utterance; `tokens` its transcript's ids.
    """
    pred = predictor_outputs(runtime, tokens)
    frames, contexts = encoder_out.shape[0], pred.shape[0]
    enc_rows = np.repeat(encoder_out, contexts, axis=0)
    pred_rows = np.tile(pred, (frames, 1))
    probs = np.exp(log_softmax(runtime.join(enc_rows, pred_rows))).reshape(frames, contexts, -1)
    label = probs[:, np.arange(len(tokens)), np.asarray(tokens, dtype=np.int64)]
    return LatticePosteriors(blank=probs[:, :, BLANK_ID], label=label.reshape(frames, len(tokens)))
