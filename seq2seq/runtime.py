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


def apply_num_threads(setting: Any) -> int | None:
    """Set torch's intra-op and inter-op threads from ``num_threads`` (``resolve_num_threads``);
    returns the number set, or None when torch keeps its default."""
    import torch  # here, not at the top: keep_freed_memory's users import this module early

    threads = resolve_num_threads(setting)
    if threads is None:
        return None
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # settable once per process, before any inter-op work (tests, a 2nd run)
        pass
    log.info("CPU threads: %d intra-op (num_threads=%s, %d cores available)", threads, setting,
             available_cores())
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
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = stat.rsplit(")", 1)[-1].split()  # the name in brackets may hold spaces
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


class SharedCores:
    """A training run's share of the machine's cores among the seq2seq trainings running on it.

    With ``num_threads: auto`` the run registers in ``runs_dir()`` (a file named by its pid) while
    it trains; its threads are the cores divided by the runs registered there (at least its
    torchrun ranks times its Hydra launcher's parallel jobs), and ``rebalance`` re-divides them
    while it trains, so two runs started by hand each take half and the one left takes all. A run
    that died without unregistering is recognised by its pid and dropped. An explicit number (or
    null) sets the threads once, as ``apply_num_threads`` does, and registers nothing.
    """

    def __init__(self, setting: Any, directory: Optional[Path] = None,
                 cores: Optional[int] = None, env: Optional[Mapping[str, str]] = None) -> None:
        self.setting = setting
        self.auto = isinstance(setting, str) and setting.strip().lower() == "auto"
        self.directory = runs_dir() if directory is None else Path(directory)
        self.cores = available_cores() if cores is None else cores
        self.env = os.environ if env is None else env
        self.entry: Optional[Path] = None
        self._checked = -float("inf")

    def __enter__(self) -> "SharedCores":
        global _active
        if self.auto:
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
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            entry = self.directory / str(os.getpid())
            entry.write_text(process_start(os.getpid()))
        except OSError as error:  # a read-only or missing temporary folder: divide as at start
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

    def live_runs(self) -> int:
        """The registered runs still running, this one included; drops the entries of dead ones."""
        count = 1 if self.entry is not None else 0
        try:
            entries = list(self.directory.iterdir())
        except OSError:
            return max(1, count)
        for path in entries:
            if not path.name.isdigit() or int(path.name) == os.getpid():
                continue
            try:
                started = path.read_text()
            except OSError:  # unregistered while we looked
                continue
            if process_alive(int(path.name), started):
                count += 1
            else:
                path.unlink(missing_ok=True)
        return max(1, count)

    def threads(self) -> int | None:
        """The intra-op threads this run should use now."""
        if not self.auto:
            return resolve_num_threads(self.setting)
        started_together = resolve_num_threads("auto", cores=self.cores, env=self.env)
        assert started_together is not None
        return max(1, min(started_together, self.cores // self.live_runs()))

    def apply(self) -> int | None:
        """Set torch's threads to ``threads()`` (inter-op ones too, where still settable)."""
        import torch

        threads = self.threads()
        if threads is None:
            return None
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:  # settable once per process, before any inter-op work
            pass
        log.info("CPU threads: %d intra-op (num_threads=%s, %d cores available)", threads,
                 self.setting, self.cores)
        return threads

    def rebalance(self, every_seconds: float = 5.0) -> None:
        """With ``auto``, at most every ``every_seconds``: follow the runs that started or ended."""
        now = time.monotonic()
        if self.entry is None or now - self._checked < every_seconds:
            return
        self._checked = now
        import torch

        threads = self.threads()
        if threads is not None and threads != torch.get_num_threads():
            log.info("CPU threads: %d intra-op (%d seq2seq runs on this machine)", threads,
                     self.live_runs())
            torch.set_num_threads(threads)


_active: Optional[SharedCores] = None


def rebalance_threads() -> None:
    """Let the training run's ``SharedCores`` (if any) follow the runs that started or ended."""
    if _active is not None:
        _active.rebalance()
