"""The run folder a training writes: checked before any training time is spent, held by one
process for the run's life, and never shared by two runs.

A fresh run refuses a folder that holds another run's files (its step checkpoints could be
averaged into the new run's report, its metrics appended to), unless told to clear it; a resumed
run needs the folder's ``checkpoints/last.pt``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from seq2seq.errors import ConfigError

# What a run leaves in its folder (Hydra's .hydra/ and train.log are written before it starts,
# and rewritten by every command pointed at the folder, a refused one too).
RUN_FILES = ("checkpoints", "metrics.csv", "tensorboard", "report.*", "*.png", "test.hyp.*",
             "failed.json")


class RunFolderError(ConfigError):
    """The run folder cannot take this run (another run's files, no last.pt, another process)."""


def check_writable(run_dir: Path, min_free_mib: int = 100) -> None:
    """Fail before any training time is spent if the run folder is unwritable or the disk full."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_bytes(b"x")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"run folder {run_dir} is not writable: {err}") from None
    free = shutil.disk_usage(run_dir).free // 2**20
    if free < min_free_mib:
        raise ConfigError(f"run folder {run_dir} has {free} MiB free; need at least {min_free_mib}")


def check_space(run_dir: Path, parameters: int, keep_checkpoints: int, moving_average: bool
                ) -> None:
    """Fail before training when the disk cannot hold the run's checkpoints: best.pt, last.pt,
    ``keep_checkpoints`` step files and the next write's temporary, each with the weights and
    Adam's two moments (and the moving average) of ``parameters`` float32 values, less what a
    resumed run's checkpoints hold already."""
    per_checkpoint = 4 * parameters * (4 if moving_average else 3)
    # best.pt, last.pt, the step files and the temporary file of the next write; a resumed run's
    # files are on the disk already
    held = sum(f.stat().st_size for f in (run_dir / "checkpoints").glob("*.pt"))
    need = ((3 + keep_checkpoints) * per_checkpoint - held) // 2**20 + 10  # + metrics, reports
    free = shutil.disk_usage(run_dir / "checkpoints" if (run_dir / "checkpoints").is_dir()
                             else run_dir).free // 2**20
    if free < need:
        raise ConfigError(f"run folder {run_dir} has {free} MiB free; this run's checkpoints need "
                          f"about {need} MiB more ({parameters:,} parameters, best.pt, last.pt "
                          f"and trainer.keep_checkpoints={keep_checkpoints} step files)")


def claim(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """Check that ``run_dir`` may take this run: with ``resume``, it must hold ``last.pt``; a
    fresh run needs a folder without another run's files, or ``overwrite`` to remove them."""
    last = run_dir / "checkpoints" / "last.pt"
    if resume and not last.is_file():
        raise RunFolderError(f"resume=true: {last} not found, so there is nothing to resume; "
                             "start afresh without resume=true, or name the run's folder with "
                             "hydra.run.dir=...")
    found = sorted({path for pattern in RUN_FILES for path in run_dir.glob(pattern)})
    if found and not resume and not overwrite:
        raise RunFolderError(f"run folder {run_dir} holds a run already "
                             f"({', '.join(p.name for p in found)}): continue it with resume=true, "
                             "start a new one in another folder (hydra.run.dir=...), or clear this "
                             "one first with overwrite=true")
    for stale in run_dir.glob("**/.*.tmp"):  # a killed run's unfinished writes
        stale.unlink()
    for path in found if not resume else ():
        remove(path)


def remove(path: Path) -> None:
    """Remove a file or a folder; a linked folder (checkpoints on scratch space) is emptied, and
    the link kept."""
    if path.is_symlink() and path.is_dir():
        for child in path.iterdir():
            remove(child)
    elif path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir/.lock`` while the block runs: a second process that tries to train in the
    same folder gets a ConfigError naming the holder's pid. The lock goes with the process, so a
    killed run leaves none behind."""
    path = run_dir / ".lock"
    handle = open(path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise RunFolderError(f"run folder {run_dir} is in use by process {holder} (its .lock); "
                              "wait for it, or train in another folder (hydra.run.dir=...)") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()  # releases the lock
