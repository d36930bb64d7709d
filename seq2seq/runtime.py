"""Process settings for training on a CPU.

glibc hands every allocation above its mmap threshold (at most 32 MiB) to the kernel as fresh
pages and gives them back on free. A translation step allocates several [tokens, vocab] float
matrices (64 MiB for 2,000 target tokens and 8k pieces), so each step pays for page faults on
memory it just released: the output layer's matmul runs 70 ms instead of 60 and its log-softmax 23
ms instead of 9 on this project's 2-core machine. ``keep_freed_memory`` tells glibc to serve every
allocation from its heap and keep freed memory for reuse, the effect a caching allocator has.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
from typing import Any, Mapping

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
# gives each process its share of the cores where it can know the others (torchrun's ranks, a
# parallel Hydra launcher's jobs); ``quiet_openmp`` makes the threads of runs that cannot know each
# other (two commands started by hand) sleep instead of spinning when they wait.

def quiet_openmp(env: Any = None) -> None:
    """Let OpenMP's waiting threads sleep (``OMP_WAIT_POLICY=PASSIVE``) unless the environment says
    otherwise. OpenMP reads it when torch loads it, so this runs before ``import torch``: the
    training tool imports this module first; this module never imports torch at its top."""
    env = os.environ if env is None else env
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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
    import torch  # here, not at the top: see quiet_openmp

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


# At import, as the training tool imports this module before anything that loads torch.
quiet_openmp()
