"""SIGINT, SIGTERM and SIGUSR1 during training: noted, so that the step in progress finishes and
last.pt is saved (``Trainer``), instead of the process dying in the middle of writing a checkpoint."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any, Optional

# SIGUSR1: a cluster's warning before it pre-empts a job (Slurm's --signal), handled as SIGTERM.
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


class StopSignals:
    """While entered, SIGINT, SIGTERM and SIGUSR1 set ``received`` instead of stopping the process
    (in the main thread only: elsewhere Python cannot install handlers, and signals are left
    alone). A second SIGINT (Ctrl-C twice) stops at once, as Python's own handler would."""

    def __init__(self) -> None:
        self.received: Optional[int] = None
        self._previous: dict[int, Any] = {}

    def _remember(self, signum: int, frame: Optional[FrameType]) -> None:  # noqa: ARG002
        if signum == signal.SIGINT and self.received is not None:
            raise KeyboardInterrupt
        self.received = signum

    def __enter__(self) -> "StopSignals":
        for signum in SIGNALS:
            try:
                self._previous[signum] = signal.signal(signum, self._remember)
            except ValueError:  # not the main thread
                pass
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
