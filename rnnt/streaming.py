"""Live captions from audio streams: chunked encoder, resumable search, endpointing.

A `StreamingRecognizer` turns one stream's samples, fed in pieces of any size, into
`CaptionEvent`s. Without endpointing its final text equals offline decoding of the whole
recording: `StreamingFeatures` computes exactly the offline frames, the encoder runs on
chunks of whole encoder frames with its LSTM state carried, and the search resumes its
beam.

Endpointing (sherpa-onnx's three rules, see `StreamConfig`) cuts the stream into caption
segments. Design choices:
- The rules are checked after every encoder frame whatever the chunking: each search call
  stops at the earliest frame where a rule could fire (`frames_to_endpoint`), so segments
  do not depend on `chunk_ms` or on how the audio is sliced.
- At an endpoint only the hypothesis restarts (new segment, empty predictor context). The
  encoder state is kept: the audio context continues, the encoder output stays that of
  the whole recording, and the frames after the endpoint in the same chunk go to the new
  segment, so no audio is dropped or decoded twice.
- A segment closed without text (rule 1, or only silence) emits no event and takes no
  segment index; the next segment starts where it ended.
- With CTC rescoring (`DecodeConfig.ctc_rescore_weight`) the recogniser keeps the CTC head's
  log-probabilities of the open segment's frames and re-ranks its beam when the segment
  closes, so a final may differ from the segment's last partial (which shows the search's
  best so far). Without endpointing the segment is the whole stream: V floats a frame.

All state is explicit (feature buffer, encoder `LstmState`, beam), so streams of one
runtime can share encoder calls: `decode_chunks` stacks their states into one batch.
Shapes: T model frames, T' encoder frames, D features, E encoder width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rnnt.config import DecodeConfig, FeatureConfig, StreamConfig
from rnnt.decoding import search
from rnnt.features import StreamingFeatures
from rnnt.fusion import NO_FUSION, Fusion, check_fusion, close_beam
from rnnt.hypothesis import Hypothesis, initial_hypothesis
from rnnt.rescoring import check_rescoring, encode_chunk, rescore_beam
from rnnt.runtimes import LoadedModel
from rnnt.state import select_state, stack_states

PARTIAL = "partial"  # the current segment's text so far; may still change
FINAL = "final"  # a closed segment's text; never changes
NO_ENDPOINT = 1 << 30  # frames to the next endpoint when no rule is on
TIME_DECIMALS = 3  # seconds are reported to the millisecond


@dataclass(frozen=True)
class TimedToken:
    piece: str  # tokenizer piece ("▁" starts a word)
    start_s: float  # stream time at which the encoder frame that emitted it starts, s


@dataclass(frozen=True)
class CaptionEvent:
    """A caption update: the text of one segment, partial or final."""

    kind: str  # PARTIAL or FINAL
    text: str
    tokens: tuple[TimedToken, ...]
    start_s: float  # segment start, stream time in seconds
    end_s: float  # end of the audio decoded into this segment, s
    segment: int  # index of the segment in the stream (counts segments with text)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: times rounded to the millisecond."""
        return {
            "kind": self.kind,
            "segment": self.segment,
            "text": self.text,
            "start": round(self.start_s, TIME_DECIMALS),
            "end": round(self.end_s, TIME_DECIMALS),
            "tokens": [{"token": t.piece, "start": round(t.start_s, TIME_DECIMALS)} for t in self.tokens],
        }


@dataclass(frozen=True)
class EndpointFrames:
    """The endpoint rules in encoder frames; 0 turns a rule off."""

    silence: int  # rule 1: blank frames with no text
    trailing_silence: int  # rule 2: blank frames after the last token
    max_segment: int  # rule 3: frames in the segment

    @classmethod
    def from_config(cls, config: StreamConfig, frame_s: float) -> EndpointFrames:
        if not config.endpointing:
            return cls(0, 0, 0)
        seconds = (
            config.endpoint_silence_s,
            config.endpoint_trailing_silence_s,
            config.endpoint_max_segment_s,
        )
        # Rounding first keeps 1.2 s / 0.06 s at 20 frames despite float error.
        return cls(*(math.ceil(round(s / frame_s, 6)) for s in seconds))


def endpoint_rule(hyp: Hypothesis, rules: EndpointFrames) -> int:
    """The first rule (1-3) that the segment decoded so far as `hyp` meets, else 0."""
    if rules.silence and not hyp.tokens and hyp.trailing_blanks >= rules.silence:
        return 1
    if rules.trailing_silence and hyp.tokens and hyp.trailing_blanks >= rules.trailing_silence:
        return 2
    if rules.max_segment and hyp.num_frames >= rules.max_segment:
        return 3
    return 0


def frames_to_endpoint(beam: Sequence[Hypothesis], rules: EndpointFrames) -> int:
    """Frames the search may run before any rule could fire: a lower bound, at least 1.

    It holds for whatever hypothesis the beam becomes: trailing blanks grow by at most one
    a frame, and a hypothesis without text must emit a token before rule 2 can apply.
    """
    bounds = [NO_ENDPOINT]
    for hyp in beam:
        if rules.max_segment:
            bounds.append(rules.max_segment - hyp.num_frames)
        if rules.silence and not hyp.tokens:
            bounds.append(rules.silence - hyp.trailing_blanks)
        if rules.trailing_silence:
            bounds.append(rules.trailing_silence - (hyp.trailing_blanks if hyp.tokens else 0))
    return max(1, min(bounds))


def chunk_frames(config: StreamConfig, features: FeatureConfig, time_reduction: int) -> int:
    """Model frames per encoder call: `chunk_ms` in whole encoder frames, at least one."""
    encoder_frames = round(config.chunk_ms / (features.frame_ms * time_reduction))
    return max(1, encoder_frames) * time_reduction


class StreamingRecognizer:
    """Captions for one audio stream: `accept` samples as they come, then `finish`."""

    def __init__(
        self,
        model: LoadedModel,
        config: StreamConfig,
        decode: DecodeConfig | None = None,
        fusion: Fusion = NO_FUSION,
    ):
        self.model = model
        self.config = config
        self.runtime = model.runtime
        self.decode = model.decode if decode is None else decode
        # LM and hotwords, fused into beam search; a segment's context starts afresh at its endpoint
        self.fusion = fusion
        check_rescoring(self.runtime, self.decode)
        check_fusion(fusion, self.decode)
        self.rescoring = self.decode.ctc_rescore_weight > 0
        reduction = self.runtime.time_reduction
        self.chunk_frames = chunk_frames(config, model.features, reduction)
        self.frame_s = model.features.encoder_frame_s(reduction)
        self.rules = EndpointFrames.from_config(config, self.frame_s)
        self._start = initial_hypothesis(self.runtime)
        self.reset()

    def reset(self) -> None:
        """Forget the stream: the next sample starts a new one at time 0."""
        self.features = StreamingFeatures(self.model.features)
        self.frames = np.zeros((0, self.model.features.feature_dim), dtype=np.float32)  # (T, D) not encoded
        self.encoder_state = self.runtime.init_encoder_state(1)
        self.beam = [self._start]  # the current segment's hypotheses, best first
        self.segment = 0  # index of the current segment
        self.segment_start = 0  # encoder frames before the current segment
        self._shown = ""  # the current segment's text in its last event
        self._shown_tokens: list[int] = []  # and its tokens (a chunk without new ones skips decoding)
        self._segment_ctc: list[np.ndarray] = []  # with rescoring: (T', V) CTC log-probs of the segment
        self.heard = False  # samples have come since the last reset

    def set_fusion(self, fusion: Fusion) -> None:
        """Search with `fusion` (LM, hotwords) from now on: before the stream's first samples
        (ValueError after them), so that every hypothesis is searched with it from the start."""
        if self.heard:
            raise ValueError("a stream's fusion can only be set before its first samples")
        check_fusion(fusion, self.decode)
        self.fusion = fusion

    def accept(self, samples: np.ndarray) -> list[CaptionEvent]:
        """Mono samples (S,) at the model's sample rate -> the events they cause."""
        return decode_chunks([self], [samples])[0]

    def finish(self) -> list[CaptionEvent]:
        """End of stream: decode the buffered frames, close the segment, then `reset`.

        A remainder shorter than one encoder frame is dropped, as offline.
        """
        usable = len(self.frames) - len(self.frames) % self.runtime.time_reduction
        events = []
        if usable:
            encoder_out, ctc_log_probs, self.encoder_state = encode_chunk(
                self.runtime, self.frames[None, :usable], self.encoder_state, self.rescoring
            )
            events = self._decode(encoder_out[0], None if ctc_log_probs is None else ctc_log_probs[0])
        events += self._close_segment()
        self.reset()
        return events

    def text(self) -> str:
        """The current segment's best text."""
        return self.model.tokenizer.decode(self.beam[0].tokens)

    def _buffer(self, samples: np.ndarray) -> None:
        if samples.ndim != 1:
            raise ValueError(f"expected mono samples of shape (S,), got {samples.shape}")
        self.heard = True
        self.frames = np.concatenate([self.frames, self.features.accept(samples)])

    def _pop_chunk(self) -> np.ndarray:
        chunk, self.frames = self.frames[: self.chunk_frames], self.frames[self.chunk_frames :]
        return chunk

    def _decode(self, encoder_out: np.ndarray, ctc_log_probs: np.ndarray | None = None) -> list[CaptionEvent]:
        """Search (T', J) encoder frames, closing a segment at each endpoint; with rescoring,
        `ctc_log_probs` (T', V) are the same frames' CTC log-probabilities."""
        return search_streams([self], [encoder_out], [ctc_log_probs])[0]

    def _partial(self) -> list[CaptionEvent]:
        """A partial event if the segment's text changed since its last event."""
        if self.beam[0].tokens == self._shown_tokens:
            return []
        self._shown_tokens = list(self.beam[0].tokens)
        text = self.text()
        if text == self._shown:
            return []
        self._shown = text
        return [self._event(PARTIAL)]

    def _close_segment(self) -> list[CaptionEvent]:
        """The final event (if there is text), then a new segment from here."""
        self.beam = close_beam(self.beam, self.fusion, self.decode)
        if self._segment_ctc:
            frames = np.concatenate(self._segment_ctc)
            self.beam = rescore_beam(self.beam, [frames], self.decode.ctc_rescore_weight)
            self._segment_ctc = []
        events = [self._event(FINAL)] if self.text() else []
        self.segment += len(events)
        self.segment_start += self.beam[0].num_frames
        self.beam = [self._start]
        self._shown = ""
        self._shown_tokens = []
        return events

    def _event(self, kind: str) -> CaptionEvent:
        best = self.beam[0]
        pieces = [self.model.tokenizer.piece(token) for token in best.tokens]
        times = [(self.segment_start + frame) * self.frame_s for frame in best.frames]
        return CaptionEvent(
            kind,
            self.text(),
            tuple(TimedToken(p, t) for p, t in zip(pieces, times, strict=True)),
            self.segment_start * self.frame_s,
            (self.segment_start + best.num_frames) * self.frame_s,
            self.segment,
        )


def decode_chunks(
    recognizers: Sequence[StreamingRecognizer], chunks: Sequence[np.ndarray], share_search: bool = True
) -> list[list[CaptionEvent]]:
    """`accept` `chunks[i]` into `recognizers[i]`, batching their encoder and search calls.

    The streams must share one runtime and chunk size. Each round stacks the encoder
    states of the streams with a whole chunk buffered and runs the encoder once for all;
    then streams with the same decode config share search calls (`search_streams`), each
    with its own fusion (LM, hotwords), unless `share_search` is off (for benchmarks).
    """
    if len({id(r.runtime) for r in recognizers}) > 1 or len({r.chunk_frames for r in recognizers}) > 1:
        raise ValueError("batched streams must share one runtime and one chunk size")
    for recognizer, samples in zip(recognizers, chunks, strict=True):
        recognizer._buffer(samples)
    events: list[list[CaptionEvent]] = [[] for _ in recognizers]
    while ready := [i for i, r in enumerate(recognizers) if len(r.frames) >= r.chunk_frames]:
        batch = [recognizers[i] for i in ready]
        features = np.stack([r._pop_chunk() for r in batch])
        state = stack_states([r.encoder_state for r in batch])
        rescoring = any(r.rescoring for r in batch)
        encoder_out, ctc_log_probs, state = encode_chunk(batch[0].runtime, features, state, rescoring)
        ctc_rows = []
        for row, recognizer in enumerate(batch):
            recognizer.encoder_state = select_state(state, [row])
            ctc_rows.append(
                ctc_log_probs[row] if ctc_log_probs is not None and recognizer.rescoring else None
            )
        groups = _search_groups(batch) if share_search else [[j] for j in range(len(batch))]
        for group in groups:
            found = search_streams(
                [batch[j] for j in group], [encoder_out[j] for j in group], [ctc_rows[j] for j in group]
            )
            for j, stream_events in zip(group, found, strict=True):
                events[ready[j]] += stream_events + batch[j]._partial()
    return events


def _search_groups(recognizers: Sequence[StreamingRecognizer]) -> list[list[int]]:
    """Indices of the recognisers that can share search calls: the same decode config."""
    groups: dict[DecodeConfig, list[int]] = {}
    for i, recognizer in enumerate(recognizers):
        groups.setdefault(recognizer.decode, []).append(i)
    return list(groups.values())


def search_streams(
    recognizers: Sequence[StreamingRecognizer],
    encoder_outs: Sequence[np.ndarray],
    ctc_log_probs: Sequence[np.ndarray | None],
) -> list[list[CaptionEvent]]:
    """Search each stream's new (T'_i, J) encoder frames, closing its segments at endpoints.

    One `search` call serves every stream with frames left, up to each one's next possible
    endpoint (`frames_to_endpoint`), so the streams share joint and predictor calls, each
    stream searched with its own fusion. The recognisers must share a runtime and decode
    config. `ctc_log_probs[i]` (T'_i, V): stream i's CTC log-probabilities, with rescoring.
    """
    first = recognizers[0]
    events: list[list[CaptionEvent]] = [[] for _ in recognizers]
    start = [0] * len(recognizers)
    while active := [i for i, frames in enumerate(encoder_outs) if start[i] < len(frames)]:
        stop = {
            i: min(
                len(encoder_outs[i]), start[i] + frames_to_endpoint(recognizers[i].beam, recognizers[i].rules)
            )
            for i in active
        }
        lengths = [stop[i] - start[i] for i in active]
        frames = np.zeros((len(active), max(lengths), encoder_outs[active[0]].shape[1]), dtype=np.float32)
        for row, i in enumerate(active):
            frames[row, : lengths[row]] = encoder_outs[i][start[i] : stop[i]]
        beams = search(
            first.runtime,
            frames,
            lengths,
            [recognizers[i].beam for i in active],
            first.decode,
            [recognizers[i].fusion for i in active],
        )
        for i, beam in zip(active, beams, strict=True):
            recognizer = recognizers[i]
            recognizer.beam = beam
            ctc = ctc_log_probs[i]
            if ctc is not None:
                recognizer._segment_ctc.append(ctc[start[i] : stop[i]])
            if endpoint_rule(beam[0], recognizer.rules):
                events[i] += recognizer._close_segment()
            start[i] = stop[i]
    return events
