"""Batched modified beam search over any runtime, with optional LM fusion and hotwords.

Resumable as `rnnt.decoding.search` is: pass back the beams a call returned. Shapes: S
streams, T' encoder frames, J joint width, V vocab, N hypotheses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rnnt.config import BLANK_ID, DecodeConfig
from rnnt.fusion import NO_FUSION, Fusion, add_fusion, advance_fusion, per_stream
from rnnt.hypothesis import Hypothesis, Runtime, advance_frame, copy_hypothesis, extend, joint_log_probs


def beam_search(
    runtime: Runtime,
    encoder_out: np.ndarray,
    lengths: Sequence[int],
    beams: Sequence[Sequence[Hypothesis]],
    config: DecodeConfig,
    fusion: Fusion | Sequence[Fusion] = NO_FUSION,
) -> list[list[Hypothesis]]:
    """Batched beam search, up to `config.max_symbols_per_frame` tokens per frame.

    Each stream keeps its `config.beam_size` best hypotheses; paths that reach the same
    tokens are merged by log-adding their scores. A frame runs in rounds: every hypothesis
    still on the frame either takes blank (it is done with the frame) or emits a token and
    stays for the next round, as the transducer lattice that the loss trains does. A token
    extension survives only if it beats the beam's worst finished score (later rounds only
    lower it). The last allowed token leaves the frame without a blank, as greedy search's
    does, so that `max_symbols_per_frame=1` is k2/icefall's modified beam search. 120 ms
    encoder frames need several tokens per frame in fast speech; the one-token limit cost
    WER on them. Per round, one `join` scores every live hypothesis of every stream and one
    `predict` runs for the surviving token prefixes.
    `encoder_out` (B, T', J) holds B streams' next frames, `lengths[b]` of them valid.
    `fusion`: one for every stream, or one per stream (each stream its own hotwords).
    """
    out = [list(beam) for beam in beams]
    fusions = per_stream(fusion, len(out))
    last_round = config.max_symbols_per_frame - 1
    for t in range(encoder_out.shape[1]):
        active = [b for b in range(len(out)) if t < lengths[b]]
        if not active:
            break
        finished: dict[int, dict[tuple[int, ...], _Finished]] = {b: {} for b in active}
        live = {b: out[b] for b in active}
        for symbol in range(config.max_symbols_per_frame):
            streams = [b for b in active if live[b]]
            if not streams:
                break
            stream_fusions = [fusions[b] for b in streams]
            log_probs = _beam_log_probs(
                runtime, encoder_out[streams, t], [live[b] for b in streams], config, stream_fusions
            )
            extensions: list[tuple[Hypothesis, int]] = []
            for b, logp in zip(streams, log_probs, strict=True):
                last = symbol == last_round
                survivors = _beam_round(live[b], logp, config.beam_size, finished[b], last, fusions[b])
                live[b] = [hyp for hyp, _ in survivors]  # their tokens are appended by `extend`
                extensions += survivors
            extend(runtime, [hyp for hyp, _ in extensions], [token for _, token in extensions])
        _close_frame(runtime, out, finished, config.beam_size)
    return out


def _close_frame(
    runtime: Runtime,
    out: list[list[Hypothesis]],
    finished: dict[int, dict[tuple[int, ...], _Finished]],
    beam_size: int,
) -> None:
    """Each stream's beam becomes its `beam_size` best hypotheses done with the frame; their
    pending tokens are appended (one predictor call for all) and they move past the frame."""
    pending: list[tuple[Hypothesis, int]] = []
    for b, done in finished.items():
        best = sorted(done.values(), key=lambda f: -f.hyp.score)[:beam_size]
        out[b] = [f.hyp for f in best]
        pending += [(f.hyp, f.token) for f in best if f.token is not None]
    extend(runtime, [hyp for hyp, _ in pending], [token for _, token in pending])
    for b in finished:
        for hyp in out[b]:
            advance_frame(hyp)


@dataclass
class _Finished:
    """A hypothesis done with the current frame; `token` still to be appended if not None."""

    hyp: Hypothesis
    token: int | None = None


def _beam_log_probs(
    runtime: Runtime,
    frames: np.ndarray,
    beams: Sequence[Sequence[Hypothesis]],
    config: DecodeConfig,
    fusions: Sequence[Fusion],
) -> list[np.ndarray]:
    """One frame (S, J) of S streams -> each stream's (N, V) scores, in one `join`: the
    transducer's log-probs plus the LM's and the hotwords' of the stream's `fusions[s]`."""
    hyps = [hyp for beam in beams for hyp in beam]
    sizes = [len(beam) for beam in beams]
    pred = np.stack([hyp.predictor_out for hyp in hyps])
    logp = joint_log_probs(runtime, np.repeat(frames, sizes, axis=0), pred, config)
    per_stream_logp = np.split(logp, np.cumsum(sizes)[:-1])
    for beam, stream_logp, fusion in zip(beams, per_stream_logp, fusions, strict=True):
        add_fusion(stream_logp, beam, fusion, config)  # in place: the rows are views of `logp`
    return per_stream_logp


def _beam_round(
    live: Sequence[Hypothesis],
    logp: np.ndarray,
    beam_size: int,
    finished: dict[tuple[int, ...], _Finished],
    last: bool,
    fusion: Fusion,
) -> list[tuple[Hypothesis, int]]:
    """One round of one stream's frame; `logp` (N, V) scores it for each live hypothesis.

    Blank extensions go to `finished`. Returns the surviving token extensions, best first,
    as (hypothesis without its token, token) for one batched predictor call; on the `last`
    round they go to `finished` instead (their token appended once the beam is chosen).
    """
    scores = np.array([hyp.score for hyp in live])[:, None] + logp
    for hyp, score in zip(live, scores[:, BLANK_ID], strict=True):
        _finish(finished, _rescored(hyp, score), None)
    scores[:, BLANK_ID] = -np.inf
    done = sorted((f.hyp.score for f in finished.values()), reverse=True)
    floor = done[beam_size - 1] if len(done) >= beam_size else -np.inf
    flat = scores.ravel()
    survivors = []
    for index in _top_k(flat, beam_size):
        if flat[index] <= floor:
            break
        row, token = divmod(int(index), logp.shape[1])
        hyp = _rescored(live[row], float(flat[index]))
        advance_fusion(hyp, token, fusion)
        if last:
            _finish(finished, hyp, token)
        else:
            survivors.append((hyp, token))
    return survivors


def _rescored(hyp: Hypothesis, score: float) -> Hypothesis:
    copy = copy_hypothesis(hyp)
    copy.score = float(score)
    return copy


def _finish(finished: dict[tuple[int, ...], _Finished], hyp: Hypothesis, token: int | None) -> None:
    """Add a path done with the frame, log-adding it into an equal-token one if present.

    The merged hypothesis keeps the likelier path's timestamps and predictor state.
    """
    key = (*hyp.tokens, token) if token is not None else tuple(hyp.tokens)
    entry = _Finished(hyp, token)
    if key in finished:
        other = finished[key]
        total = float(np.logaddexp(other.hyp.score, hyp.score))
        if other.hyp.score >= hyp.score:
            entry = other
        entry.hyp.score = total
    finished[key] = entry


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the (at most) k highest finite scores, highest first, ties by index."""
    chosen = np.argpartition(-scores, k - 1)[:k] if len(scores) > k else np.arange(len(scores))
    ordered = chosen[np.lexsort((chosen, -scores[chosen]))]
    return ordered[np.isfinite(scores[ordered])]
