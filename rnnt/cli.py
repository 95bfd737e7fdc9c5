"""What every top-level script shares: logging, allocator tuning and one-line errors.

Scripts start their `main` with `run`: an expected failure (bad input, missing file,
unusable checkpoint) prints one line `error: ...` and exits 1 instead of a traceback.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import sys
from collections.abc import Callable
from typing import Any

from absl import app

from rnnt.audio import AudioError
from rnnt.runtimes import ModelLoadError

log = logging.getLogger("rnnt")

M_TRIM_THRESHOLD = -1  # glibc mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's ceiling for this setting on 64-bit
TRIM_THRESHOLD_BYTES = 1 << 30


def tune_malloc() -> None:
    """Keep large buffers on the heap instead of mmap/munmap per call.

    The same as setting MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_: without it,
    PyTorch's oneDNN LSTM path re-faults its workspace pages on every call and its
    latency becomes erratic. A no-op where glibc is absent.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return
    libc = ctypes.CDLL(name)
    if hasattr(libc, "mallopt"):
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)


def expected_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean bad input rather than a bug."""
    # OSError: a missing input, an output path that is a directory, a full disk, a port in use.
    errors: list[type[BaseException]] = [AudioError, ModelLoadError, OSError, ValueError]
    # A module that was never imported raised nothing: importing it now would only load
    # torch (seconds) to report an error, and a torch-free deployment has neither.
    for module, name in (
        ("rnnt.checkpoint", "CheckpointError"),
        ("rnnt.corpus", "DataError"),
        ("rnnt.lm", "LmError"),
        ("rnnt.sherpa", "SherpaError"),
    ):
        if module in sys.modules:
            errors.append(getattr(sys.modules[module], name))
    return tuple(errors)


def require_flags(*holders: Any) -> None:
    """ValueError ("--name is required") for the first of these absl flags left empty."""
    for holder in holders:
        if not holder.value:
            raise ValueError(f"--{holder.name} is required")


def run(main: Callable[[list[str]], Any]) -> None:
    """`absl.app.run(guarded(main))`, and a flagfile that is not text (absl reads it before
    `main` starts, outside `guarded`) also answered with one line and exit 1."""
    try:
        app.run(guarded(main))
    except UnicodeDecodeError as error:
        # Written directly: absl's logging would first warn that flags are not parsed yet.
        sys.stderr.write(f"error: a --flagfile is not UTF-8 text ({error})\n")
        sys.exit(1)


def guarded(main: Callable[[list[str]], Any]) -> Callable[[list[str]], Any]:
    """Wrap an absl `main`: logging set up, positional arguments refused, expected errors as
    one line and exit 1."""

    @functools.wraps(main)
    def wrapper(argv: list[str]) -> Any:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
        tune_malloc()
        try:
            if len(argv) > 1:  # every script takes flags only
                raise ValueError(f"unexpected arguments: {' '.join(argv[1:])} (flags are --name=value)")
            return main(argv)
        except expected_errors() as error:
            log.error("error: %s", error)
            sys.exit(1)
        except KeyboardInterrupt:
            log.error("interrupted")
            sys.exit(130)

    return wrapper
