"""Numeric precision of the forward pass: fp32, bf16 or fp16 under autocast (on the CPU or a GPU),
or ``auto``: on a CUDA GPU bf16 where it has bf16 kernels (Ampere and later), else fp16; on a CPU
whichever of fp32 and bf16 multiplies matrices faster.

fp16 has a narrow exponent range: trained in it, gradients are scaled (``torch.amp.GradScaler``,
``seq2seq/training/step.py``) so that small ones do not flush to zero. On a CPU it works, slowly.

bf16 pays only on some CPUs, and their flags do not tell which: the AMD EPYC (Zen 4) and the
Intel Xeon measured for BENCHMARKS.md both report ``avx512_bf16``, yet an output-layer-sized
matmul runs 2.6x faster in bf16 on the first and at 0.7x the fp32 speed on the second. So
``auto`` times that matmul both ways, once per process.
"""

from __future__ import annotations

import functools
import logging
import time

import torch

from seq2seq.errors import ConfigError

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
AUTO_MIN_SPEEDUP = 1.25  # bf16 must beat fp32 by this much: a near tie is not worth the rounding


def check_precision(option: str, value: str) -> None:
    """A ConfigError naming ``option`` unless ``value`` is one of PRECISIONS."""
    if value not in PRECISIONS:
        raise ConfigError(f"{option}={value!r}: expected one of {', '.join(PRECISIONS)}")


def resolve_precision(value: str, option: str = "precision", device_type: str = "cpu") -> str:
    """``fp32``, ``bf16`` or ``fp16``: ``value`` itself, or what ``auto`` means on ``device_type``
    (``cuda``: bf16 where the GPU supports it, else fp16; ``cpu``: the faster of fp32 and bf16)."""
    check_precision(option, value)
    if value != "auto":
        return value
    if device_type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return auto_precision()


@functools.lru_cache(maxsize=1)
def auto_precision() -> str:
    """What ``auto`` means in this process: timed once, logged once."""
    speedup = bf16_matmul_speedup()
    chosen = "bf16" if speedup >= AUTO_MIN_SPEEDUP else "fp32"
    log.info("precision auto: %s (a bf16 matmul runs at %.2fx the fp32 speed here)", chosen,
             speedup)
    return chosen


def bf16_matmul_speedup(rows: int = 1024, inner: int = 512, cols: int = 4096,
                        repeats: int = 5) -> float:
    """fp32 time / bf16 time of one output-layer-sized matmul (best of ``repeats`` each), ~0.3 s.

    The two are timed in turns, not one after the other: another process that takes a core for
    a moment then slows both alike instead of one (a probe run beside a short job once measured
    bf16 at 1.91x on a Xeon where it runs at 0.5-0.6x, and chose it)."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(rows, inner, generator=generator)
    b = torch.randn(inner, cols, generator=generator)
    operands = {"fp32": (a, b), "bf16": (a.bfloat16(), b.bfloat16())}
    for x, y in operands.values():
        x @ y  # the first call picks and caches kernels
    best = {name: float("inf") for name in operands}
    for _ in range(repeats):
        for name, (x, y) in operands.items():
            start = time.perf_counter()
            x @ y
            best[name] = min(best[name], time.perf_counter() - start)
    return best["fp32"] / best["bf16"]


def autocast(precision: str, device_type: str = "cpu") -> torch.autocast:
    """The forward pass's context for a resolved precision on ``device_type`` (``cpu``, ``cuda``;
    another, such as ``meta``, runs in fp32). bf16 or fp16: autocast, which runs matmuls and RNN
    layers in that type (and what follows them on their outputs), while the weights, gradients
    and optimizer state stay fp32."""
    if precision not in ("fp32", *DTYPES):
        raise ValueError(f"resolve precision {precision!r} first (resolve_precision)")
    enabled = precision in DTYPES and device_type in ("cpu", "cuda")
    return torch.autocast(device_type if enabled else "cpu",
                          dtype=DTYPES.get(precision, torch.bfloat16), enabled=enabled)


def add_precision_option(parser, help_text: str = (
        "translation: matrix multiplies in fp32, bf16 or fp16, or auto (bf16 or fp16 on a GPU, "
        "the faster of fp32 and bf16 on a CPU); default: "
        "the checkpoint's search.precision")) -> None:
    """The ``--precision`` option of a command-line tool (default None: the tool's own)."""
    parser.add_argument("--precision", choices=PRECISIONS, default=None, help=help_text)
