"""How a training run's start, memory and speed scale with the size of its training split.

    python benchmarks/scale.py --data-root DATA --pairs 29000 1000000 4000000 --updates 20 \
        --out scale.json

DATA holds multi30k/ (or is that folder). For each N in --pairs, writes a corpus of N training
pairs (Multi30k's training split repeated, cut at N) into --work (default: a temporary folder),
with the first --eval-lines lines of its validation and test splits, and trains
``experiment=multi30k_en_de`` on it for --updates updates twice, each in a fresh process, with one
cache: the first run encodes the training split (SentencePiece, then the binarized split), the
second finds everything cached. Measures per run:
  start_seconds      process start to the first update (metrics.csv's first training row,
                     written after it with trainer.log_every=1)
  preprocess_seconds the first run's start_seconds minus the second's (SentencePiece and the
                     binarized split), and binarize_seconds, the binarized split's own
  peak_rss_mb        the training process's peak resident memory (os.wait4)
  tokens_per_second  target tokens per second of training (report.json)
Prints a table and writes the figures as JSON. Run it alone: the machine's cores are shared.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from itertools import cycle, islice
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
SPLITS = {"train": "train", "val": "val", "test": "test_2016_flickr"}
LANGS = ("en", "de")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", required=True, help="a folder holding multi30k/ (or it)")
    parser.add_argument("--pairs", type=int, nargs="+", default=[29_000, 1_000_000],
                        help="training split sizes")
    parser.add_argument("--updates", type=int, default=20, help="updates per run")
    parser.add_argument("--eval-lines", type=int, default=100,
                        help="validation and test lines kept (the end-of-run evaluation's cost)")
    parser.add_argument("--work", default=None, help="where the corpora and the cache go "
                                                     "(default: a temporary folder, removed)")
    parser.add_argument("--out", default=None, help="write the figures here as JSON")
    parser.add_argument("overrides", nargs="*", help="more training overrides (key=value)")
    return parser.parse_args(argv)


def multi30k_folder(data_root: Path) -> Path:
    folder = data_root / "multi30k" if (data_root / "multi30k").is_dir() else data_root
    missing = [f"{SPLITS[s]}.{lang}" for s in SPLITS for lang in LANGS
               if not (folder / f"{SPLITS[s]}.{lang}").is_file()]
    if missing:
        sys.exit(f"error: {folder} lacks {', '.join(missing)}")
    return folder


def write_corpus(source: Path, folder: Path, pairs: int, eval_lines: int) -> Path:
    """N training pairs (the source's repeated, streamed) and the first eval lines of the others."""
    folder.mkdir(parents=True, exist_ok=True)
    for lang in LANGS:
        lines = (source / f"train.{lang}").read_text(encoding="utf-8").splitlines(keepends=True)
        with open(folder / f"train.{lang}", "w", encoding="utf-8") as out:
            out.writelines(islice(cycle(lines), pairs))
        for split in ("val", "test"):
            name = f"{SPLITS[split]}.{lang}"
            with open(source / name, encoding="utf-8") as handle:
                (folder / name).write_text("".join(islice(handle, eval_lines)), encoding="utf-8")
    return folder


def first_update_seconds(proc: subprocess.Popen, metrics: Path, started: float) -> float | None:
    """Poll the run's metrics.csv until its first training row; seconds since ``started``."""
    while proc.poll() is None:
        if metrics.is_file():
            with open(metrics, newline="") as handle:
                if any(row.get("split") == "train" for row in csv.DictReader(handle)):
                    return time.perf_counter() - started
        time.sleep(0.05)
    return None


def train_once(corpus: Path, cache: Path, run_dir: Path, updates: int,
               overrides: Sequence[str]) -> dict[str, Any]:
    """One training run in a fresh process: its start time, peak memory and speed."""
    shutil.rmtree(run_dir, ignore_errors=True)
    command = [sys.executable, str(ROOT / "scripts" / "train.py"), "experiment=multi30k_en_de",
               f"data.root={corpus}", f"paths.cache_dir={cache}", f"hydra.run.dir={run_dir}",
               f"trainer.max_steps={updates}", "trainer.log_every=1", "trainer.progress_bar=false",
               "trainer.max_minutes=null", "report.bootstrap_resamples=0",
               "report.attention_plots=0", "report.html=false", *overrides]
    started = time.perf_counter()
    with open(run_dir.parent / f"{run_dir.name}.log", "w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        start_seconds = first_update_seconds(proc, run_dir / "metrics.csv", started)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak memory
        proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"error: training exited with {proc.returncode}; see {log.name}")
    report = json.loads((run_dir / "report.json").read_text())
    return {"start_seconds": round(start_seconds or float("nan"), 2), "wall_seconds": round(wall, 1),
            "peak_rss_mb": round(usage.ru_maxrss / 1024),  # Linux: kilobytes
            "tokens_per_second": report.get("train_tokens_per_second"),
            "train_pairs": report.get("train_pairs"), "train_dropped": report.get("train_dropped")}


def binarize_seconds(cache: Path) -> float | None:
    """The binarized split's encoding time (its meta.json); the newest, as each size makes one."""
    metas = sorted((cache / "spm" / "binarized").glob("*/meta.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(metas[-1].read_text())["seconds"] if metas else None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    source = multi30k_folder(Path(args.data_root).expanduser())
    work = Path(args.work or tempfile.mkdtemp(prefix="seq2seq-scale-"))
    results = []
    try:
        for pairs in args.pairs:
            corpus = write_corpus(source, work / f"corpus-{pairs}", pairs, args.eval_lines)
            cache = work / f"cache-{pairs}"  # a cold cache for each size
            shutil.rmtree(cache, ignore_errors=True)
            cold = train_once(corpus, cache, work / f"run-{pairs}-cold", args.updates, args.overrides)
            warm = train_once(corpus, cache, work / f"run-{pairs}-warm", args.updates, args.overrides)
            row = {"pairs": pairs, "cold": cold, "warm": warm,
                   "preprocess_seconds": round(cold["start_seconds"] - warm["start_seconds"], 1),
                   "binarize_seconds": binarize_seconds(cache)}
            results.append(row)
            print(json.dumps(row), file=sys.stderr)
            if args.work is None:
                shutil.rmtree(corpus, ignore_errors=True)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{'pairs':>10} {'preprocess s':>12} {'binarize s':>10} {'warm start s':>12} "
          f"{'peak RSS MB (cold/warm)':>24} {'train tok/s':>11}")
    for row in results:
        cold, warm = row["cold"], row["warm"]
        print(f"{row['pairs']:>10,} {row['preprocess_seconds']:>12.1f} "
              f"{row['binarize_seconds'] or float('nan'):>10.1f} {warm['start_seconds']:>12.1f} "
              f"{cold['peak_rss_mb']:>12,}/{warm['peak_rss_mb']:<11,} "
              f"{warm['tokens_per_second'] or float('nan'):>11,.0f}")
    if args.out:
        Path(args.out).write_text(json.dumps({"updates": args.updates, "cores": os.cpu_count(),
                                              "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
