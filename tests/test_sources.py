"""Live sources for real: URLs through yt-dlp and ffmpeg on loopback HTTP, a microphone through
a private PulseAudio daemon, and stream.py's subtitles from them, including streams that drop."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile

from rnnt.audio import load_audio
from rnnt.scoring import error_rates
from rnnt.sources import SourceError, ffmpeg_pieces, open_source

from .conftest import DEMO_MODEL, REPO

RATE = 16000
PIECE = 9600  # 600 ms
SENTENCE = "the boy was there when the sun rose over the quiet little town"
PULSE_SINK = "rnnt_test"
RECORDER_START_S = 0.5  # from a recorder's connection to its first samples, s
VOICE = "en-us+m3"  # an espeak-ng voice of the demo corpus's training speakers
# The demo model reads SENTENCE from the file at 23% WER (3 of 13 words); this bound leaves
# room for PulseAudio's resampling and a recording that misses the first few milliseconds,
# and no room for captions that are lost or garbled (a random model scores ~100%).
MAX_WER = 0.5


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SENTENCE spoken by espeak-ng's VOICE, 16 kHz mono WAV, with a second of silence after it."""
    folder = tmp_path_factory.mktemp("speech")
    raw = folder / "raw.wav"
    subprocess.run(["espeak-ng", "-v", VOICE, "-w", str(raw), SENTENCE], check=True)
    samples = load_audio(raw, RATE)
    path = folder / "speech.wav"
    soundfile.write(path, np.concatenate([samples, np.zeros(RATE, np.float32)]), RATE, subtype="PCM_16")
    return path


def serve(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def http_root(speech: Path) -> Iterator[str]:
    """`speech.wav` on a loopback HTTP server."""
    handler = functools.partial(QuietHandler, directory=str(speech.parent))
    yield from serve(handler)  # type: ignore[arg-type]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class HalfHandler(http.server.BaseHTTPRequestHandler):
    """Announces the whole file and sends half of it: a connection that drops."""

    payload = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "audio/wav")
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        with contextlib.suppress(OSError):  # the client may have gone first
            self.wfile.write(self.payload[: len(self.payload) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def dropping_url(speech: Path) -> Iterator[str]:
    handler = type("Handler", (HalfHandler,), {"payload": speech.read_bytes()})
    for root in serve(handler):
        yield f"{root}/live.wav"


def test_url_pieces_are_ffmpegs_decoding_of_the_file(http_root: str, speech: Path) -> None:
    pieces = list(open_source(f"{http_root}/speech.wav", RATE, PIECE))
    assert pieces and all(len(p) == PIECE for p in pieces[:-1]) and 0 < len(pieces[-1]) <= PIECE
    direct = np.concatenate(list(ffmpeg_pieces(["-i", str(speech)], "file", RATE, PIECE)))
    np.testing.assert_array_equal(np.concatenate(pieces), direct)
    np.testing.assert_allclose(direct, load_audio(speech, RATE), atol=1e-4)


def test_a_missing_page_is_one_clear_error(http_root: str) -> None:
    with pytest.raises(SourceError, match=r"missing\.wav: .*404"):
        list(open_source(f"{http_root}/missing.wav", RATE, PIECE))


def test_a_dropped_stream_gives_its_audio_then_fails(dropping_url: str, speech: Path) -> None:
    received: list[np.ndarray] = []
    with pytest.raises(SourceError, match="broke off"):
        for piece in open_source(dropping_url, RATE, PIECE):
            received.append(piece)
    total = len(load_audio(speech, RATE))
    assert 0.4 * total < sum(len(p) for p in received) < 0.6 * total


def test_an_unreachable_stream_is_one_clear_error() -> None:
    with pytest.raises(SourceError, match=r"rtsp://127\.0\.0\.1:9/x: .*Connection refused"):
        list(open_source("rtsp://127.0.0.1:9/x", RATE, PIECE))


@pytest.fixture(scope="module")
def pulse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A private PulseAudio daemon with a null sink; the environment that reaches it."""
    folder = tmp_path_factory.mktemp("pulse")
    socket_path = folder / "native"
    env = {**os.environ, "XDG_RUNTIME_DIR": str(folder), "HOME": str(folder)}
    command = [
        "pulseaudio",
        "--daemonize=no",
        "--use-pid-file=no",
        "--exit-idle-time=-1",
        "--disable-shm=yes",
        "-n",
        f"--load=module-native-protocol-unix socket={socket_path} auth-anonymous=1",
        f"--load=module-null-sink sink_name={PULSE_SINK}",
    ]
    daemon = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = {**env, "PULSE_SERVER": f"unix:{socket_path}"}
    deadline = time.monotonic() + 10
    while subprocess.run(["pactl", "info"], env=client, capture_output=True).returncode != 0:
        assert daemon.poll() is None and time.monotonic() < deadline, "pulseaudio did not start"
        time.sleep(0.1)
    yield client
    daemon.terminate()
    daemon.wait(timeout=10)


def play_when_recorded(path: Path, env: dict[str, str]) -> None:
    """paplay `path` into the null sink once a recorder listens to its monitor."""
    deadline = time.monotonic() + 120
    while not subprocess.run(
        ["pactl", "list", "short", "source-outputs"], env=env, capture_output=True
    ).stdout:
        assert time.monotonic() < deadline, "no recorder appeared"
        time.sleep(0.1)
    time.sleep(RECORDER_START_S)
    subprocess.run(["paplay", "-d", PULSE_SINK, str(path)], env=env, check=True, timeout=60)


def test_the_microphone_hears_what_is_played(pulse: dict[str, str], speech: Path, monkeypatch) -> None:
    monkeypatch.setenv("PULSE_SERVER", pulse["PULSE_SERVER"])
    played = load_audio(speech, RATE)
    player = threading.Thread(target=play_when_recorded, args=(speech, pulse))
    player.start()
    pieces = []
    for piece in open_source(f"pulse:{PULSE_SINK}.monitor", RATE, PIECE):
        pieces.append(piece)
        if not player.is_alive() and sum(map(len, pieces)) > len(played) + 2 * RATE:
            break  # closing the source stops ffmpeg
    player.join()
    heard = np.concatenate(pieces)
    overlap, correlation = best_alignment(heard, played)
    assert overlap > 0.9 * len(played)  # all but what played before the monitor delivered
    assert correlation > 0.95  # through PulseAudio's 44.1 kHz s16 and back


def best_alignment(heard: np.ndarray, played: np.ndarray) -> tuple[int, float]:
    """(samples overlapping, correlation coefficient) of `played` at its best lag in `heard`
    (negative when the recording missed its start)."""
    size = len(heard) + len(played)
    cross = np.fft.irfft(np.fft.rfft(heard, size) * np.conj(np.fft.rfft(played, size)), size)
    lag = int(np.argmax(cross))
    lag = lag - size if lag > len(heard) else lag
    start = max(0, lag)
    a = heard[start : lag + len(played)]
    b = played[start - lag : start - lag + len(a)]
    return len(a), float(np.corrcoef(a, b)[0, 1])


def run_stream(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(REPO / "stream.py"), "--threads=1", f"--model={DEMO_MODEL}", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)


def srt_text(path: Path) -> str:
    blocks = [b.split("\n")[2:] for b in path.read_text().strip().split("\n\n")]
    return " ".join(" ".join(lines) for lines in blocks)


def finals(jsonl: str) -> str:
    events = [json.loads(line) for line in jsonl.splitlines()]
    return " ".join(e["text"] for e in events if e["kind"] == "final")


def test_stream_url_to_srt_and_vtt_holds_the_finals(http_root: str, tmp_path: Path) -> None:
    url = f"{http_root}/speech.wav"
    events = run_stream(f"--input={url}", "--format=jsonl")
    assert events.returncode == 0, events.stderr
    text = finals(events.stdout)
    assert error_rates([SENTENCE], [text]).wer <= MAX_WER
    srt, vtt = tmp_path / "out.srt", tmp_path / "out.vtt"
    assert run_stream(f"--input={url}", "--format=srt", f"--output={srt}").returncode == 0
    assert run_stream(f"--input={url}", "--format=vtt", f"--output={vtt}").returncode == 0
    assert srt_text(srt) == text
    assert vtt.read_text().startswith("WEBVTT\n\n00:00:")


def test_a_dropped_stream_keeps_its_captions_and_fails(dropping_url: str, tmp_path: Path) -> None:
    srt = tmp_path / "dropped.srt"
    result = run_stream(f"--input={dropping_url}", "--format=srt", f"--output={srt}", "--noendpointing")
    assert result.returncode == 1
    error_lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and "broke off" in error_lines[0], result.stderr
    # Without endpointing the only final comes from closing the segment when the source fails.
    words = srt_text(srt).split()
    assert 3 <= len(words) < len(SENTENCE.split())


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_microphone_captions_survive_a_stop_signal(
    pulse: dict[str, str], speech: Path, signal_number: int
) -> None:
    """Ctrl-C, or a service manager's / `timeout`'s SIGTERM: the open segment is emitted."""
    command = [sys.executable, str(REPO / "stream.py"), "--threads=1", f"--model={DEMO_MODEL}"]
    command += [f"--input=pulse:{PULSE_SINK}.monitor", "--format=jsonl", "--noendpointing"]
    process = subprocess.Popen(
        command, cwd=REPO, env=pulse, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    play_when_recorded(speech, pulse)
    time.sleep(1.0)  # the second of silence after the speech reaches the recogniser
    process.send_signal(signal_number)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    events = [json.loads(line) for line in stdout.splitlines()]
    assert events and events[-1]["kind"] == "final", stderr  # the open segment was closed
    assert error_rates([SENTENCE], [events[-1]["text"]]).wer <= MAX_WER


def test_ffmpeg_down_mixes_as_the_file_reader_does(tmp_path: Path) -> None:
    """A stereo recording read through ffmpeg (`file:`, a URL, a microphone) is the channels'
    average, as `load_audio` makes it, not ffmpeg's default 3 dB louder mix."""
    rng = np.random.default_rng(0)
    stereo = (0.3 * rng.standard_normal((16000, 2))).astype(np.float32)
    stereo[:, 1] *= 0.2  # channels unlike each other
    path = tmp_path / "stereo.wav"
    soundfile.write(path, stereo, 16000, subtype="FLOAT")
    through_ffmpeg = np.concatenate(list(open_source(f"file:{path}", 16000, 4000)))
    np.testing.assert_allclose(through_ffmpeg, load_audio(path, 16000), atol=1e-6)
