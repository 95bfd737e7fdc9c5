"""What beam search adds to the transducer's scores: a token n-gram LM (shallow fusion) and
hotwords (contextual biasing). Blank's score is always the transducer's alone.

Shapes: N hypotheses, V vocab.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rnnt.config import BLANK_ID, DecodeConfig
from rnnt.hotwords import ROOT, Hotwords
from rnnt.hypothesis import Hypothesis, copy_hypothesis
from rnnt.lm import NgramLm


@dataclass(frozen=True)
class Fusion:
    """The scorers beside the transducer; either may be None."""

    lm: NgramLm | None = None
    hotwords: Hotwords | None = None


NO_FUSION = Fusion()


def per_stream(fusion: Fusion | Sequence[Fusion], num_streams: int) -> list[Fusion]:
    """One fusion per stream: `fusion` for every stream, or a sequence already one per stream."""
    if isinstance(fusion, Fusion):
        return [fusion] * num_streams
    if len(fusion) != num_streams:
        raise ValueError(f"{len(fusion)} fusions for {num_streams} streams")
    return list(fusion)


def check_fusion(fusion: Fusion, config: DecodeConfig) -> None:
    """ValueError if `fusion` cannot be used with `config` (both need beam search)."""
    if config.beam_size > 1:
        return
    if fusion.lm is not None:
        raise ValueError("an LM needs beam search: set --beam_size above 1")
    if fusion.hotwords is not None:
        raise ValueError("hotwords need beam search: set --beam_size above 1")


def add_fusion(logp: np.ndarray, hyps: Sequence[Hypothesis], fusion: Fusion, config: DecodeConfig) -> None:
    """Add to `logp` (N, V), in place, what each token of each hypothesis earns besides the
    transducer's log-probability.

    The LM's: `lm_weight` times its log-probability given the hypothesis's tokens, plus
    `lm_token_bonus` (which offsets the LM's cost per token, without which the fused search
    prefers deletions); at `lm_weight` 0 neither, the search is the LM-free one. The hotwords':
    each token's bonus in the hypothesis's hotword state.
    """
    lm = fusion.lm if config.lm_weight != 0 else None
    if lm is None and fusion.hotwords is None:
        return
    fused = np.zeros_like(logp)
    if lm is not None:
        fused += config.lm_weight * np.stack([lm.log_probs(hyp.tokens) for hyp in hyps])
        fused += config.lm_token_bonus
    if fusion.hotwords is not None:
        # Scores are in icefall's and sherpa-onnx's units (log-probabilities at temperature 1),
        # of which a tempered search's are about 1/temperature (close_beam's too).
        fused += np.stack([fusion.hotwords.bonus(hyp.hotword_state) for hyp in hyps]) / config.temperature
    fused[:, BLANK_ID] = 0.0
    logp += fused


def advance_fusion(hyp: Hypothesis, token: int, fusion: Fusion) -> None:
    """Move `hyp`'s hotword state past `token` (in place), which it is about to emit."""
    if fusion.hotwords is not None:
        hyp.hotword_state = fusion.hotwords.next_state(hyp.hotword_state, token)


def close_beam(beam: Sequence[Hypothesis], fusion: Fusion, config: DecodeConfig) -> list[Hypothesis]:
    """A segment's final beam, best first, each hypothesis having given back the bonus of a
    hotword phrase it had not finished (copies; the beam is unchanged)."""
    if fusion.hotwords is None:
        return list(beam)
    closed = []
    for hyp in beam:
        copy = copy_hypothesis(hyp)
        copy.score -= fusion.hotwords.unmatched(hyp.hotword_state) / config.temperature
        copy.hotword_state = ROOT
        closed.append(copy)
    return sorted(closed, key=lambda hyp: -hyp.score)
