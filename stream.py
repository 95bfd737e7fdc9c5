"""Caption an audio file as a live stream: pieces of --chunk_ms in, captions out as they form.

python stream.py --model=models/demo/model.pt --input=talk.mp3
python stream.py --model=exports/demo --backend=onnx --precision=int8 --input=talk.wav --format=jsonl
python stream.py --model=exports/demo --backend=openvino --input=talk.flac --realtime
python stream.py --model=exports/demo --backend=onnx --beam_size=4 --lm=logs/demo-lm.npz --input=talk.wav

--format=text rewrites the current line as partial captions change and ends it when the
segment is final (only finals when stdout is not a terminal); --format=jsonl writes one
JSON object per event. Any audio format, rate and channel count is accepted.
This script imports no torch unless --backend=torch.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Iterator
from typing import TextIO

import numpy as np
from absl import app, flags

from rnnt import cli
from rnnt.audio import load_audio
from rnnt.flags import decode_config_from_flags, lm_from_flags, stream_config_from_flags
from rnnt.runtimes import BACKENDS, load_model
from rnnt.streaming import FINAL, CaptionEvent, StreamingRecognizer

_MODEL = flags.DEFINE_string("model", "", "checkpoint file (torch) or export directory (any backend)")
_BACKEND = flags.DEFINE_string("backend", "torch", f"runtime: {', '.join(BACKENDS)}")
_PRECISION = flags.DEFINE_string(
    "precision", "fp32", "fp32; int8 (onnx, needs export --int8); bf16 (openvino)"
)
_THREADS = flags.DEFINE_integer("threads", 0, "intra-op threads (0: the backend's default)")
_INPUT = flags.DEFINE_string("input", "", "audio file to caption (any format, rate, channels)")
_FORMAT = flags.DEFINE_string("format", "text", "text (captions as they form) or jsonl (one event a line)")
_REALTIME = flags.DEFINE_bool("realtime", False, "feed the audio no faster than real time")

FORMATS = ("text", "jsonl")
CLEAR_LINE = "\r\x1b[K"  # carriage return, then erase to the end of the line


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    cli.require_flags(_MODEL, _INPUT)
    if _FORMAT.value not in FORMATS:
        raise ValueError(f"unknown --format={_FORMAT.value} (one of {', '.join(FORMATS)})")
    model = load_model(_MODEL.value, _BACKEND.value, _PRECISION.value, _THREADS.value)
    samples = load_audio(_INPUT.value, model.features.sample_rate)
    recognizer = StreamingRecognizer(
        model,
        stream_config_from_flags(),
        decode_config_from_flags(model.decode),
        lm_from_flags(model.tokenizer),
    )
    piece = max(1, round(recognizer.config.chunk_ms * model.features.sample_rate / 1000))
    for event in caption(recognizer, samples, piece, model.features.sample_rate, _REALTIME.value):
        show(event, _FORMAT.value, sys.stdout)


def caption(
    recognizer: StreamingRecognizer, samples: np.ndarray, piece: int, sample_rate: int, realtime: bool
) -> Iterator[CaptionEvent]:
    """Feed `samples` in pieces of `piece` samples, as a live source would deliver them."""
    started = time.monotonic()
    for start in range(0, len(samples), piece):
        if realtime:
            recorded = min(start + piece, len(samples)) / sample_rate  # a live piece arrives when recorded
            time.sleep(max(0.0, recorded - (time.monotonic() - started)))
        yield from recognizer.accept(samples[start : start + piece])
    yield from recognizer.finish()


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
    app.run(cli.guarded(main))
