"""A second pass over a finished beam: rescoring with the encoder's CTC head.

A model trained with the auxiliary CTC loss (`--ctc_head`) has a second, alignment-free view
of the audio. Adding `weight` times each hypothesis's CTC log-likelihood to its transducer
(+ LM) score and re-ranking the final beam took the demo test set from 25.50% to 24.68% WER
(beam 8 + LM, weight 0.2, chosen on dev: 23.11 -> 22.23%), in the spirit of ESPnet's joint
CTC/attention decoding, applied once per utterance or caption segment instead of per token.
Shapes: T' encoder frames, V vocab, U tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from rnnt.config import BLANK_ID, DecodeConfig
from rnnt.state import LstmState

if TYPE_CHECKING:  # rnnt.decoding imports this module
    from rnnt.hypothesis import Hypothesis, Runtime


def ctc_log_likelihoods(log_probs: np.ndarray, sequences: Sequence[Sequence[int]]) -> np.ndarray:
    """log P(tokens | frames) under CTC (Graves et al. 2006) of each token sequence, (N,), from
    the same (T', V) log-probabilities.

    The forward algorithm over the blank-interleaved labels, in log space, for all sequences
    at once (the shorter ones padded with blanks past their end, which is where their
    likelihood is read, so the padding never counts). Written here because
    the rescoring runs in the torch-free deployments (onnx, openvino) and numpy has no CTC;
    the tests check it against `torch.nn.functional.ctc_loss`. -inf for tokens that need more
    frames than there are.
    """
    ends = np.array([2 * len(tokens) + 1 for tokens in sequences])  # labels of each sequence
    labels = np.full((len(sequences), ends.max()), BLANK_ID, dtype=np.int64)
    for row, tokens in enumerate(sequences):
        labels[row, 1 : ends[row] : 2] = tokens
    # A label may also be entered from two back (skipping a blank) unless it repeats that one.
    skip = np.zeros(labels.shape, dtype=bool)
    skip[:, 3::2] = labels[:, 3::2] != labels[:, 1:-2:2]
    if not len(log_probs):
        return np.where(ends == 1, 0.0, -np.inf)
    alpha = np.full(labels.shape, -np.inf)
    alpha[:, :2] = log_probs[0, labels[:, :2]]
    none = np.full((len(sequences), 2), -np.inf)
    for frame in log_probs[1:]:
        one_back = np.concatenate([none[:, :1], alpha[:, :-1]], axis=1)
        two_back = np.where(skip, np.concatenate([none, alpha[:, :-2]], axis=1), -np.inf)
        alpha = np.logaddexp(np.logaddexp(alpha, one_back), two_back) + frame[labels]
    rows = np.arange(len(sequences))
    last_blank = alpha[rows, ends - 1]
    last_token = np.where(ends > 1, alpha[rows, np.maximum(ends - 2, 0)], -np.inf)
    return np.logaddexp(last_blank, last_token)


def rescore_beam(
    beam: Sequence[Hypothesis], log_probs: Sequence[np.ndarray], weight: float
) -> list[Hypothesis]:
    """The beam re-ranked by score + `weight` * CTC log-likelihood averaged over `log_probs`,
    one (T', V) array per view of the audio the hypotheses were decoded from (one but for an
    ensemble, `rnnt.decoding.decode_views`); ties keep the beam's order. Scores are not
    changed: the transducer's stays what a resumed search continues from."""
    tokens = [hyp.tokens for hyp in beam]
    ctc = np.mean([ctc_log_likelihoods(view, tokens) for view in log_probs], axis=0)
    totals = [
        hyp.score + weight * float(log_likelihood) for hyp, log_likelihood in zip(beam, ctc, strict=True)
    ]
    order = sorted(range(len(beam)), key=lambda i: -totals[i])
    return [beam[i] for i in order]


def check_rescoring(runtime: Runtime, config: DecodeConfig) -> None:
    """ValueError if `config.ctc_rescore_weight` cannot be applied with this runtime."""
    if config.ctc_rescore_weight and config.beam_size == 1:
        raise ValueError("CTC rescoring re-ranks a beam: set --beam_size above 1")
    if config.ctc_rescore_weight and not runtime.has_ctc:
        raise ValueError(
            "CTC rescoring needs a model trained with a CTC head (--ctc_head) and, for onnx and "
            "openvino, exported by this version of export_onnx.py"
        )


def encode_chunk(
    runtime: Runtime, features: np.ndarray, state: LstmState, with_ctc: bool
) -> tuple[np.ndarray, np.ndarray | None, LstmState]:
    """(B, T, D) frames -> (B, T', J), the CTC head's (B, T', V) log-probs if `with_ctc`
    (else None), and the new state."""
    if with_ctc:
        return runtime.encode_with_ctc(features, state)
    encoder_out, state = runtime.encode(features, state)
    return encoder_out, None, state
