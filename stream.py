"""Caption live audio: pieces of --chunk_ms in, captions out as they form.

python stream.py --model=models/demo/model.pt --input=talk.mp3
python stream.py --model=exports/demo --backend=onnx --precision=int8 --input=talk.wav --format=jsonl
python stream.py --model=exports/demo --backend=openvino --input=talk.flac --realtime
python stream.py --model=exports/demo --backend=onnx --beam_size=4 --lm=logs/demo-lm.npz --input=talk.wav
python stream.py --model=exports/demo --backend=onnx --input=mic --format=srt --output=live.srt
python stream.py --model=exports/demo --backend=onnx --input=https://www.youtube.com/watch?v=ID --format=vtt

--input is a file (any format, rate and channel count), `mic` / `pulse:DEVICE` (PulseAudio),
or a URL: a web page yt-dlp knows (YouTube and the many other sites it supports), or any stream ffmpeg
opens (http, HLS, rtmp, rtsp, srt, udp). --format=text rewrites the current line as partial
captions change and ends it when the segment is final (only finals when the output is not
a terminal); jsonl writes one JSON object per event; srt and vtt write subtitle cues of the
finals. Output goes to --output (default stdout) as it forms, so a stream that drops or is
interrupted (Ctrl-C) keeps every caption finished before it, and the open segment is
closed and written before the script exits (non-zero for a broken stream).
This script imports no torch unless --backend=torch.
"""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
import signal
import sys
from collections.abc import Callable, Iterator
from typing import TextIO

import numpy as np
from absl import flags

from rnnt import cli
from rnnt.captions import SUBTITLE_FORMATS, SubtitleWriter
from rnnt.flags import define_runtime_flags, live_configs_from_flags
from rnnt.sources import open_source
from rnnt.streaming import FINAL, CaptionEvent, StreamingRecognizer

RUNTIME = define_runtime_flags()
_INPUT = flags.DEFINE_string("input", "", "audio file, `mic`, `pulse:DEVICE`, or a stream or page URL")
_FORMAT = flags.DEFINE_string(
    "format", "text", "text (captions as they form), jsonl (one event a line), srt or vtt (subtitles)"
)
_OUTPUT = flags.DEFINE_string("output", "-", "where captions go as they form (- for stdout)")
_REALTIME = flags.DEFINE_bool("realtime", False, "feed a file or URL no faster than real time")
_MAX_CHARS = flags.DEFINE_integer(
    "subtitle_chars", 42, "srt/vtt: characters per subtitle line", lower_bound=1
)
_MAX_LINES = flags.DEFINE_integer("subtitle_lines", 2, "srt/vtt: lines per subtitle cue", lower_bound=1)

FORMATS = ("text", "jsonl", *SUBTITLE_FORMATS)
CLEAR_LINE = "\r\x1b[K"  # carriage return, then erase to the end of the line


def main(argv: list[str]) -> None:
    del argv  # positional arguments are refused by cli.run
    cli.require_flags(_INPUT)
    if _FORMAT.value not in FORMATS:
        raise ValueError(f"unknown --format={_FORMAT.value} (one of {', '.join(FORMATS)})")
    # A service manager's or `timeout`'s SIGTERM ends the stream as Ctrl-C does: the open
    # segment is still emitted (`caption`), then exit 130 (cli.run).
    signal.signal(signal.SIGTERM, _interrupt)
    model = RUNTIME.load()
    recognizer = StreamingRecognizer(model, *live_configs_from_flags(model))
    rate = model.features.sample_rate
    piece = max(1, round(recognizer.config.chunk_ms * rate / 1000))
    pieces = open_source(_INPUT.value, rate, piece, _REALTIME.value)
    with open_output(_OUTPUT.value) as out:
        caption(recognizer, pieces, writer(_FORMAT.value, out))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def caption(
    recognizer: StreamingRecognizer, pieces: Iterator[np.ndarray], emit: Callable[[CaptionEvent], None]
) -> None:
    """Emit the events of a stream of sample pieces. However the stream ends (its end, a
    broken source, Ctrl-C), the open segment is closed and emitted before the error goes on."""
    try:
        for samples in pieces:
            for event in recognizer.accept(samples):
                emit(event)
    finally:
        for event in recognizer.finish():
            emit(event)


@contextlib.contextmanager
def open_output(path: str) -> Iterator[TextIO]:
    """stdout for "-", else the file (written as captions form, so a crash keeps them)."""
    if path == "-":
        yield sys.stdout
        return
    with open(path, "w", encoding="utf-8") as out:
        yield out


def writer(output_format: str, out: TextIO) -> Callable[[CaptionEvent], None]:
    if output_format in SUBTITLE_FORMATS:
        return SubtitleWriter(out, output_format, _MAX_CHARS.value, _MAX_LINES.value).write
    return functools.partial(show, output_format=output_format, out=out)


def show(event: CaptionEvent, output_format: str, out: TextIO) -> None:
    if output_format == "jsonl":
        out.write(json.dumps(event.as_dict(), ensure_ascii=False) + "\n")
    elif out.isatty() and event.kind != FINAL:
        width = shutil.get_terminal_size().columns - 1  # a wrapped line could not be rewritten
        out.write(CLEAR_LINE + event.text[-width:])
    elif out.isatty():
        out.write(CLEAR_LINE + event.text + "\n")
    elif event.kind == FINAL:
        out.write(event.text + "\n")
    out.flush()


if __name__ == "__main__":
    cli.run(main)
