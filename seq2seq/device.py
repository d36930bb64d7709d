"""Where a model runs: the ``device`` option (``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``) resolved to
a ``torch.device``, and batches moved there.

``auto`` takes CUDA when torch sees a GPU, else the CPU. Under torchrun (``LOCAL_RANK`` set) ``auto``
and ``cuda`` mean ``cuda:LOCAL_RANK``: one GPU per rank of a node (a fixed ``cuda:N`` is refused
there). Asking for a GPU that is not there
is a ConfigError naming the option, raised before any work is done.
"""

from __future__ import annotations

import os
import re
from typing import Any, Optional, TypeVar

import torch
from torch import Tensor, nn

from seq2seq.errors import ConfigError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N")  # for help texts and messages
_CUDA = re.compile(r"cuda(?::(\d+))?")

B = TypeVar("B")


def resolve_device(value: Optional[str], option: str = "device") -> torch.device:
    """``value`` (None: ``auto``) as a ``torch.device``; a ConfigError naming ``option`` when it is
    not one of ``DEVICE_CHOICES`` or names a GPU this machine does not have."""
    value = "auto" if value is None else str(value).strip().lower()
    local_rank = os.environ.get("LOCAL_RANK")
    if value == "cpu":
        return torch.device("cpu")
    if value == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        value = "cuda"
    match = _CUDA.fullmatch(value)
    if match is None:
        raise ConfigError(f"{option}={value!r}: expected one of {', '.join(DEVICE_CHOICES)}")
    if match.group(1) is not None and int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1) > 1:
        raise ConfigError(f"{option}={value}: under torchrun every rank would take that one GPU; "
                          f"use {option}=cuda (or auto), which gives each rank cuda:LOCAL_RANK")
    if not torch.cuda.is_available():
        raise ConfigError(f"{option}={value}: this machine has no CUDA GPU that torch can use "
                          f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); "
                          f"use {option}=cpu or {option}=auto")
    index = int(match.group(1)) if match.group(1) is not None else int(local_rank or 0)
    count = torch.cuda.device_count()
    if index >= count:
        raise ConfigError(f"{option}={value}: GPU {index} asked for, but this machine has "
                          f"{count} (cuda:0 to cuda:{count - 1})")
    return torch.device("cuda", index)


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's first parameter (or buffer); the CPU for a model without any."""
    for param in model.parameters():
        return param.device
    for buffer in model.buffers():
        return buffer.device
    return torch.device("cpu")


def to_device(batch: B, device: torch.device, non_blocking: Optional[bool] = None) -> B:
    """``batch`` (a NamedTuple of tensors, or a tensor) with its tensors on ``device``.

    To a GPU, each tensor is first pinned (page-locked), so that the copy is asynchronous
    (``non_blocking``) and overlaps the work already queued; to the CPU, or already there, a
    tensor is returned as it is. Non-tensor fields are kept."""
    if non_blocking is None:
        non_blocking = device.type == "cuda"

    def move(value: Any) -> Any:
        if not isinstance(value, Tensor) or value.device == device:
            return value
        if non_blocking and value.device.type == "cpu" and device.type == "cuda":
            value = value.pin_memory()
        return value.to(device, non_blocking=non_blocking)

    if isinstance(batch, Tensor):
        return move(batch)
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a NamedTuple
        return type(batch)(*(move(value) for value in batch))  # type: ignore[return-value]
    if isinstance(batch, (tuple, list)):
        return type(batch)(move(value) for value in batch)  # type: ignore[return-value]
    return batch


def add_device_option(parser: Any) -> None:
    """The ``--device`` option of a tool that runs a model (an argparse parser); resolve it with
    ``resolve_device(args.device, "--device")`` before any work."""
    parser.add_argument("--device", default=None,
                        help="where the model runs: auto (a CUDA GPU when there is one, else the "
                             "CPU) | cpu | cuda | cuda:N; default: auto")
