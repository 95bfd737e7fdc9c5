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
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from rnnt.config import BLANK_ID, UNK_ID, DecodeConfig
from rnnt.lm import NgramLm
from rnnt.rescoring import check_rescoring, encode_chunk, rescore_beam
from rnnt.state import LstmState, select_state, stack_states

GREEDY_LOOKAHEAD = 16  # encoder frames one greedy `join` scores ahead of the search


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


def initial_hypothesis(runtime: Runtime) -> Hypothesis:
    """The empty hypothesis: the predictor has seen only the start (blank) token."""
    state = runtime.init_predictor_state(1)
    out, state = runtime.predict(np.array([BLANK_ID], dtype=np.int64), state)
    return Hypothesis([], [], 0.0, out[0], state)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _logits(
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


def _log_probs(
    runtime: Runtime, encoder_out: np.ndarray, predictor_out: np.ndarray, config: DecodeConfig
) -> np.ndarray:
    """(N, J) and (N, J) -> (N, V) log-probabilities of `_logits`."""
    return log_softmax(_logits(runtime, encoder_out, predictor_out, config))


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
    out = [_copy(h) for h in hyps]
    frame = [0] * len(out)  # next frame of each stream to score
    on_frame = [0] * len(out)  # tokens already emitted on that frame
    active = [b for b in range(len(out)) if lengths[b] > 0]
    while active:
        spans = [min(lengths[b] - frame[b], GREEDY_LOOKAHEAD) for b in active]
        logits = _logits(runtime, *_lookahead_rows(encoder_out, out, frame, active, spans), config)
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
                _advance_frame(out[b])
                frame[b] += 1
                on_frame[b] = 0
            start += span
        # Normalised only on the rows the search took: the frames after a token are scored
        # again against the new predictor output (the softmax over V is most of a call's cost).
        chosen = log_softmax(logits[scored])[np.arange(len(scored)), [best[row] for row in scored]]
        for b, log_prob in zip(owners, chosen.tolist(), strict=True):
            out[b].score += log_prob
        _extend(runtime, [out[b] for b in emitters], tokens)
        for b in emitters:
            on_frame[b] += 1
            if on_frame[b] == config.max_symbols_per_frame:  # the frame's last token: move on
                _advance_frame(out[b])
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


def beam_search(
    runtime: Runtime,
    encoder_out: np.ndarray,
    lengths: Sequence[int],
    beams: Sequence[Sequence[Hypothesis]],
    config: DecodeConfig,
    lm: NgramLm | None = None,
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
    """
    out = [list(beam) for beam in beams]
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
            log_probs = _beam_log_probs(
                runtime, encoder_out[streams, t], [live[b] for b in streams], config, lm
            )
            extensions: list[tuple[Hypothesis, int]] = []
            for b, logp in zip(streams, log_probs, strict=True):
                survivors = _beam_round(live[b], logp, config.beam_size, finished[b], symbol == last_round)
                live[b] = [hyp for hyp, _ in survivors]  # their tokens are appended by `_extend`
                extensions += survivors
            _extend(runtime, [hyp for hyp, _ in extensions], [token for _, token in extensions])
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
    _extend(runtime, [hyp for hyp, _ in pending], [token for _, token in pending])
    for b in finished:
        for hyp in out[b]:
            _advance_frame(hyp)


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
    lm: NgramLm | None,
) -> list[np.ndarray]:
    """One frame (S, J) of S streams -> each stream's (N, V) log-probs, in one `join`.

    With `lm`, shallow fusion: each token's log-prob gains `lm_weight` times the LM's given
    the hypothesis's tokens, plus `lm_token_bonus` (which offsets the LM's cost per token,
    without which the fused search prefers deletions); blank's is the transducer's alone.
    """
    hyps = [hyp for beam in beams for hyp in beam]
    sizes = [len(beam) for beam in beams]
    pred = np.stack([hyp.predictor_out for hyp in hyps])
    logp = _log_probs(runtime, np.repeat(frames, sizes, axis=0), pred, config)
    if lm is not None:
        fused = (
            config.lm_weight * np.stack([lm.log_probs(hyp.tokens) for hyp in hyps]) + config.lm_token_bonus
        )
        fused[:, BLANK_ID] = 0.0
        logp += fused
    return np.split(logp, np.cumsum(sizes)[:-1])


def _beam_round(
    live: Sequence[Hypothesis],
    logp: np.ndarray,
    beam_size: int,
    finished: dict[tuple[int, ...], _Finished],
    last: bool,
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
        if last:
            _finish(finished, hyp, token)
        else:
            survivors.append((hyp, token))
    return survivors


def _rescored(hyp: Hypothesis, score: float) -> Hypothesis:
    copy = _copy(hyp)
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


def decode_features(
    runtime: Runtime, features: Sequence[np.ndarray], config: DecodeConfig, lm: NgramLm | None = None
) -> list[Hypothesis]:
    """Offline search over whole utterances' features (each (T, D)), batched; the best each.

    With `config.ctc_rescore_weight`, the best after re-ranking each final beam with the CTC
    head (`rnnt.rescoring`).
    """
    check_rescoring(runtime, config)
    padded, lengths = _padded(runtime, features)
    state = runtime.init_encoder_state(len(features))
    encoder_out, ctc_log_probs, _ = encode_chunk(runtime, padded, state, config.ctc_rescore_weight > 0)
    start = [initial_hypothesis(runtime)]
    beams = search(runtime, encoder_out, lengths, [start] * len(features), config, lm)
    if ctc_log_probs is None:
        return [beam[0] for beam in beams]
    return [
        rescore_beam(beam, ctc_log_probs[i, :length], config.ctc_rescore_weight)[0]
        for i, (beam, length) in enumerate(zip(beams, lengths, strict=True))
    ]


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
    lm: NgramLm | None = None,
) -> list[list[Hypothesis]]:
    """Continue each stream's beam over its next frames: greedy for beam_size 1, else beam.

    Greedy search continues the best hypothesis of each beam and returns one-element beams.
    An `lm` is fused into beam search (`_beam_log_probs`); greedy search takes none.
    """
    if config.beam_size < 1:
        raise ValueError(f"beam_size must be at least 1, got {config.beam_size}")
    if config.max_symbols_per_frame < 1:
        raise ValueError(f"max_symbols_per_frame must be at least 1, got {config.max_symbols_per_frame}")
    if lm is not None and config.beam_size == 1:
        raise ValueError("an LM needs beam search: set --beam_size above 1")
    if config.beam_size > 1:
        return beam_search(runtime, encoder_out, lengths, beams, config, lm)
    best = greedy_search(runtime, encoder_out, lengths, [beam[0] for beam in beams], config)
    return [[hyp] for hyp in best]
