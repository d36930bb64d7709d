"""Files written whole or not at all: a temporary file of its own beside the target, renamed over
it when complete, removed on failure."""

from __future__ import annotations

import errno
import os
import stat
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
    before the rename (checkpoints). The file gets the mode a plain ``open`` would give it (the
    umask's, e.g. 0644), or the mode of the file it replaces, not mkstemp's private 0600, so that
    shared run folders stay readable."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    text: dict[str, Any] = {} if "b" in mode else {"encoding": "utf-8", "newline": "\n"}
    try:
        try:
            os.chmod(tmp, file_mode(path))
        except OSError as err:  # a file system without modes (CIFS, some FUSE mounts)
            if err.errno not in (errno.EPERM, errno.ENOTSUP):
                raise
        with os.fdopen(fd, mode, **text) as handle:
            yield handle
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# The process's umask, read once: reading it means setting it, which other threads would race.
UMASK = os.umask(0)
os.umask(UMASK)


def file_mode(path: Path) -> int:
    """The permission bits for a new version of ``path``: those of the file there now, else
    0666 less the process's umask (what ``open(path, "w")`` would create)."""
    try:
        return stat.S_IMODE(path.stat().st_mode) & 0o777  # no setuid, setgid or sticky bits
    except FileNotFoundError:
        return 0o666 & ~UMASK
