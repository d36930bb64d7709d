"""Data-parallel training on ``torch.distributed``, launched by ``torchrun``.

Every rank holds a full copy of the model and trains on its own share of each epoch's batches.
``torch.nn.parallel.DistributedDataParallel`` (``training/step.py``) all-reduces the gradients in
buckets while the last backward pass of a step runs; one more small all-reduce (``sum_scalars``)
sums the loss and the target token counts of all ranks, so every rank applies the same update: the
gradient of the summed loss divided by the *global* number of target tokens. That is exactly what
one process computes with gradient accumulation over the same batches
(``trainer.accumulate_batches``), which is how the tests check it. Only rank 0 writes checkpoints,
metrics and reports. gloo reduces CPU tensors, nccl GPU ones (``distributed.backend=auto`` picks
by the run's ``device``).

Without ``torchrun`` (no ``WORLD_SIZE`` in the environment) everything here is a no-op.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence

import torch
import torch.distributed as dist

from seq2seq.errors import ConfigError, check_choice

log = logging.getLogger(__name__)

BACKENDS = ("auto", "gloo", "nccl")


@dataclass(frozen=True)
class Distributed:
    """This process's place in the job: rank ``rank`` of ``world_size``."""

    rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    @contextlib.contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block first (e.g. to fill a cache), then the other ranks."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value``, on every rank (any picklable object)."""
        if not self.enabled:
            return value
        box = [value if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank."""
        if not self.enabled:
            return [value]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def sum_scalars(self, scalars: Sequence[float], device: torch.device) -> list[float]:
        """The ``scalars`` summed over all ranks, in float64 (token counts stay exact), with one
        all-reduce of a tensor on ``device`` (nccl reduces GPU tensors only)."""
        if not self.enabled:
            return list(scalars)
        values = torch.tensor(list(scalars), dtype=torch.float64, device=device)
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        return values.tolist()


def choose_backend(backend: str, device: torch.device) -> str:
    """``distributed.backend`` for a run on ``device``: ``auto`` is nccl for CUDA, else gloo;
    nccl for a run on the CPU is a ConfigError (it reduces GPU tensors only)."""
    check_choice("distributed.backend", backend, BACKENDS)
    if backend == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and device.type != "cuda":
        raise ConfigError(f"distributed.backend=nccl reduces GPU tensors, but the run's device is "
                          f"{device}: set device=cuda (or auto on GPUs), or distributed.backend=gloo")
    return backend


def init_distributed(backend: str = "auto", timeout_minutes: float = 30.0,
                     device: Optional[torch.device] = None) -> Distributed:
    """Join the process group described by torchrun's environment variables, if any, with the
    backend for ``device`` (None: the CPU; ``choose_backend``)."""
    device = device or torch.device("cpu")
    backend = choose_backend(backend, device)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE is set but this torch build has no torch.distributed")
    if not dist.is_initialized():
        _import_dynamo_first()
        if device.type == "cuda":
            torch.cuda.set_device(device)  # nccl's and the object collectives' current GPU
        dist.init_process_group(backend=backend,
                                timeout=datetime.timedelta(minutes=timeout_minutes))
    context = Distributed(dist.get_rank(), dist.get_world_size())
    if not context.is_main:
        # One copy of each log line is enough; rank 0 speaks for the job.
        logging.getLogger("seq2seq").setLevel(logging.WARNING)
    log.info("Distributed training: %d ranks, backend %s", context.world_size, dist.get_backend())
    return context


def _import_dynamo_first() -> None:
    """Import ``torch._dynamo`` before the process group exists.

    Imported later (``torch.optim`` does it when the first optimizer is built), it keeps ten
    references to the default group (torch 2.13), so ``destroy_process_group`` can no longer free
    it and join gloo's worker threads. A worker still releasing the last collective's tensors when
    the interpreter finalizes then aborts the rank ("terminate called without an active
    exception", SIGABRT: about one 2-rank run in 30 of tests/test_distributed.py).
    """
    import torch._dynamo  # noqa: F401


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
