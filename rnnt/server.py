"""A WebSocket caption server: many live streams decoded together, and a browser page.

Protocol (one WebSocket per stream): the server first sends `{"kind": "ready",
"sample_rate": R, "chunk_ms": C}` (C: the audio per encoder call, the configured `chunk_ms`
in whole encoder frames); the client may then send `{"type": "hotwords", "phrases":
["ada lovelace", "grace hopper :2.0", ...]}` (before any audio; a server with beam search) for
its stream alone, then sends binary messages of mono float32 little-endian samples at R Hz, of
any length up to `MAX_MESSAGE_S` (10 minutes) each, and the text `{"type": "end"}` when its
stream ends; the server sends each caption event as JSON (`CaptionEvent.as_dict`: partial and
final text with token times) and closes the connection after the last final. A bad message
(not JSON, unknown, not whole float32 samples, a NaN or inf sample, ...) closes the
connection with code 1003 and the reason. A client that drops ends its stream the same way
(its open segment is closed, for the log). When the server stops (`serve` cancelled), every
open stream ends as if its client had sent `end`: it gets its final, then the connection
closes.

One decoding loop serves every stream: each round takes the audio that arrived for all of
them and runs `rnnt.streaming.decode_chunks`, which stacks the encoder states of the streams
with a whole chunk buffered into one batched encoder call. The round runs in a worker
thread, so the event loop keeps receiving while the networks compute; audio that arrives
meanwhile goes to the next round. `GET /` serves the page (`rnnt/web/index.html`), which
captures the microphone in the browser and shows the captions.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

import numpy as np

from rnnt.config import DecodeConfig, StreamConfig
from rnnt.fusion import NO_FUSION, Fusion
from rnnt.hotwords import HotwordsError, hotwords_from_text
from rnnt.runtimes import LoadedModel
from rnnt.streaming import FINAL, CaptionEvent, StreamingRecognizer, decode_chunks

log = logging.getLogger(__name__)

PAGE = Path(__file__).with_name("web") / "index.html"
END_MESSAGE = "end"  # the `type` of the text message that ends a stream
HOTWORDS_MESSAGE = "hotwords"  # the `type` of the text message that sets a stream's hotwords
BYTES_PER_SAMPLE = 4  # float32
BUSY_CODE = 1013  # WebSocket close code "try again later": the server is full
PROTOCOL_ERROR_CODE = 1003  # "unsupported data"
GOING_AWAY_CODE = 1001  # the server is stopping
# The longest binary message, s of audio: websockets' default limit (1 MiB, 16 s at 16 kHz)
# would close a client sending a recording in a few messages with 1009.
MAX_MESSAGE_S = 600.0
SHUTDOWN_TIMEOUT_S = 30.0  # on stopping, the longest wait for open streams' finals to be sent


class ProtocolError(ValueError):
    """A client message the protocol does not allow."""


@dataclass
class Session:
    """One client's stream: its recogniser, the audio not yet decoded, events to send."""

    recognizer: StreamingRecognizer
    pending: list[np.ndarray] = field(default_factory=list)
    ended: bool = False  # no more audio will come
    heard: bool = False  # audio has come, maybe not yet to the recogniser (hotwords no longer may)
    outbox: asyncio.Queue[list[CaptionEvent] | None] = field(default_factory=asyncio.Queue)
    finals: list[str] = field(default_factory=list)  # the stream's final texts, in order


@dataclass
class ServerStats:
    max_batch: int = 0  # most streams decoded in one round
    completed: list[list[str]] = field(default_factory=list)  # finals of each ended stream


class CaptionServer:
    """Streams of one model, decoded in shared rounds; `handle` serves one connection."""

    def __init__(
        self,
        model: LoadedModel,
        stream: StreamConfig,
        decode: DecodeConfig,
        fusion: Fusion = NO_FUSION,
        max_streams: int = 16,
    ):
        self.model = model
        self.stream = stream
        self.decode = decode
        self.fusion = fusion
        self.max_streams = max_streams
        self.sessions: list[Session] = []
        self.stats = ServerStats()
        self._work = asyncio.Event()
        self._senders: set[asyncio.Task[None]] = set()  # one per open connection
        self._closing = False  # stopping: open streams are being ended, new ones refused
        # One worker: the recognisers and the runtime are only ever used by one round at a time.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode")

    @property
    def max_message_bytes(self) -> int:
        """The largest binary message a client may send: `MAX_MESSAGE_S` of samples."""
        return round(MAX_MESSAGE_S * self.model.features.sample_rate) * BYTES_PER_SAMPLE

    async def handle(self, websocket: Any) -> None:
        """One client's stream, from its first message to its last final."""
        recognizer = await self._recognizer()
        # Checked after the await, with nothing awaited until the stream is added: connections
        # arriving together cannot all pass the bound.
        if refusal := self._refusal():
            await websocket.close(*refusal)
            return
        session = Session(recognizer)
        self.sessions.append(session)
        sender = asyncio.create_task(self._send(websocket, session))
        self._senders.add(sender)
        sender.add_done_callback(self._senders.discard)
        await websocket.send(json.dumps(self._ready(recognizer)))
        try:
            async for message in websocket:
                if await self._receive(session, message):
                    break
        except ProtocolError as error:
            await websocket.close(PROTOCOL_ERROR_CODE, str(error))
        except Exception as error:  # a dropped connection ends its stream
            log.info("stream dropped: %s", error)
        finally:
            session.ended = True
            self._work.set()
            await sender

    def _refusal(self) -> tuple[int, str] | None:
        """The close code and reason for a new stream the server cannot take, if so."""
        if self._closing:
            return GOING_AWAY_CODE, "server stopping"
        if len(self.sessions) >= self.max_streams:
            return BUSY_CODE, f"server full ({self.max_streams} streams)"
        return None

    def _ready(self, recognizer: StreamingRecognizer) -> dict[str, Any]:
        """The `ready` message: the sample rate and the chunk actually decoded per encoder
        call (`chunk_ms` rounded to whole encoder frames)."""
        features = self.model.features
        chunk_ms = recognizer.chunk_frames * features.frame_ms
        return {"kind": "ready", "sample_rate": features.sample_rate, "chunk_ms": chunk_ms}

    async def close_streams(self, timeout_s: float = SHUTDOWN_TIMEOUT_S) -> None:
        """End every open stream as its client's `end` would, and refuse new ones: each gets
        its final, then its connection closes; waits at most `timeout_s` for the sending."""
        self._closing = True
        for session in self.sessions:
            session.ended = True
        self._work.set()
        if self._senders:
            _, late = await asyncio.wait(self._senders, timeout=timeout_s)
            if late:
                log.warning("stopping: %d streams' finals not sent in %.0f s", len(late), timeout_s)

    async def _recognizer(self) -> StreamingRecognizer:
        """A new stream's recogniser, made in the decoding worker: making one runs the
        predictor, which a round may be running at the same moment."""
        loop = asyncio.get_running_loop()
        make = functools.partial(StreamingRecognizer, self.model, self.stream, self.decode, self.fusion)
        return await loop.run_in_executor(self._executor, make)

    async def _receive(self, session: Session, message: str | bytes) -> bool:
        """Take one message; True at the end of the stream."""
        if isinstance(message, bytes):
            session.pending.append(_samples(message))
            session.heard = True
            self._work.set()
            return False
        try:
            request = json.loads(message)
        except json.JSONDecodeError as error:
            raise ProtocolError(f"text messages must be JSON: {error}") from error
        kind = request.get("type") if isinstance(request, dict) else None
        if kind == HOTWORDS_MESSAGE:
            # In the event loop's thread: the session is in no round until its audio comes.
            session.recognizer.set_fusion(self._stream_fusion(session, request))
            return False
        if kind != END_MESSAGE:
            raise ProtocolError(f'unknown message {message[:80]!r} (expected {{"type": "{END_MESSAGE}"}})')
        return True

    def _stream_fusion(self, session: Session, request: dict[str, Any]) -> Fusion:
        """The server's LM with the hotwords of a `hotwords` message."""
        if session.heard:
            raise ProtocolError("hotwords must come before the first audio")
        if self.decode.beam_size == 1:
            raise ProtocolError("hotwords need beam search: start the server with --beam_size above 1")
        phrases = request.get("phrases")
        if not isinstance(phrases, list) or not all(isinstance(p, str) for p in phrases):
            raise ProtocolError('hotwords: "phrases" must be a list of strings')
        try:
            text = "\n".join(phrases)
            hotwords = hotwords_from_text(text, self.model.tokenizer, self.decode.hotwords_score, "hotwords")
        except HotwordsError as error:
            raise ProtocolError(str(error)) from error
        return Fusion(self.fusion.lm, hotwords)

    async def _send(self, websocket: Any, session: Session) -> None:
        """Send the session's events as they come; close after the last."""
        sending = True
        while (events := await session.outbox.get()) is not None:
            for event in events:
                if sending:
                    try:
                        await websocket.send(json.dumps(event.as_dict(), ensure_ascii=False))
                    except Exception:  # gone: keep draining, so that the stream still ends
                        sending = False
        await websocket.close()

    async def decode_forever(self) -> None:
        """The decoding loop: a round whenever audio or an end is waiting."""
        loop = asyncio.get_running_loop()
        while True:
            await self._work.wait()
            self._work.clear()
            ready = [s for s in self.sessions if s.pending or s.ended]
            if not ready:
                continue
            pieces = [_take(s) for s in ready]
            ended = [s.ended for s in ready]  # its last audio is in this round
            try:
                events = await loop.run_in_executor(self._executor, self._round, ready, pieces, ended)
            except Exception:  # a bug or a runtime failure: end these streams, keep serving
                log.exception("decoding failed; closing %d streams", len(ready))
                events, ended = [[] for _ in ready], [True] * len(ready)
            for session, session_events, done in zip(ready, events, ended, strict=True):
                session.finals += [e.text for e in session_events if e.kind == FINAL]
                session.outbox.put_nowait(session_events)
                if done:
                    session.outbox.put_nowait(None)
                    self.sessions.remove(session)
                    self.stats.completed.append(session.finals)
            if any(s.pending or s.ended for s in self.sessions):
                self._work.set()

    def _round(
        self, sessions: Sequence[Session], pieces: Sequence[np.ndarray], ended: Sequence[bool]
    ) -> list[list[CaptionEvent]]:
        """One decoding round (in the worker thread): all streams' new audio, batched."""
        self.stats.max_batch = max(self.stats.max_batch, sum(len(p) > 0 for p in pieces))
        events = decode_chunks([s.recognizer for s in sessions], pieces)
        for i, session in enumerate(sessions):
            if ended[i]:
                events[i] += session.recognizer.finish()
        return events


def _samples(message: bytes) -> np.ndarray:
    """A binary message's float32 samples (S,); ProtocolError unless whole and finite."""
    if len(message) % BYTES_PER_SAMPLE:
        raise ProtocolError("binary messages must hold whole float32 samples")
    samples = np.frombuffer(message, dtype="<f4").astype(np.float32)
    if not np.isfinite(samples).all():
        # NaN or inf would reach the features and the networks, and make up captions.
        raise ProtocolError("binary messages must hold finite samples (found NaN or inf)")
    return samples


def _take(session: Session) -> np.ndarray:
    pieces, session.pending = session.pending, []
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


def page_response(connection: Any, request: Any) -> Any:
    """`process_request` hook: plain HTTP GETs of / get the page; WebSocket upgrades pass."""
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return None
    if request.path.split("?")[0] not in ("/", "/index.html"):
        return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
    response = connection.respond(HTTPStatus.OK, PAGE.read_text(encoding="utf-8"))
    response.headers["Content-Type"] = "text/html; charset=utf-8"
    return response


async def serve(
    server: CaptionServer, host: str, port: int, ready: asyncio.Future[int] | None = None
) -> None:
    """Run `server` on host:port until cancelled; `ready` gets the bound port. Cancelled, it
    first ends the open streams (`CaptionServer.close_streams`): each client gets its final."""
    from websockets.asyncio.server import serve as websocket_serve

    decoder = asyncio.create_task(server.decode_forever())
    try:
        try:
            listener = await websocket_serve(
                server.handle, host, port, process_request=page_response, max_size=server.max_message_bytes
            )
        except OSError as error:
            raise ValueError(f"cannot listen on {host}:{port} ({error.strerror or error})") from error
        async with listener:
            bound = next(iter(listener.sockets)).getsockname()[1]
            log.info("captions at http://%s:%d/ (WebSocket on the same port)", host, bound)
            if ready is not None:
                ready.set_result(bound)
            try:
                await asyncio.Future()  # until cancelled
            finally:  # the decoder runs on while the streams end
                await server.close_streams()
    finally:
        decoder.cancel()
