"""Dynamic batching: requests that arrive close together run as one model call.

The model runs in one worker thread, so the event loop keeps accepting requests while it works;
requests that arrive meanwhile wait in the queue and make the next batch larger, which is how
throughput grows with the load (the scheme of TorchServe's and Triton's dynamic batchers).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Optional

from seq2seq.errors import ConfigError, check_range

log = logging.getLogger(__name__)

# run(key, lines) -> one result per line, called in the worker thread
BatchFunction = Callable[[Hashable, list[str]], Sequence[Any]]


@dataclass
class BatchStats:
    """What the batcher has run so far (``/health`` shows it)."""

    batches: int = 0
    requests: int = 0
    lines: int = 0
    largest: int = 0  # lines in the largest batch


@dataclass
class _Job:
    key: Hashable
    lines: list[str]
    future: asyncio.Future = field(repr=False)


class Batcher:
    """Queue requests, gather those of one key for up to ``wait_ms`` (or until ``max_lines``
    lines), run them as one call of ``run`` in a single worker thread, and hand each request its
    part of the results. Requests of different keys (another beam) never share a batch.

    Start it (``await start()``) inside the event loop that will submit to it.
    """

    def __init__(self, run: BatchFunction, wait_ms: float = 5.0, max_lines: int = 64) -> None:
        check_range("--batch-wait-ms", wait_ms, 0.0)
        check_range("--max-batch-lines", max_lines, 1)
        self._run, self.wait, self.max_lines = run, wait_ms / 1000.0, max_lines
        self.stats = BatchStats()
        self._pending: list[_Job] = []
        self._arrived: Optional[asyncio.Event] = None
        self._task: Optional[asyncio.Task] = None
        self._worker: Optional[ThreadPoolExecutor] = None

    async def start(self) -> None:
        """Start the collecting task and the worker thread in the running loop."""
        self._arrived = asyncio.Event()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="seq2seq-model")
        self._task = asyncio.create_task(self._collect(self._arrived), name="seq2seq-batcher")

    async def stop(self) -> None:
        """Stop collecting; requests still waiting fail, the batch in the worker finishes."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for job in self._pending:
            if not job.future.done():
                job.future.set_exception(RuntimeError("the server is shutting down"))
        self._pending.clear()
        if self._worker is not None:
            self._worker.shutdown(wait=True)
            self._worker = None

    async def submit(self, key: Hashable, lines: Sequence[str]) -> list[Any]:
        """The results for ``lines``, computed in a batch with other requests of ``key``."""
        if self._task is None or self._arrived is None:
            raise ConfigError("the batcher is not running: start() it in the server's event loop")
        job = _Job(key, list(lines), asyncio.get_running_loop().create_future())
        self._pending.append(job)
        self._arrived.set()
        return await job.future

    def _lines_of(self, key: Hashable) -> int:
        return sum(len(job.lines) for job in self._pending if job.key == key)

    async def _collect(self, arrived: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                arrived.clear()
                await arrived.wait()
            key = self._pending[0].key
            deadline = loop.time() + self.wait
            while self._lines_of(key) < self.max_lines and (left := deadline - loop.time()) > 0:
                arrived.clear()
                try:
                    await asyncio.wait_for(arrived.wait(), left)
                except asyncio.TimeoutError:
                    break
            await self._run_batch(key, self._take(key))

    def _take(self, key: Hashable) -> list[_Job]:
        """The oldest jobs of ``key`` up to ``max_lines`` lines (at least one job, whatever its
        size), removed from the queue in arrival order."""
        batch: list[_Job] = []
        kept: list[_Job] = []
        size = 0
        for job in self._pending:
            if job.key == key and (not batch or size + len(job.lines) <= self.max_lines):
                batch.append(job)
                size += len(job.lines)
            else:
                kept.append(job)
        self._pending = kept
        return batch

    async def _run_batch(self, key: Hashable, batch: list[_Job]) -> None:
        live = [job for job in batch if not job.future.done()]  # a client that gave up: skipped
        lines = [line for job in live for line in job.lines]
        if not live:
            return
        try:
            results = await asyncio.get_running_loop().run_in_executor(self._worker, self._run, key,
                                                                       lines)
            if len(results) != len(lines):
                raise RuntimeError(f"the model gave {len(results)} results for {len(lines)} lines")
        except Exception as err:  # every request of the batch gets the error; the loop goes on
            log.exception("a batch of %d requests (%d lines) failed", len(live), len(lines))
            for job in live:
                if not job.future.done():
                    job.future.set_exception(err)
            return
        self.stats.batches += 1
        self.stats.requests += len(live)
        self.stats.lines += len(lines)
        self.stats.largest = max(self.stats.largest, len(lines))
        start = 0
        for job in live:
            if not job.future.done():
                job.future.set_result(list(results[start : start + len(job.lines)]))
            start += len(job.lines)
