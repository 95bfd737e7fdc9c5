"""Serve live captions over WebSocket, with a browser page that captions its microphone.

python serve.py --model=exports/demo --backend=onnx                  # then open http://127.0.0.1:8000/
python serve.py --model=exports/demo --backend=onnx --host=0.0.0.0 --port=9000 --max_streams=32

Every connected stream is decoded in shared rounds (one batched encoder call for all streams
with a chunk ready); the protocol is in rnnt/server.py. Browsers allow the microphone only on
https or on localhost. SIGINT (Ctrl-C) or SIGTERM stops the server: every open stream gets
its final first, then the script exits with status 130. This script imports no torch unless
--backend=torch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from absl import flags

from rnnt import cli
from rnnt.flags import define_runtime_flags, live_configs_from_flags
from rnnt.server import CaptionServer, serve

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # both end the open streams, then stop

RUNTIME = define_runtime_flags()
_HOST = flags.DEFINE_string("host", "127.0.0.1", "address to listen on")
_PORT = flags.DEFINE_integer(
    "port", 8000, "port for the page and the WebSocket (0: any free port)", lower_bound=0, upper_bound=65535
)
_MAX_STREAMS = flags.DEFINE_integer(
    "max_streams", 16, "streams served at once; more are refused", lower_bound=1
)


def main(argv: list[str]) -> None:
    del argv  # positional arguments are refused by cli.run
    logging.getLogger("websockets").setLevel(logging.WARNING)  # not a line per page load
    model = RUNTIME.load()
    server = CaptionServer(model, *live_configs_from_flags(model), max_streams=_MAX_STREAMS.value)
    asyncio.run(serve_until_signalled(server, _HOST.value, _PORT.value))
    raise KeyboardInterrupt  # stopped by a signal: reported and exited as Ctrl-C (cli.run)


async def serve_until_signalled(server: CaptionServer, host: str, port: int) -> None:
    """`serve` until one of STOP_SIGNALS, which cancels it (its open streams get their finals)."""
    serving = asyncio.create_task(serve(server, host, port))
    loop = asyncio.get_running_loop()
    for number in STOP_SIGNALS:
        loop.add_signal_handler(number, serving.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await serving


if __name__ == "__main__":
    cli.run(main)
