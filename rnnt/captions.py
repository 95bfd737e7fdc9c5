"""Subtitle files from final caption events: SubRip (SRT) and WebVTT.

A final segment becomes one or more cues of at most `max_lines` lines of `max_chars`
characters (broadcast subtitling's 2 x 42), timed by its words' token timestamps: a cue
starts when its first word's first token was emitted and ends when the next cue starts, or
for a segment's last cue `LINGER_S` after its last word (bounded by the segment's end), so
that the trailing silence an endpoint waits for is not shown as speech. Cue times are whole
milliseconds (both formats' resolution), in order, each cue of positive length and ending at
or before the next starts; a cue too short to read is stretched to `MIN_CUE_S` where its
segment has room. The writer appends each final's cues and flushes, so a stream that drops
keeps every cue closed before it.
No torch, no numpy: the onnx and openvino backends' deployment uses it as is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import TextIO

from rnnt.streaming import FINAL, CaptionEvent, TimedToken

WORD_START = "▁"  # sentencepiece's mark of a piece that starts a word
LINGER_S = 0.6  # a segment's last cue stays this long after its last word starts, s
MIN_CUE_S = 0.2  # a cue lasts this long, or an equal share of a segment too short for that, s
MS_PER_S = 1000  # cue times are whole milliseconds, the resolution of SRT and WebVTT
SUBTITLE_FORMATS = ("srt", "vtt")


@dataclass(frozen=True)
class Word:
    text: str
    start_s: float  # stream time of its first token, s


@dataclass(frozen=True)
class Cue:
    """One subtitle: `lines` shown from `start_s` to `end_s` (stream time, s)."""

    start_s: float
    end_s: float
    lines: tuple[str, ...]


def words(tokens: Sequence[TimedToken]) -> list[Word]:
    """Tokenizer pieces -> words, each at the time of its first piece."""
    out: list[Word] = []
    for token in tokens:
        text = token.piece.replace(WORD_START, "")
        if token.piece.startswith(WORD_START) or not out:  # a bare mark's word is the next piece
            out.append(Word(text, token.start_s))
        else:
            out[-1] = Word(out[-1].text + text, out[-1].start_s)
    return [w for w in out if w.text]


def wrap(items: Sequence[Word], max_chars: int) -> list[list[Word]]:
    """Greedy line filling: each line as many words as fit in `max_chars` (a longer word
    gets a line of its own)."""
    lines: list[list[Word]] = []
    width = 0
    for word in items:
        if lines and width + 1 + len(word.text) <= max_chars:
            lines[-1].append(word)
            width += 1 + len(word.text)
        else:
            lines.append([word])
            width = len(word.text)
    return lines


def segment_cues(
    event: CaptionEvent, max_chars: int = 42, max_lines: int = 2, not_before_s: float = 0.0
) -> list[Cue]:
    """A final event -> its cues, back to back within the segment, none starting before
    `not_before_s` (the previous cue's end). Text without timed tokens gets one cue over the
    whole segment."""
    if max_chars < 1 or max_lines < 1:
        raise ValueError(f"max_chars and max_lines must be positive, got {max_chars} and {max_lines}")
    timed = words(event.tokens)
    if not timed and not event.text:
        return []
    texts: list[tuple[str, ...]] = [(event.text,)]
    wanted_s = [event.start_s, event.end_s]
    if timed:
        lines = wrap(timed, max_chars)
        groups = [lines[i : i + max_lines] for i in range(0, len(lines), max_lines)]
        texts = [_text(group) for group in groups]
        last_end_s = min(event.end_s, timed[-1].start_s + LINGER_S)
        wanted_s = [group[0][0].start_s for group in groups] + [last_end_s]
    bounds = _fit(wanted_s, max(event.start_s, not_before_s), event.end_s)
    return [Cue(start, end, text) for text, (start, end) in zip(texts, pairwise(bounds), strict=True)]


def _fit(wanted_s: Sequence[float], start_s: float, end_s: float) -> list[float]:
    """Cue boundaries (n cues, n + 1 times) as near `wanted_s` as the rules allow: whole
    milliseconds, each cue at least MIN_CUE_S long, or an equal share of [start_s, end_s] if
    that is too short (at least 1 ms), all within it where it has room, else from start_s on."""
    low, high = _ms(start_s), _ms(end_s)
    gap = max(1, min(_ms(MIN_CUE_S), (high - low) // (len(wanted_s) - 1)))
    bounds: list[int] = []
    floor = low - gap
    for wanted in wanted_s:  # forward: in order, from `low`, `gap` apart
        floor = max(_ms(wanted), floor + gap)
        bounds.append(floor)
    ceiling = high
    for i in reversed(range(len(bounds))):  # backward: back under `high`, keeping the gaps
        bounds[i] = max(min(bounds[i], ceiling), low + i * gap)
        ceiling = bounds[i] - gap
    return [bound / MS_PER_S for bound in bounds]


def _ms(seconds: float) -> int:
    return round(seconds * MS_PER_S)


def _text(group: list[list[Word]]) -> tuple[str, ...]:
    return tuple(" ".join(w.text for w in line) for line in group)


def timestamp(seconds: float, decimal_mark: str) -> str:
    """HH:MM:SS,mmm (SRT's decimal comma) or HH:MM:SS.mmm (WebVTT's point)."""
    millis = max(0, _ms(seconds))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_mark}{millis:03d}"


class SubtitleWriter:
    """Writes the cues of final events to `out` as SRT or WebVTT, one flush per event.

    Cues cannot overlap, across segments too: each segment's cues start no earlier than the
    previous cue's end.
    """

    def __init__(self, out: TextIO, subtitle_format: str, max_chars: int = 42, max_lines: int = 2):
        if subtitle_format not in SUBTITLE_FORMATS:
            raise ValueError(
                f"unknown subtitle format {subtitle_format!r} (one of {', '.join(SUBTITLE_FORMATS)})"
            )
        self.out = out
        self.format = subtitle_format
        self.max_chars = max_chars
        self.max_lines = max_lines
        self.count = 0  # cues written
        self.end_s = 0.0  # where the last cue written ends, s
        if subtitle_format == "vtt":
            out.write("WEBVTT\n\n")
            out.flush()

    def write(self, event: CaptionEvent) -> None:
        """Take one event; only finals make cues (partials may still change)."""
        if event.kind != FINAL:
            return
        for cue in segment_cues(event, self.max_chars, self.max_lines, self.end_s):
            self.count += 1
            self.end_s = cue.end_s
            mark = "," if self.format == "srt" else "."
            index = f"{self.count}\n" if self.format == "srt" else ""
            times = f"{timestamp(cue.start_s, mark)} --> {timestamp(cue.end_s, mark)}"
            self.out.write(f"{index}{times}\n" + "\n".join(cue.lines) + "\n\n")
        self.out.flush()
