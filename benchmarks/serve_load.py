"""Load test of seq2seq-serve: requests/s, lines/s and latency under 1, 8 and 64 concurrent clients.

    python benchmarks/serve_load.py --checkpoint runs/m30k/checkpoints/best.pt \
        --src data/multi30k/test_2016_flickr.en --clients 1 8 64 --seconds 30 --out serve_load.json

Starts ``seq2seq-serve`` in a subprocess on a free loopback port and, for each level, runs that
many clients for --seconds: each sends POST /translate with the next --lines-per-request lines of
--src (round robin), waits for the answer and sends the next. Per level it prints requests/s,
lines/s, the p50 and p99 latency, the server's peak RSS (VmRSS sampled from /proc, and VmHWM),
the mean batch the server ran (from /health) and the errors (a non-200 answer, a wrong number of
lines, or a failed connection). Writes the figures as JSON. Run it alone: the machine has 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import httpx

from seq2seq.atomic import atomic_file
from seq2seq.data.corpus import read_lines


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of ``values``; nan when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def proc_kib(pid: int, field: str) -> int:
    """A ``/proc/PID/status`` figure in KiB (VmRSS: resident now; VmHWM: the peak so far)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(f"/proc/{pid}/status has no {field}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


class Server:
    """seq2seq-serve in a subprocess, stopped on exit."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.port = args.port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "seq2seq.cli.serve", "--checkpoint", args.checkpoint,
                   "--port", str(self.port), "--log-level", "warning",
                   "--batch-wait-ms", str(args.batch_wait_ms),
                   "--max-batch-lines", str(args.max_batch_lines)]
        if args.beam is not None:
            command += ["--beam", str(args.beam)]
        self.process = subprocess.Popen(command)

    def wait_ready(self, timeout: float = 300.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"seq2seq-serve exited with status {self.process.returncode}")
            try:
                return httpx.get(self.url + "/health", timeout=2).json()
            except httpx.HTTPError:
                time.sleep(0.5)
        raise RuntimeError(f"seq2seq-serve did not answer /health within {timeout:.0f} s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


async def run_level(url: str, pid: int, batches: Iterator[list[str]], clients: int,
                    seconds: float, beam: Optional[int]) -> dict[str, Any]:
    """``clients`` clients sending requests back to back for ``seconds``; the figures."""
    latencies: list[float] = []
    errors: list[str] = []
    lines_done = 0
    peak_rss = proc_kib(pid, "VmRSS")
    stop_at = time.perf_counter() + seconds

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal lines_done
        while time.perf_counter() < stop_at:
            lines = next(batches)
            body: dict[str, Any] = {"text": lines} if beam is None else {"text": lines, "beam": beam}
            start = time.perf_counter()
            try:
                answer = await http.post(url + "/translate", json=body)
                ok = answer.status_code == 200 and len(answer.json()["translations"]) == len(lines)
                if not ok:
                    errors.append(f"{answer.status_code}: {answer.text[:200]}")
                    continue
            except (httpx.HTTPError, ValueError, KeyError) as err:
                errors.append(f"{type(err).__name__}: {err}")
                continue
            latencies.append(time.perf_counter() - start)
            lines_done += len(lines)

    async def sample_rss() -> None:
        nonlocal peak_rss
        while True:
            peak_rss = max(peak_rss, proc_kib(pid, "VmRSS"))
            await asyncio.sleep(0.2)

    before = httpx.get(url + "/health").json()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=600) as http:
        sampler = asyncio.create_task(sample_rss())
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        elapsed = time.perf_counter() - start
        sampler.cancel()
    after = httpx.get(url + "/health").json()
    batches_run = after["batches"] - before["batches"]
    return dict(clients=clients, seconds=round(elapsed, 2), requests=len(latencies),
                lines=lines_done, errors=len(errors), error_samples=errors[:5],
                requests_per_second=round(len(latencies) / elapsed, 2),
                lines_per_second=round(lines_done / elapsed, 2),
                latency_p50_ms=round(1000 * percentile(latencies, 50), 1),
                latency_p99_ms=round(1000 * percentile(latencies, 99), 1),
                server_peak_rss_mib=round(peak_rss / 1024, 1),
                server_vmhwm_mib=round(proc_kib(pid, "VmHWM") / 1024, 1),
                server_batches=batches_run,
                mean_batch_lines=round((after["lines"] - before["lines"]) / max(batches_run, 1), 2))


def request_lines(path: str, per_request: int) -> Iterator[list[str]]:
    """The non-blank lines of ``path``, ``per_request`` at a time, round robin for ever."""
    lines = [line for line in read_lines(path) if line.strip()]
    if not lines:
        raise SystemExit(f"error: {path} has no non-blank line")
    cycle = itertools.cycle(lines)
    while True:
        yield [next(cycle) for _ in range(per_request)]


def print_table(levels: list[dict[str, Any]]) -> None:
    header = (f"{'clients':>7} {'req/s':>8} {'lines/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'RSS MiB':>8} {'batch':>6} {'errors':>6}")
    print(header)
    for level in levels:
        print(f"{level['clients']:>7} {level['requests_per_second']:>8.2f} "
              f"{level['lines_per_second']:>8.2f} {level['latency_p50_ms']:>8.1f} "
              f"{level['latency_p99_ms']:>8.1f} {level['server_peak_rss_mib']:>8.1f} "
              f"{level['mean_batch_lines']:>6.1f} {level['errors']:>6}")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--src", required=True, help="source lines, sent round robin")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64],
                        help="concurrent clients, one level each")
    parser.add_argument("--seconds", type=float, default=30.0, help="duration of each level")
    parser.add_argument("--lines-per-request", type=int, default=1)
    parser.add_argument("--beam", type=int, default=None,
                        help="beam of every request; default: the checkpoint's")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    parser.add_argument("--max-batch-lines", type=int, default=64)
    parser.add_argument("--port", type=int, default=0, help="0: a free one")
    parser.add_argument("--warmup", type=int, default=3, help="requests sent before timing")
    parser.add_argument("--out", default=None, help="write the figures here as JSON")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if min(args.clients) < 1 or args.lines_per_request < 1 or args.seconds <= 0:
        print("error: --clients and --lines-per-request must be >= 1, --seconds > 0", file=sys.stderr)
        return 2
    batches = request_lines(args.src, args.lines_per_request)
    # A kill (timeout, Ctrl-C) unwinds through the finally below, which stops the server.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    server = Server(args)
    try:
        health = server.wait_ready()
        rss_loaded = proc_kib(server.process.pid, "VmRSS")
        for _ in range(args.warmup):
            httpx.post(server.url + "/translate", json={"text": next(batches)}, timeout=600)
        levels = []
        for clients in args.clients:
            level = asyncio.run(run_level(server.url, server.process.pid, batches, clients,
                                          args.seconds, args.beam))
            levels.append(level)
            print_table([level])
    finally:
        server.stop()
    print()
    print_table(levels)
    result = dict(checkpoint=args.checkpoint, src=args.src, topology=health["topology"],
                  beam=args.beam or health["beam"], lines_per_request=args.lines_per_request,
                  batch_wait_ms=args.batch_wait_ms, max_batch_lines=args.max_batch_lines,
                  cpu=cpu_name(), cpu_count=os.cpu_count(),
                  server_rss_after_load_mib=round(rss_loaded / 1024, 1), levels=levels)
    if args.out:
        with atomic_file(Path(args.out)) as out:
            json.dump(result, out, indent=2)
            out.write("\n")
    return 1 if any(level["errors"] for level in levels) else 0


if __name__ == "__main__":
    sys.exit(main())
