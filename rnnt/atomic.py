"""Files written whole or not at all: a killed run never leaves a truncated output.

Each write goes to a temporary file beside the target, is flushed to disk, then renamed
over the target (a rename within one directory is atomic on POSIX file systems).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def _new_file_mode() -> int:
    """The permissions `open()` gives a new file: 0o666 less the process's umask (read by
    setting it, the only way, and restoring it at once)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


# mkstemp makes its file private (0o600); outputs (checkpoints, captions, exports) are shared
# like any other file the user writes. Read once: a process does not change its umask mid-run.
NEW_FILE_MODE = _new_file_mode()


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """A file to write (`mode` "w" or "wb") that replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, NEW_FILE_MODE)
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    """`path.write_text(text)`, atomically."""
    with atomic_open(path) as file:
        file.write(text)
