"""Transducer search over any runtime (PyTorch, ONNX Runtime, OpenVINO), in numpy.

The search only calls the runtime's three networks, so one implementation serves
evaluation, streaming and every backend. It is resumable: pass back the beams a call
returned and the next chunk's encoder frames continue them. A beam is a stream's list of
hypotheses, best first (one hypothesis for greedy search).
Shapes: B streams, T' encoder frames, E encoder width, P predictor width, V vocab,
N hypotheses.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rnnt.beam import beam_search
from rnnt.config import BLANK_ID, DecodeConfig
from rnnt.fusion import NO_FUSION, Fusion, check_fusion, close_beam, per_stream
from rnnt.hypothesis import (
    Hypothesis,
    Runtime,
    advance_frame,
    copy_hypothesis,
    extend,
    initial_hypothesis,
    joint_logits,
    log_softmax,
)
from rnnt.rescoring import check_rescoring, encode_chunk, rescore_beam

GREEDY_LOOKAHEAD = 16  # encoder frames one greedy `join` scores ahead of the search


def greedy_search(
    runtime: Runtime,
    encoder_out: np.ndarray,
    lengths: Sequence[int],
    hyps: Sequence[Hypothesis],
    config: DecodeConfig,
) -> list[Hypothesis]:
    """Batched greedy search, at most `max_symbols_per_frame` tokens per frame.

    `encoder_out` (B, T', J) holds B streams' next frames, `lengths[b]` of them valid.
    While a stream emits blanks its predictor output does not change, so one `join` scores
    its next `GREEDY_LOOKAHEAD` frames against it and the search jumps to the first frame
    whose best class is a token. This gives the frame-by-frame search's decisions with about
    one `join` per emitted token instead of one per frame (most frames are blank).
    """
    out = [copy_hypothesis(h) for h in hyps]
    frame = [0] * len(out)  # next frame of each stream to score
    on_frame = [0] * len(out)  # tokens already emitted on that frame
    active = [b for b in range(len(out)) if lengths[b] > 0]
    while active:
        spans = [min(lengths[b] - frame[b], GREEDY_LOOKAHEAD) for b in active]
        logits = joint_logits(runtime, *_lookahead_rows(encoder_out, out, frame, active, spans), config)
        best = logits.argmax(axis=1).tolist()
        emitters, tokens, scored, owners = [], [], [], []
        start = 0
        for b, span in zip(active, spans, strict=True):
            for row in range(start, start + span):
                scored.append(row)
                owners.append(b)
                if best[row] != BLANK_ID:
                    emitters.append(b)
                    tokens.append(best[row])
                    break
                advance_frame(out[b])
                frame[b] += 1
                on_frame[b] = 0
            start += span
        # Normalised only on the rows the search took: the frames after a token are scored
        # again against the new predictor output (the softmax over V is most of a call's cost).
        chosen = log_softmax(logits[scored])[np.arange(len(scored)), [best[row] for row in scored]]
        for b, log_prob in zip(owners, chosen.tolist(), strict=True):
            out[b].score += log_prob
        extend(runtime, [out[b] for b in emitters], tokens)
        for b in emitters:
            on_frame[b] += 1
            if on_frame[b] == config.max_symbols_per_frame:  # the frame's last token: move on
                advance_frame(out[b])
                frame[b], on_frame[b] = frame[b] + 1, 0
        active = [b for b in active if frame[b] < lengths[b]]
    return out


def _lookahead_rows(
    encoder_out: np.ndarray, hyps: list[Hypothesis], frame: list[int], active: list[int], spans: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """(encoder rows, predictor rows), (sum(spans), J) each: `spans[i]` frames of stream
    `active[i]` from its next frame, each beside that stream's current predictor output."""
    if len(active) == 1:  # a live stream's every call: one slice and one copy
        b = active[0]
        enc = encoder_out[b, frame[b] : frame[b] + spans[0]]
        return enc, np.repeat(hyps[b].predictor_out[None], spans[0], axis=0)
    enc = np.concatenate(
        [encoder_out[b, frame[b] : frame[b] + n] for b, n in zip(active, spans, strict=True)]
    )
    return enc, np.repeat(np.stack([hyps[b].predictor_out for b in active]), spans, axis=0)


def decode_features(
    runtime: Runtime, features: Sequence[np.ndarray], config: DecodeConfig, fusion: Fusion = NO_FUSION
) -> list[Hypothesis]:
    """Offline search over whole utterances' features (each (T, D)), batched; the best each.

    With `config.ctc_rescore_weight`, the best after re-ranking each final beam with the CTC
    head (`rnnt.rescoring`).
    """
    return decode_views(runtime, [features], config, fusion)


def decode_views(
    runtime: Runtime,
    views: Sequence[Sequence[np.ndarray]],
    config: DecodeConfig,
    fusion: Fusion = NO_FUSION,
) -> list[Hypothesis]:
    """Offline search of the same utterances seen several ways, the best of each.

    `views[k][i]` is utterance i's features (T, D) in view k (evaluation's ensembles: the audio
    at one speed and VTLP warp each, `rnnt.evaluation.View`). Each view is searched alone, each
    utterance's final beams are pooled (a token sequence found more than once keeps its best
    score, the first of equals) and the highest score wins; with `config.ctc_rescore_weight`,
    the highest score + that weight x the sequence's CTC log-likelihood averaged over the views.
    One view: `decode_features`.
    """
    check_rescoring(runtime, config)
    searched = [_final_beams(runtime, features, config, fusion) for features in views]
    best = []
    for i in range(len(views[0])):
        pool: dict[tuple[int, ...], Hypothesis] = {}
        for beams, _ in searched:
            for hyp in beams[i]:
                key = tuple(hyp.tokens)
                if key not in pool or hyp.score > pool[key].score:
                    pool[key] = hyp
        candidates = list(pool.values())
        if config.ctc_rescore_weight > 0:
            log_probs = [view_log_probs[i] for _, view_log_probs in searched]
            best.append(rescore_beam(candidates, log_probs, config.ctc_rescore_weight)[0])
        else:
            best.append(max(candidates, key=lambda hyp: hyp.score))
    return best


def _final_beams(
    runtime: Runtime, features: Sequence[np.ndarray], config: DecodeConfig, fusion: Fusion
) -> tuple[list[list[Hypothesis]], list[np.ndarray]]:
    """Each utterance's closed final beam and, with `config.ctc_rescore_weight`, its CTC
    head's (T', V) log-probabilities (else no arrays)."""
    padded, lengths = _padded(runtime, features)
    state = runtime.init_encoder_state(len(features))
    encoder_out, ctc_log_probs, _ = encode_chunk(runtime, padded, state, config.ctc_rescore_weight > 0)
    start = [initial_hypothesis(runtime)]
    found = search(runtime, encoder_out, lengths, [start] * len(features), config, fusion)
    beams = [close_beam(beam, fusion, config) for beam in found]
    if ctc_log_probs is None:
        return beams, []
    return beams, [ctc_log_probs[i, :length] for i, length in enumerate(lengths)]


def encode_utterances(runtime: Runtime, features: Sequence[np.ndarray]) -> tuple[np.ndarray, list[int]]:
    """Whole utterances' features (each (T, D)) -> padded (B, T', J) and each one's T'."""
    padded, lengths = _padded(runtime, features)
    encoder_out, _ = runtime.encode(padded, runtime.init_encoder_state(len(features)))
    return encoder_out, lengths


def _padded(runtime: Runtime, features: Sequence[np.ndarray]) -> tuple[np.ndarray, list[int]]:
    """Features (each (T, D)) -> zero-padded (B, T, D) and each utterance's T'."""
    lengths = [len(f) for f in features]
    padded = np.zeros((len(features), max(lengths), features[0].shape[1]), dtype=np.float32)
    for i, f in enumerate(features):
        padded[i, : len(f)] = f
    return padded, [length // runtime.time_reduction for length in lengths]


def search(
    runtime: Runtime,
    encoder_out: np.ndarray,
    lengths: Sequence[int],
    beams: Sequence[Sequence[Hypothesis]],
    config: DecodeConfig,
    fusion: Fusion | Sequence[Fusion] = NO_FUSION,
) -> list[list[Hypothesis]]:
    """Continue each stream's beam over its next frames: greedy for beam_size 1, else beam.

    Greedy search continues the best hypothesis of each beam and returns one-element beams.
    A `fusion` (LM, hotwords; one for every stream or one per stream) needs beam search.
    """
    fusions = per_stream(fusion, len(beams))
    for stream_fusion in fusions:
        check_fusion(stream_fusion, config)
    if config.beam_size > 1:
        return beam_search(runtime, encoder_out, lengths, beams, config, fusions)
    best = greedy_search(runtime, encoder_out, lengths, [beam[0] for beam in beams], config)
    return [[hyp] for hyp in best]
