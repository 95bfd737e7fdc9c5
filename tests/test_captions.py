"""SRT/WebVTT cues from final events: word timing, line wrapping, no overlap, file format."""

from __future__ import annotations

import io
import itertools
import re

import pytest

from rnnt.captions import LINGER_S, MIN_CUE_S, Cue, SubtitleWriter, segment_cues, timestamp, words
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


def final_at(start_s: float, end_s: float, *timed_words: tuple[str, float]) -> CaptionEvent:
    """A final of one-piece words, each at the given stream time."""
    tokens = tuple(TimedToken("▁" + word, time) for word, time in timed_words)
    return CaptionEvent(FINAL, " ".join(word for word, _ in timed_words), tokens, start_s, end_s, 0)


def spans(cues: list[Cue]) -> list[tuple[float, float, str]]:
    return [(c.start_s, c.end_s, " ".join(c.lines)) for c in cues]


def test_a_segments_last_cue_ends_within_it_and_still_lasts_min_cue_s() -> None:
    """The audit's cue: the last word 0.16 s before the segment's end. The cue must not run
    past the end (where the next segment starts); it starts earlier to last MIN_CUE_S."""
    cues = segment_cues(final_at(66.0, 67.04, ("an", 66.0), ("example", 66.88)), max_chars=2, max_lines=1)
    assert spans(cues) == [(66.0, 66.84, "an"), (66.84, 67.04, "example")]
    assert cues[-1].end_s - cues[-1].start_s == pytest.approx(MIN_CUE_S)


def test_words_on_one_frame_get_cues_of_positive_length() -> None:
    cues = segment_cues(final_at(7.0, 8.0, ("to", 7.2), ("be", 7.2), ("or", 7.6)), max_chars=1, max_lines=1)
    assert spans(cues) == [(7.2, 7.4, "to"), (7.4, 7.6, "be"), (7.6, 8.0, "or")]


def test_a_segment_too_short_for_min_cue_s_is_shared_equally() -> None:
    cues = segment_cues(final_at(0.0, 0.3, ("a", 0.0), ("b", 0.05), ("c", 0.1)), max_chars=1, max_lines=1)
    assert spans(cues) == [(0.0, 0.1, "a"), (0.1, 0.2, "b"), (0.2, 0.3, "c")]


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


STREAMS = {
    "last word near the end": [
        final_at(0.0, 1.04, ("an", 0.0), ("example", 0.88)),
        final_at(1.04, 2.0, ("next", 1.04)),
    ],
    "0.64 s segments": [
        final_at(0.0, 0.64, ("one", 0.0), ("two", 0.16), ("three", 0.32), ("four", 0.48)),
        final_at(0.64, 1.28, ("five", 0.64), ("six", 1.2)),
    ],
    "no room at all": [
        final_at(5.0, 5.002, ("to", 5.0), ("be", 5.0), ("or", 5.0)),
        final_at(5.002, 5.003, ("not", 5.002)),
    ],
    "text without tokens": [
        CaptionEvent(FINAL, "untimed", (), 3.0, 3.0, 0),
        final_at(3.0, 3.5, ("timed", 3.0)),
    ],
    "a segment starting before the last cue ends": [
        final_at(0.0, 1.0, ("early", 0.9)),
        final_at(0.5, 1.2, ("late", 0.5)),
    ],
}


def milliseconds(stamp: str) -> int:
    hours, minutes, seconds = stamp.replace(",", ".").split(":")
    return round((int(hours) * 3600 + int(minutes) * 60 + float(seconds)) * 1000)


@pytest.mark.parametrize("name", STREAMS)
def test_written_cues_are_in_order_of_positive_length_and_never_overlap(name: str) -> None:
    out = io.StringIO()
    writer = SubtitleWriter(out, "srt", max_chars=1, max_lines=1)
    for final in STREAMS[name]:
        writer.write(final)
    cues = parse_srt(out.getvalue())
    assert " ".join(c[3] for c in cues) == " ".join(final.text for final in STREAMS[name])
    times = [(milliseconds(c[1]), milliseconds(c[2])) for c in cues]
    assert all(start < end for start, end in times), times
    assert all(before[1] <= after[0] for before, after in itertools.pairwise(times)), times


def test_vtt_has_its_header_and_decimal_points() -> None:
    out = io.StringIO()
    SubtitleWriter(out, "vtt").write(event("hello there", 1.25))
    text = out.getvalue()
    assert text.startswith("WEBVTT\n\n00:00:01.250 --> ")
    assert text.endswith("\nhello there\n\n")


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown subtitle format 'ass'"):
        SubtitleWriter(io.StringIO(), "ass")
