"""Process settings for training on a CPU.

glibc hands every allocation above its mmap threshold (at most 32 MiB) to the kernel as fresh
pages and gives them back on free. A translation step allocates several [tokens, vocab] float
matrices (64 MiB for 2,000 target tokens and 8k pieces), so each step pays for page faults on
memory it just released: the output layer's matmul runs 70 ms instead of 60 and its log-softmax 23
ms instead of 9 on this project's 2-core machine. ``keep_freed_memory`` tells glibc to serve every
allocation from its heap and keep freed memory for reuse, the effect a caching allocator has.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import logging
import os
import re
import stat
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Mapping, Optional

from seq2seq.errors import ConfigError

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # glibc mallopt parameters (malloc.h)
M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse instead of unmapping it (no-op elsewhere).

    Returns whether the setting took effect. The process does not give memory back to the
    system until it exits, which suits a training or benchmark run, and its peak can grow: a
    freed block that small allocations have since hemmed in serves smaller requests only, so a
    request as big as it (plus alignment) extends the heap instead (the benchmark's peak RSS
    went from about 2.8 to 3.3 GiB).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    applied = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
    if not applied:
        log.warning("could not set glibc's allocator to keep freed memory; training runs slower")
    return applied


# -- CPU threads ------------------------------------------------------------------------------------
# torch starts one intra-op thread per core in every process. Two runs side by side on the same
# cores then run twice as many threads as cores, and OpenMP's threads spin while they wait for each
# other, so each run went 7.5 times slower than alone on a 2-core machine. ``num_threads: auto``
# gives each process its share of the cores: the ranks of a torchrun job and the jobs of a parallel
# Hydra launcher are known at start; runs started by hand find each other through ``SharedCores``,
# a folder where every training run registers, and re-divide the cores as runs come and go.
# Making OpenMP's threads sleep instead (OMP_WAIT_POLICY=PASSIVE) also cured the 7.5x, but cost a
# run alone a quarter of its training speed (BENCHMARKS.md: "Threads").

def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, which taskset and containers narrow;
    ``os.cpu_count()`` counts the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no sched_getaffinity
        return os.cpu_count() or 1


def thread_share(cores: int, local_world_size: int = 1, parallel_jobs: int = 1) -> int:
    """Threads for one process: the ``cores`` divided among the ``local_world_size`` ranks of a
    torchrun job on this machine and the ``parallel_jobs`` runs a parallel Hydra launcher starts
    together; at least one."""
    return max(1, cores // (max(1, local_world_size) * max(1, parallel_jobs)))


def launcher_jobs(n_jobs: Any, cores: int) -> int:
    """How many runs a joblib launcher with ``n_jobs`` runs at once: joblib's convention, where
    -1 is one per core and -2 one fewer."""
    jobs = int(n_jobs) if n_jobs is not None else 1
    if jobs < 0:
        jobs = cores + 1 + jobs
    return max(1, min(jobs, cores))


def parallel_jobs(cores: int) -> int:
    """The runs started together with this one by Hydra's launcher: ``hydra.launcher.n_jobs`` of a
    joblib launcher (hydra/launcher=joblib), else 1 (one run, or a sequential sweep)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        if not HydraConfig.initialized():
            return 1
        launcher = HydraConfig.get().launcher
    except Exception:  # no Hydra, or a config without a launcher node: a run of its own
        return 1
    if "joblib" not in str(launcher.get("_target_", "")):
        return 1
    return launcher_jobs(launcher.get("n_jobs"), cores)


def resolve_num_threads(setting: Any, cores: int | None = None,
                        env: Mapping[str, str] | None = None, jobs: int | None = None) -> int | None:
    """The intra-op threads for ``num_threads``: a positive number as given; ``auto`` this
    process's share of the cores (``thread_share``, the ranks from torchrun's LOCAL_WORLD_SIZE);
    None (``null``) for torch's own default.

    Raises ConfigError naming ``num_threads`` for any other value.
    """
    if setting is None:
        return None
    if isinstance(setting, str) and setting.strip().lower() == "auto":
        cores = available_cores() if cores is None else cores
        env = os.environ if env is None else env
        try:
            ranks = int(env.get("LOCAL_WORLD_SIZE", "1"))
        except ValueError:
            ranks = 1
        return thread_share(cores, ranks, parallel_jobs(cores) if jobs is None else jobs)
    if isinstance(setting, bool) or not isinstance(setting, (int, str)) \
            or not str(setting).isdigit() or int(setting) < 1:
        raise ConfigError(f"num_threads={setting!r}: expected auto, null or a positive number of "
                          "threads")
    return int(setting)


def apply_num_threads(setting: Any, threads: int | None = None, cores: int | None = None
                      ) -> int | None:
    """Set torch's intra-op and inter-op threads to ``threads`` (default: ``num_threads`` resolved,
    ``resolve_num_threads``); returns the number set, or None when torch keeps its default."""
    import torch  # here, not at the top: keep_freed_memory's users import this module early

    threads = resolve_num_threads(setting) if threads is None else threads
    if threads is None:
        return None
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # settable once per process, before any inter-op work (tests, a 2nd run)
        pass
    log.info("CPU threads: %d intra-op (num_threads=%s, %d cores available)", threads, setting,
             available_cores() if cores is None else cores)
    return threads


RUNS_DIR_ENV = "SEQ2SEQ_RUNS_DIR"


def runs_dir() -> Path:
    """The folder where running trainings register: ``$SEQ2SEQ_RUNS_DIR``, else one per user in
    the temporary directory."""
    named = os.environ.get(RUNS_DIR_ENV)
    return Path(named) if named else Path(tempfile.gettempdir()) / f"seq2seq-runs-{os.getuid()}"


def process_start(pid: int) -> str:
    """When process ``pid`` started (Linux: /proc/PID/stat's 22nd field, in clock ticks since
    boot), which tells a live run from a later process given the same pid; "" where unknown."""
    try:
        line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = line.rsplit(")", 1)[-1].split()  # the name in brackets may hold spaces
    return fields[19] if len(fields) > 19 else ""


def process_alive(pid: int, started: str) -> bool:
    """Whether ``pid`` runs and, where both start times are known, is the process that registered."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        pass
    now = process_start(pid)
    return not (started and now) or now == started


# An entry's name: the pid and its start time, so a later process with the same pid is another name.
ENTRY = re.compile(r"([0-9]{1,10})-([0-9]{0,20})")


def private_folder(folder: Path) -> bool:
    """Whether ``folder`` is a real folder of this user that no one else may write into (another
    user could otherwise plant entries, or links that writing an entry would follow)."""
    try:
        info = os.lstat(folder)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077


class SharedCores:
    """A training run's share of the machine's cores among the seq2seq trainings running on it.

    With ``num_threads: auto`` the run registers in ``runs_dir()`` (an empty file named by its pid
    and start time) while it trains; its threads are the cores divided by the runs registered
    there (at least its torchrun ranks times its Hydra launcher's parallel jobs), and ``rebalance``
    re-divides them while it trains, so two runs started by hand each take half and the one left
    takes all. A run that died without unregistering is recognised by its pid and dropped. An
    explicit number (or null) sets the threads once, as ``apply_num_threads`` does, and registers
    nothing; so does every run on a system without POSIX processes.
    """

    def __init__(self, setting: Any, directory: Optional[Path] = None,
                 cores: Optional[int] = None, env: Optional[Mapping[str, str]] = None) -> None:
        self.setting = setting
        self.auto = isinstance(setting, str) and setting.strip().lower() == "auto"
        self.shares = self.auto and os.name == "posix"
        self.directory = Path(directory) if directory is not None else (
            runs_dir() if self.shares else Path())
        self.cores = available_cores() if cores is None else cores
        self.env = os.environ if env is None else env
        self.entry: Optional[Path] = None
        self._checked = -float("inf")

    def __enter__(self) -> "SharedCores":
        global _active
        if self.shares:
            self._register()
        self.apply()
        _active = self
        return self

    def __exit__(self, kind: Optional[type], error: Optional[BaseException],
                 trace: Optional[TracebackType]) -> None:
        global _active
        _active = None
        self.close()

    def _register(self) -> None:
        entry = self.directory / f"{os.getpid()}-{process_start(os.getpid())}"
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not private_folder(self.directory):
                raise OSError(f"not a folder of this user's alone (mode 0700): {self.directory}")
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
            try:
                os.close(os.open(entry, flags, 0o600))
            except FileExistsError:  # this process registered before and did not leave
                pass
        except OSError as error:  # read-only or someone else's: divide the cores as at start
            log.warning("cannot register in %s to share the cores with other runs: %s",
                        self.directory, error)
            return
        self.entry = entry
        atexit.register(self.close)

    def close(self) -> None:
        """Unregister (safe to call twice)."""
        if self.entry is not None:
            self.entry.unlink(missing_ok=True)
            self.entry = None
            atexit.unregister(self.close)

    def live_runs(self) -> int:
        """The registered runs still running, this one included; drops the entries of dead ones."""
        count = 1
        try:
            names = [path.name for path in self.directory.iterdir()]
        except OSError:
            return count
        for name in names:
            match = ENTRY.fullmatch(name)
            if match is None or int(match[1]) == os.getpid():
                continue
            if process_alive(int(match[1]), match[2]):
                count += 1
            else:
                (self.directory / name).unlink(missing_ok=True)
        return count

    def threads(self) -> int | None:
        """The intra-op threads this run should use now."""
        if not self.auto:
            return resolve_num_threads(self.setting)
        started_together = resolve_num_threads("auto", cores=self.cores, env=self.env)
        assert started_together is not None
        return max(1, min(started_together, self.cores // self.live_runs()))

    def apply(self) -> int | None:
        """Set torch's threads to ``threads()`` (inter-op ones too, where still settable)."""
        return apply_num_threads(self.setting, self.threads(), self.cores)

    def rebalance(self, every_seconds: float = 5.0) -> None:
        """With ``auto``, at most every ``every_seconds``: follow the runs that started or ended."""
        now = time.monotonic()
        if self.entry is None or now - self._checked < every_seconds:
            return
        self._checked = now
        import torch

        try:
            threads = self.threads()
        except Exception as error:  # the registry never stops a training: keep the threads
            log.warning("cannot count the runs in %s (%s); the threads stay as they are",
                        self.directory, error)
            self.close()
            return
        if threads is not None and threads != torch.get_num_threads():
            log.info("CPU threads: %d intra-op (seq2seq runs on this machine share %d cores)",
                     threads, self.cores)
            torch.set_num_threads(threads)


_active: Optional[SharedCores] = None


def rebalance_threads() -> None:
    """Let the training run's ``SharedCores`` (if any) follow the runs that started or ended."""
    if _active is not None:
        _active.rebalance()
