"""Files written whole or not at all: a temporary file of its own beside the target, renamed over
it when complete, removed on failure."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_file(path: str | Path, mode: str = "w", fsync: bool = False) -> Iterator[IO]:
    """Yield a file opened with ``mode`` ("w": UTF-8 text with "\\n" line ends, "wb": bytes)
    that becomes ``path`` when the block ends without an error. A reader never sees half a file,
    a kill leaves the previous one intact, and processes writing the same path at once (the runs
    of a parallel multirun) do not take each other's temporary files. ``fsync``: flush to disk
    before the rename (checkpoints)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    text: dict[str, Any] = {} if "b" in mode else {"encoding": "utf-8", "newline": "\n"}
    try:
        with os.fdopen(fd, mode, **text) as handle:
            yield handle
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
