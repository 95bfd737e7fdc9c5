"""Subtitle files from final caption events: SubRip (SRT) and WebVTT.

A final segment becomes one or more cues of at most `max_lines` lines of `max_chars`
characters (broadcast subtitling's 2 x 42), timed by its words' token timestamps: a cue
starts when its first word's first token was emitted and ends when the next cue starts, or
for a segment's last cue `LINGER_S` after its last word (bounded by the segment's end), so
that the trailing silence an endpoint waits for is not shown as speech. The writer appends
each final's cues and flushes, so a stream that drops keeps every cue closed before it.
No torch, no numpy: the onnx and openvino backends' deployment uses it as is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

from rnnt.streaming import FINAL, CaptionEvent, TimedToken

WORD_START = "▁"  # sentencepiece's mark of a piece that starts a word
LINGER_S = 0.6  # a segment's last cue stays this long after its last word starts, s
MIN_CUE_S = 0.2  # no cue is shorter than this (where the next cue leaves room), s
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


def segment_cues(event: CaptionEvent, max_chars: int = 42, max_lines: int = 2) -> list[Cue]:
    """A final event -> its cues, in order. Text without timed tokens gets one cue over the
    whole segment."""
    if max_chars < 1 or max_lines < 1:
        raise ValueError(f"max_chars and max_lines must be positive, got {max_chars} and {max_lines}")
    timed = words(event.tokens)
    if not timed:
        return [Cue(event.start_s, event.end_s, (event.text,))] if event.text else []
    lines = wrap(timed, max_chars)
    groups = [lines[i : i + max_lines] for i in range(0, len(lines), max_lines)]
    starts = [group[0][0].start_s for group in groups]
    # Each cue ends where the next begins; the last lingers after its last word, within the
    # segment, and is at least MIN_CUE_S long.
    last_end = max(min(event.end_s, timed[-1].start_s + LINGER_S), starts[-1] + MIN_CUE_S)
    ends = [*starts[1:], last_end]
    return [Cue(start, end, _text(group)) for group, start, end in zip(groups, starts, ends, strict=True)]


def _text(group: list[list[Word]]) -> tuple[str, ...]:
    return tuple(" ".join(w.text for w in line) for line in group)


def timestamp(seconds: float, decimal_mark: str) -> str:
    """HH:MM:SS,mmm (SRT's decimal comma) or HH:MM:SS.mmm (WebVTT's point)."""
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_mark}{millis:03d}"


class SubtitleWriter:
    """Writes the cues of final events to `out` as SRT or WebVTT, one flush per event.

    Cues of successive segments cannot overlap: a segment starts where the previous one
    ended, and a cue ends within its segment.
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
        if subtitle_format == "vtt":
            out.write("WEBVTT\n\n")
            out.flush()

    def write(self, event: CaptionEvent) -> None:
        """Take one event; only finals make cues (partials may still change)."""
        if event.kind != FINAL:
            return
        for cue in segment_cues(event, self.max_chars, self.max_lines):
            self.count += 1
            mark = "," if self.format == "srt" else "."
            index = f"{self.count}\n" if self.format == "srt" else ""
            times = f"{timestamp(cue.start_s, mark)} --> {timestamp(cue.end_s, mark)}"
            self.out.write(f"{index}{times}\n" + "\n".join(cue.lines) + "\n\n")
        self.out.flush()
