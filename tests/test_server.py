"""The WebSocket caption server for real: concurrent streams decoded in shared batches equal
offline decoding, bad clients are refused in one close frame, open streams get their finals
when the server stops (in `serve.py` too, on SIGINT and SIGTERM), and the browser page
captions a (fake) microphone in a real headless Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from rnnt.audio import load_audio
from rnnt.config import DecodeConfig, StreamConfig
from rnnt.decoding import decode_features
from rnnt.features import compute_features
from rnnt.runtimes import LoadedModel, load_model
from rnnt.scoring import error_rates
from rnnt.server import BUSY_CODE, PROTOCOL_ERROR_CODE, CaptionServer, serve
from rnnt.streaming import decode_chunks

from .conftest import DEMO_MODEL, INSPECTOR_SENTENCE, REPO

RATE = 16000
SEND_SAMPLES = 1600  # a client's message: 100 ms, as a browser's audio callbacks send
# Three voices of the demo corpus's training speakers, three sentences.
SPEECH = [
    ("en-us+m3", "the boy was there when the sun rose over the quiet little town"),
    ("en+f2", "she sells sea shells by the sea shore every summer"),
    ("en-us+m1", "a good plan today is better than a perfect plan tomorrow"),
]
MAX_WER = 0.5  # the browser test: the demo model after the browser's capture and resampling
TIMEOUT_S = 120
NORMAL_CLOSURE = 1000  # the WebSocket close code of a stream that ended with its final
DEFAULT_CHUNK_MS = 640.0  # StreamConfig's 600 ms in whole 80 ms encoder frames of the demo model
WEBSOCKETS_MAX_SIZE = 1 << 20  # websockets' default limit on a received message, bytes


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return load_model(DEMO_MODEL, "torch", threads=1)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """SPEECH by espeak-ng, 16 kHz mono 16-bit WAV, with half a second of silence around."""
    folder = tmp_path_factory.mktemp("speech")
    paths = []
    for i, (voice, text) in enumerate(SPEECH):
        raw = folder / f"raw{i}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True)
        silence = np.zeros(RATE // 2, np.float32)
        samples = np.concatenate([silence, load_audio(raw, RATE), silence])
        paths.append(folder / f"speech{i}.wav")
        soundfile.write(paths[-1], samples, RATE, subtype="PCM_16")
    return paths


@contextlib.asynccontextmanager
async def serving(
    model: LoadedModel,
    decode: DecodeConfig | None = None,
    stream: StreamConfig | None = None,
    **server_args: Any,
) -> AsyncIterator[tuple[CaptionServer, str, asyncio.Task[None]]]:
    """A server on a free loopback port: it, its ws:// URL and the task serving it (cancelled
    on leaving, if the caller did not)."""
    config = model.decode if decode is None else decode
    stream = StreamConfig(endpointing=False) if stream is None else stream
    server = CaptionServer(model, stream, config, **server_args)
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(server, "127.0.0.1", 0, ready))
    port = await asyncio.wait_for(ready, TIMEOUT_S)
    try:
        yield server, f"ws://127.0.0.1:{port}/", task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def run_with_server(
    model: LoadedModel,
    scenario: Callable[[CaptionServer, str], Awaitable[Any]],
    decode: DecodeConfig | None = None,
    stream: StreamConfig | None = None,
    **server_args: Any,
) -> Any:
    """Run `scenario(server, ws_url)` beside a server on a free loopback port."""

    async def main() -> Any:
        async with serving(model, decode, stream, **server_args) as (server, url, _):
            return await asyncio.wait_for(scenario(server, url), TIMEOUT_S)

    return asyncio.run(main())


async def stream_file(
    url: str, samples: np.ndarray, hotwords: list[str] | None = None
) -> list[dict[str, Any]]:
    """A client: its `hotwords` if any, the samples in 100 ms messages, then the end; every
    event it receives."""
    async with connect(url) as websocket:
        hello = json.loads(await websocket.recv())
        assert hello == {"kind": "ready", "sample_rate": RATE, "chunk_ms": DEFAULT_CHUNK_MS}
        if hotwords is not None:
            await websocket.send(json.dumps({"type": "hotwords", "phrases": hotwords}))
        for start in range(0, len(samples), SEND_SAMPLES):
            await websocket.send(samples[start : start + SEND_SAMPLES].astype("<f4").tobytes())
            await asyncio.sleep(0)  # let the other clients send too
        await websocket.send(json.dumps({"type": "end"}))
        return [json.loads(message) async for message in websocket]


def offline_text(model: LoadedModel, samples: np.ndarray) -> str:
    (hyp,) = decode_features(model.runtime, [compute_features(samples, model.features)], model.decode)
    return model.tokenizer.decode(hyp.tokens)


def test_concurrent_streams_are_batched_and_equal_offline_decoding(
    model: LoadedModel, recordings: list[Path]
) -> None:
    audio = [load_audio(path, RATE) for path in recordings]

    async def scenario(server: CaptionServer, url: str) -> list[list[dict[str, Any]]]:
        results = await asyncio.gather(*(stream_file(url, samples) for samples in audio))
        assert server.stats.max_batch >= 2, server.stats  # rounds decoded several streams
        assert not server.sessions and len(server.stats.completed) == len(audio)
        return results

    results = run_with_server(model, scenario)
    for events, samples in zip(results, audio, strict=True):
        assert events[-1]["kind"] == "final" and [e["kind"] for e in events].count("final") == 1
        assert events[-1]["text"] == offline_text(model, samples)
        assert any(e["kind"] == "partial" for e in events)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("hello", "must be JSON"),
        (b"\x00\x01\x02", "whole float32 samples"),
        ('{"type": "x"}', "unknown message"),
    ],
)
def test_a_bad_message_closes_the_stream_in_one_frame(model: LoadedModel, message: Any, reason: str) -> None:
    run_with_server(model, lambda server, url: assert_refused(url, [message], reason))


async def assert_refused(url: str, messages: list[Any], reason: str) -> None:
    """A client sends `messages`: the server closes with the protocol error and `reason`."""
    async with connect(url) as websocket:
        await websocket.recv()
        for message in messages:
            await websocket.send(message)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await websocket.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == PROTOCOL_ERROR_CODE and reason in closed.value.rcvd.reason


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_close_their_stream_alone(
    model: LoadedModel, recordings: list[Path], bad_value: float
) -> None:
    """A client whose audio holds one NaN or inf is refused; a stream beside it is decoded as
    if alone."""
    good, other = (load_audio(path, RATE) for path in recordings[:2])
    bad = other.copy()
    bad[len(bad) // 2] = bad_value
    messages = [
        bad[start : start + SEND_SAMPLES].astype("<f4").tobytes()
        for start in range(0, len(bad), SEND_SAMPLES)
    ]

    async def scenario(server: CaptionServer, url: str) -> list[dict[str, Any]]:
        events, _ = await asyncio.gather(
            stream_file(url, good), assert_refused(url, messages, "finite samples")
        )
        return events

    events = run_with_server(model, scenario)
    assert events[-1]["kind"] == "final" and events[-1]["text"] == offline_text(model, good)


@pytest.mark.parametrize(("chunk_ms", "used_ms"), [(250.0, 240.0), (600.0, DEFAULT_CHUNK_MS), (1.0, 80.0)])
def test_ready_reports_the_chunk_in_whole_encoder_frames(
    model: LoadedModel, chunk_ms: float, used_ms: float
) -> None:
    async def scenario(server: CaptionServer, url: str) -> dict[str, Any]:
        async with connect(url) as websocket:
            return json.loads(await websocket.recv())

    hello = run_with_server(model, scenario, stream=StreamConfig(chunk_ms=chunk_ms, endpointing=False))
    assert hello == {"kind": "ready", "sample_rate": RATE, "chunk_ms": used_ms}


def test_a_message_over_a_mebibyte_is_captioned(model: LoadedModel, recordings: list[Path]) -> None:
    """20 s of speech in one binary message (1.3 MB, over websockets' default limit)."""
    speech = np.concatenate([load_audio(path, RATE) for path in recordings])
    samples = np.resize(speech, 20 * RATE)  # the three sentences, repeated
    message = samples.astype("<f4").tobytes()
    assert len(message) > WEBSOCKETS_MAX_SIZE

    async def scenario(server: CaptionServer, url: str) -> list[dict[str, Any]]:
        async with connect(url) as websocket:
            await websocket.recv()
            await websocket.send(message)
            await websocket.send(json.dumps({"type": "end"}))
            return [json.loads(event) async for event in websocket]

    events = run_with_server(model, scenario)
    assert events[-1]["kind"] == "final" and events[-1]["text"] == offline_text(model, samples)


async def partials_then_stop(
    url: str, samples: np.ndarray, stop: Callable[[], Any]
) -> tuple[list[dict[str, Any]], int]:
    """A client sends `samples` without ending its stream; once a partial shows them decoded,
    `stop()` stops the server. The events after the partial and the close code."""
    async with connect(url) as websocket:
        await websocket.recv()
        await websocket.send(samples.astype("<f4").tobytes())
        while json.loads(await websocket.recv())["kind"] != "partial":
            pass
        stop()
        events = [json.loads(event) async for event in websocket]
        assert websocket.close_code is not None
        return events, websocket.close_code


def test_stopping_the_server_sends_each_open_stream_its_final(
    model: LoadedModel, recordings: list[Path]
) -> None:
    """Cancelling `serve` (what SIGINT does) ends an open stream as its `end` would."""
    samples = load_audio(recordings[0], RATE)[: 2 * RATE]

    async def main() -> tuple[list[dict[str, Any]], int]:
        async with serving(model) as (server, url, task):
            result = await asyncio.wait_for(partials_then_stop(url, samples, task.cancel), TIMEOUT_S)
            assert not server.sessions and len(server.stats.completed) == 1
            return result

    events, close_code = asyncio.run(main())
    assert close_code == NORMAL_CLOSURE
    assert [e["kind"] for e in events][-1:] == ["final"] and events[-1]["text"] == offline_text(
        model, samples
    )


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_py_sends_finals_on_sigint_and_sigterm(
    model: LoadedModel, recordings: list[Path], signal_number: int
) -> None:
    samples = load_audio(recordings[1], RATE)[: 2 * RATE]
    command = [sys.executable, str(REPO / "serve.py"), f"--model={DEMO_MODEL}", "--threads=1", "--port=0"]
    command += ["--noendpointing"]

    async def main() -> tuple[list[dict[str, Any]], int, int, str]:
        process = await asyncio.create_subprocess_exec(*command, cwd=REPO, stderr=asyncio.subprocess.PIPE)
        assert process.stderr is not None
        try:
            port = await asyncio.wait_for(listening_port(process.stderr), TIMEOUT_S)
            stop = functools.partial(process.send_signal, signal_number)
            events, close_code = await asyncio.wait_for(
                partials_then_stop(f"ws://127.0.0.1:{port}/", samples, stop), TIMEOUT_S
            )
            stderr = (await asyncio.wait_for(process.stderr.read(), TIMEOUT_S)).decode()
            return events, close_code, await process.wait(), stderr
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    events, close_code, returncode, stderr = asyncio.run(main())
    assert close_code == NORMAL_CLOSURE, stderr
    assert [e["kind"] for e in events][-1:] == ["final"] and events[-1]["text"] == offline_text(
        model, samples
    )
    assert returncode == 130 and "interrupted" in stderr, stderr


async def listening_port(stderr: asyncio.StreamReader) -> int:
    """The port `serve.py` logs it listens on."""
    while line := (await stderr.readline()).decode():
        if found := re.search(r"captions at http://[^:]+:(\d+)/", line):
            return int(found.group(1))
    pytest.fail("serve.py exited without listening")


def test_a_streams_own_hotwords_bias_it_alone(model: LoadedModel, tmp_path: Path) -> None:
    """Two streams of one sentence at once, one with the hotword `inspector`: only its final
    has the word (the demo model alone hears `in spector`), the other's equals offline beam
    search."""
    audio = tmp_path / "inspector.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(audio), INSPECTOR_SENTENCE], check=True)
    samples = load_audio(audio, RATE)
    beam = dataclasses.replace(model.decode, beam_size=4)

    async def scenario(server: CaptionServer, url: str) -> list[list[dict[str, Any]]]:
        return list(
            await asyncio.gather(
                stream_file(url, samples, ["inspector", "chocolates"]), stream_file(url, samples)
            )
        )

    biased, plain = run_with_server(model, scenario, beam)
    (hyp,) = decode_features(model.runtime, [compute_features(samples, model.features)], beam)
    assert plain[-1]["text"] == model.tokenizer.decode(hyp.tokens)
    assert "inspector" not in plain[-1]["text"].split()
    assert biased[-1]["text"] == plain[-1]["text"].replace("in spector", "inspector")


@pytest.mark.parametrize(
    ("beam_size", "messages", "reason"),
    [
        (4, [b"\x00" * 4, '{"type": "hotwords", "phrases": ["x"]}'], "before the first audio"),
        (1, ['{"type": "hotwords", "phrases": ["x"]}'], "hotwords need beam search"),
        (4, ['{"type": "hotwords", "phrases": "x"}'], "must be a list of strings"),
        (4, ['{"type": "hotwords", "phrases": ["fine", "bad :x"]}'], "hotwords:2: bad score"),
    ],
)
def test_bad_hotwords_close_the_stream_in_one_frame(
    model: LoadedModel, beam_size: int, messages: list[Any], reason: str
) -> None:
    decode = dataclasses.replace(model.decode, beam_size=beam_size)
    run_with_server(model, lambda server, url: assert_refused(url, messages, reason), decode)


def test_a_full_server_refuses_and_a_dropped_client_ends_its_stream(
    model: LoadedModel, recordings: list[Path]
) -> None:
    samples = load_audio(recordings[0], RATE)

    async def scenario(server: CaptionServer, url: str) -> None:
        first = await connect(url)
        await first.recv()
        await first.send(samples[: 2 * RATE].astype("<f4").tobytes())
        async with connect(url) as second:
            with pytest.raises(ConnectionClosed) as closed:
                await second.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == BUSY_CODE
        first.transport.abort()  # dropped without a close frame
        while server.sessions:
            await asyncio.sleep(0.05)
        assert len(server.stats.completed) == 1
        events = await stream_file(url, samples)  # and the server goes on serving
        assert events[-1]["text"] == offline_text(model, samples)

    run_with_server(model, scenario, max_streams=1)


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.fail("no Chromium: tools/setup_system.sh installs Debian's chromium")


def caption_in_chromium(
    model: LoadedModel, speech: Path, profile: Path, query: str = "", decode: DecodeConfig | None = None
) -> list[str]:
    """The finals of one stream from the page in headless Chromium, whose fake microphone
    plays `speech`; `query` adds to the page's URL."""
    seconds = soundfile.info(speech).duration + 1.0

    async def scenario(server: CaptionServer, url: str) -> list[str]:
        page = url.replace("ws://", "http://") + f"?autostart=1&seconds={seconds:.1f}{query}"
        browser = await asyncio.create_subprocess_exec(
            chromium(),
            "--headless=new",
            "--no-sandbox",  # as root, as CI runs
            "--disable-gpu",
            f"--user-data-dir={profile}",
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={speech}%noloop",
            "--autoplay-policy=no-user-gesture-required",
            page,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            while not server.stats.completed:
                assert browser.returncode is None, "Chromium exited"
                await asyncio.sleep(0.2)
        finally:
            browser.kill()
            await browser.wait()
        return server.stats.completed[0]

    return run_with_server(model, scenario, decode)


def test_the_page_captions_a_browser_microphone(
    model: LoadedModel, recordings: list[Path], tmp_path: Path
) -> None:
    finals = caption_in_chromium(model, recordings[0], tmp_path / "profile")
    assert error_rates([SPEECH[0][1]], [" ".join(finals)]).wer <= MAX_WER, finals


def test_the_page_sends_its_hotwords(model: LoadedModel, tmp_path: Path) -> None:
    """The page's hotwords reach the server: the demo model hears `come around` in the
    browser's stream, and `come round` once the page lists it."""
    raw, speech = tmp_path / "raw.wav", tmp_path / "inspector.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(raw), INSPECTOR_SENTENCE], check=True)
    silence = np.zeros(RATE // 2, np.float32)
    soundfile.write(speech, np.concatenate([silence, load_audio(raw, RATE), silence]), RATE, subtype="PCM_16")
    beam = dataclasses.replace(model.decode, beam_size=4)
    plain = " ".join(caption_in_chromium(model, speech, tmp_path / "a", decode=beam))
    biased = " ".join(
        caption_in_chromium(model, speech, tmp_path / "b", "&hotwords=come%20round,chocolates", beam)
    )
    assert "come around" in plain and "come round" not in plain, plain
    assert "come round" in biased, biased  # (the browser's capture varies other words from run to run)


def test_a_decoding_failure_closes_its_streams_and_the_server_goes_on(
    model: LoadedModel, recordings: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    samples = load_audio(recordings[1], RATE)
    failures = iter([True])

    def failing_once(*args: Any) -> Any:
        if next(failures, False):
            raise RuntimeError("the runtime broke")
        return decode_chunks(*args)

    monkeypatch.setattr("rnnt.server.decode_chunks", failing_once)

    async def scenario(server: CaptionServer, url: str) -> None:
        async with connect(url) as websocket:
            await websocket.recv()
            await websocket.send(samples.astype("<f4").tobytes())
            with pytest.raises(ConnectionClosed):
                while True:
                    await websocket.recv()
        events = await stream_file(url, samples)
        assert events[-1]["text"] == offline_text(model, samples)

    run_with_server(model, scenario)


def test_a_port_in_use_is_one_clear_error(model: LoadedModel) -> None:
    async def scenario(server: CaptionServer, url: str) -> None:
        port = int(url.rsplit(":", 1)[1].strip("/"))
        with pytest.raises(ValueError, match=f"cannot listen on 127.0.0.1:{port} .*in use"):
            await serve(server, "127.0.0.1", port)

    run_with_server(model, scenario)
