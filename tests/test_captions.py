"""SRT/WebVTT cues from final events: word timing, line wrapping, no overlap, file format."""

from __future__ import annotations

import io
import itertools
import re

import pytest

from rnnt.captions import LINGER_S, SubtitleWriter, segment_cues, timestamp, words
from rnnt.streaming import FINAL, PARTIAL, CaptionEvent, TimedToken

WORD_S = 0.25  # each word of a test event starts this long after the one before
SENTENCE = "the quick brown fox jumps over the lazy dog while the cat sleeps on a warm windowsill"


def event(text: str, start_s: float, kind: str = FINAL, segment: int = 0) -> CaptionEvent:
    """A final whose words are split into two pieces each ("▁wo", "rd"), one per step."""
    tokens = []
    time = start_s
    for word in text.split():
        half = max(1, len(word) // 2)
        for piece in ("▁" + word[:half], word[half:]):
            if piece:
                tokens.append(TimedToken(piece, time))
        time += WORD_S
    return CaptionEvent(kind, text, tuple(tokens), start_s, time + 1.5, segment)


def test_pieces_join_into_words_at_their_first_piece() -> None:
    tokens = [TimedToken("▁he", 0.1), TimedToken("llo", 0.2), TimedToken("▁", 0.5), TimedToken("world", 0.6)]
    assert [(w.text, w.start_s) for w in words(tokens)] == [("hello", 0.1), ("world", 0.5)]


@pytest.mark.parametrize(("max_chars", "max_lines"), [(42, 2), (16, 1), (10, 3)])
def test_cues_hold_the_text_in_order_within_the_limits(max_chars: int, max_lines: int) -> None:
    final = event(SENTENCE, start_s=3.0)
    cues = segment_cues(final, max_chars, max_lines)
    assert " ".join(" ".join(c.lines) for c in cues) == SENTENCE
    assert all(1 <= len(c.lines) <= max_lines for c in cues)
    assert all(len(line) <= max_chars for c in cues for line in c.lines)
    assert cues[0].start_s == 3.0
    for before, after in itertools.pairwise(cues):
        assert before.start_s < before.end_s == after.start_s  # back to back, no overlap
    last_word_s = final.tokens[-1].start_s
    assert cues[-1].end_s == pytest.approx(min(final.end_s, last_word_s + LINGER_S))


def test_a_word_longer_than_a_line_gets_its_own_line() -> None:
    cues = segment_cues(event("a extraordinarily b", 0.0), max_chars=8, max_lines=1)
    assert [c.lines for c in cues] == [("a",), ("extraordinarily",), ("b",)]


def test_timestamps_in_both_formats() -> None:
    assert timestamp(3661.5, ",") == "01:01:01,500"
    assert timestamp(0.0004, ".") == "00:00:00.000"
    assert timestamp(59.9996, ".") == "00:01:00.000"


def parse_srt(text: str) -> list[tuple[int, str, str, str]]:
    blocks = [b for b in text.strip().split("\n\n") if b]
    cues = []
    for block in blocks:
        index, times, *lines = block.split("\n")
        start, end = times.split(" --> ")
        cues.append((int(index), start, end, " ".join(lines)))
    return cues


def test_srt_numbers_cues_from_finals_only() -> None:
    out = io.StringIO()
    writer = SubtitleWriter(out, "srt", max_chars=20)
    writer.write(event("this will change", 0.0, kind=PARTIAL))
    writer.write(event("first segment of speech here", 0.0))
    writer.write(event("and a second one", 9.0, segment=1))
    cues = parse_srt(out.getvalue())
    assert [c[0] for c in cues] == list(range(1, len(cues) + 1)) and writer.count == len(cues)
    assert " ".join(c[3] for c in cues) == "first segment of speech here and a second one"
    stamp = re.compile(r"^\d\d:\d\d:\d\d,\d\d\d$")
    assert all(stamp.match(c[1]) and stamp.match(c[2]) for c in cues)
    assert [c[1] for c in cues][-1] == "00:00:09,000"


def test_vtt_has_its_header_and_decimal_points() -> None:
    out = io.StringIO()
    SubtitleWriter(out, "vtt").write(event("hello there", 1.25))
    text = out.getvalue()
    assert text.startswith("WEBVTT\n\n00:00:01.250 --> ")
    assert text.endswith("\nhello there\n\n")


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown subtitle format 'ass'"):
        SubtitleWriter(io.StringIO(), "ass")
