"""Live audio sources: a file, a stream URL, a web page yt-dlp knows, or a microphone.

Every source yields mono float32 pieces at the model's sample rate, as they arrive.
- a local file: read whole (`rnnt.audio.load_audio`), fed in pieces (paced with `realtime`);
- `mic` or `pulse:DEVICE`: PulseAudio through ffmpeg (`mic` is the default source);
- a URL: http(s) pages go through yt-dlp, which turns a YouTube (or any site it knows) page
  into its audio stream's address and passes direct media links through; then ffmpeg reads
  it (http, HLS, rtmp, rtsp, srt, udp: whatever ffmpeg opens).
ffmpeg does the decoding, resampling and down-mixing (its mono `-ar RATE -f f32le` output is
read from a pipe; the down-mix is the channels' average, as `rnnt.audio`'s), so a source's
format is whatever ffmpeg reads. A source that breaks
off (ffmpeg exits non-zero or logs an error) raises `SourceError` after its last piece: the
caller has had every sample before it.
No torch: the onnx and openvino backends' deployment uses it.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import IO

import numpy as np

from rnnt.audio import FFMPEG_MONO, AudioError, load_audio

log = logging.getLogger(__name__)

MIC = "mic"  # the default PulseAudio source
PULSE_PREFIX = "pulse:"  # pulse:DEVICE names a PulseAudio source
PAGE_SCHEMES = ("http://", "https://")  # addresses yt-dlp is asked to resolve
STREAM_SCHEMES = ("rtmp://", "rtmps://", "rtsp://", "srt://", "udp://", "tcp://", "file:")
BYTES_PER_SAMPLE = 4  # f32le
FFMPEG_TIMEOUT_US = 10_000_000  # a network source silent this long is dropped, microseconds
STOP_TIMEOUT_S = 5.0  # ffmpeg asked to stop is killed after this, s
ERROR_LINES = 3  # ffmpeg's last stderr lines quoted when a source fails


class SourceError(AudioError):
    """A source that cannot be opened, or that broke off."""


def open_source(
    spec: str, sample_rate: int, piece_samples: int, realtime: bool = False
) -> Iterator[np.ndarray]:
    """`spec` -> mono float32 pieces of `piece_samples` (the last may be shorter).

    `realtime` paces a file (and a URL, through ffmpeg's `-re`) to arrive no faster than
    it plays; a microphone is real time anyway.
    """
    if piece_samples < 1:
        raise ValueError(f"piece_samples must be positive, got {piece_samples}")
    if spec == MIC or spec.startswith(PULSE_PREFIX):
        device = spec[len(PULSE_PREFIX) :] if spec.startswith(PULSE_PREFIX) else "default"
        return ffmpeg_pieces(["-f", "pulse", "-i", device], spec, sample_rate, piece_samples)
    if spec.startswith(PAGE_SCHEMES + STREAM_SCHEMES):
        address, headers = resolve_page(spec) if spec.startswith(PAGE_SCHEMES) else (spec, {})
        options = ["-rw_timeout", str(FFMPEG_TIMEOUT_US)] if "://" in address else []
        if headers:  # a site's stream may need the page's User-Agent, cookies, referer
            options += ["-headers", "".join(f"{key}: {value}\r\n" for key, value in headers.items())]
        options += ["-re"] if realtime else []
        return ffmpeg_pieces([*options, "-i", address], spec, sample_rate, piece_samples)
    return file_pieces(load_audio(spec, sample_rate), sample_rate, piece_samples, realtime)


def file_pieces(
    samples: np.ndarray, sample_rate: int, piece_samples: int, realtime: bool
) -> Iterator[np.ndarray]:
    """A recording fed in pieces, each (with `realtime`) no sooner than it was recorded."""
    started = time.monotonic()
    for start in range(0, len(samples), piece_samples):
        if realtime:
            recorded_s = min(start + piece_samples, len(samples)) / sample_rate
            time.sleep(max(0.0, recorded_s - (time.monotonic() - started)))
        yield samples[start : start + piece_samples]


def resolve_page(url: str) -> tuple[str, dict[str, str]]:
    """A web page's audio stream address by yt-dlp (best audio, else best) and the HTTP
    headers to fetch it with; a URL yt-dlp does not recognise is returned as is."""
    try:
        import yt_dlp
    except ImportError as error:
        raise SourceError(f"{url}: yt-dlp is not installed (pip install yt-dlp)") from error
    options = {"format": "bestaudio/best", "noplaylist": True, "logger": _YtDlpLog()}
    try:
        with yt_dlp.YoutubeDL(options) as ydl:
            info = ydl.extract_info(url, download=False)
    except yt_dlp.utils.UnsupportedError:
        return url, {}
    except yt_dlp.utils.DownloadError as error:
        raise SourceError(f"{url}: {_last_line(str(error)).removeprefix('ERROR: ')}") from error
    address = (info or {}).get("url")
    if not address:
        raise SourceError(f"{url}: yt-dlp found no audio stream")
    log.info("%s: %s stream via yt-dlp (%s)", url, info.get("extractor", "?"), info.get("format_id", "?"))
    return str(address), {str(k): str(v) for k, v in (info.get("http_headers") or {}).items()}


class _YtDlpLog:
    """yt-dlp's messages to this module's log at debug level: its errors come back as
    exceptions, reported once by the caller."""

    def debug(self, message: str) -> None:
        log.debug("yt-dlp: %s", message)

    warning = error = info = debug


def ffmpeg_pieces(
    input_args: list[str], name: str, sample_rate: int, piece_samples: int
) -> Iterator[np.ndarray]:
    """ffmpeg's decoded output of `input_args` as pieces, until it ends.

    Closing the iterator early stops ffmpeg. A non-zero exit after the last piece raises
    `SourceError` with ffmpeg's own words.
    """
    if shutil.which("ffmpeg") is None:
        raise SourceError(f"{name}: ffmpeg is not installed (tools/setup_system.sh installs it)")
    command = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", *input_args]
    # Timestamps from the sample count: a microphone's jittery ones make the muxer complain.
    command += [
        "-vn",
        "-af",
        "asetpts=N/SR/TB",
        *FFMPEG_MONO,
        "-ar",
        str(sample_rate),
        "-f",
        "f32le",
        "pipe:1",
    ]
    # stderr to a file, not a pipe: a long stream's messages could fill a pipe and stall ffmpeg.
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors)
        assert process.stdout is not None
        try:
            yield from _read_pieces(process.stdout, piece_samples)
        except BaseException:  # the caller stopped early (GeneratorExit), or Ctrl-C
            _stop(process)
            raise
        returncode = process.wait()
        errors.seek(0)
        reason = _last_line(errors.read().decode(errors="replace"), ERROR_LINES)
    # ffmpeg ends a stream cut short (a dropped connection) with exit 0 but an error logged.
    if returncode != 0 or reason:
        raise SourceError(f"{name}: the stream failed or broke off ({reason or f'ffmpeg exit {returncode}'})")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _read_pieces(stdout: IO[bytes], piece_samples: int) -> Iterator[np.ndarray]:
    """Whole pieces as ffmpeg writes them (a read waits for a full piece), then the rest."""
    while chunk := stdout.read(piece_samples * BYTES_PER_SAMPLE):
        usable = len(chunk) - len(chunk) % BYTES_PER_SAMPLE
        if usable:
            yield np.frombuffer(chunk[:usable], dtype=np.float32).copy()


def _last_line(text: str, lines: int = 1) -> str:
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " / ".join(kept[-lines:])
