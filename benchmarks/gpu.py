"""Training and decoding on CUDA GPUs: the reference model on Multi30k en->de, bf16 and fp16.

    python benchmarks/gpu.py --data-root DATA --out gpu.json [--steps 300] [--gpus N]

For each precision (bf16, fp16) it trains ``model=reference`` (experiment=multi30k_en_de's data
and tokenizer) for --steps updates on one GPU, and, when the machine has several (or --gpus N),
on N GPUs under torchrun (nccl, DistributedDataParallel); then decodes test_2016_flickr with the
one-GPU run's best.pt, greedy and beam 5. Each run is the ordinary tools in a child process
(scripts/train.py, scripts/evaluate.py), so the figures are those a user gets. Prints a table and
writes the figures as JSON (--out). Without CUDA it refuses (exit 2): it measures GPUs only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

ROOT = Path(__file__).resolve().parents[1]
PRECISIONS = ("bf16", "fp16")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmarks/gpu.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", required=True,
                        help="a folder holding multi30k/ (or the multi30k folder itself)")
    parser.add_argument("--out", required=True, help="where the JSON goes")
    parser.add_argument("--steps", type=int, default=300, help="training updates per run")
    parser.add_argument("--gpus", type=int, default=None,
                        help="ranks of the multi-GPU runs (default: every GPU; < 2: none)")
    parser.add_argument("--work-dir", default="outputs/gpu_benchmark", help="run folders go here")
    return parser.parse_args(argv)


def run(command: list[str]) -> None:
    """Run a tool; its failure stops the benchmark with the tool's own message."""
    print("+", " ".join(command), flush=True)
    done = subprocess.run(command, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"error: exit status {done.returncode} from: {' '.join(command)}")


def train(args: argparse.Namespace, root: Path, precision: str, ranks: int) -> dict[str, Any]:
    """One training run; the figures of its report.json."""
    run_dir = Path(args.work_dir) / f"{precision}_{ranks}gpu"
    overrides = ["experiment=multi30k_en_de", "model=reference", f"data.root={root}",
                 "device=cuda", f"trainer.precision={precision}", f"trainer.max_steps={args.steps}",
                 "trainer.max_minutes=null", "trainer.lr_anneal_minutes=0",
                 "trainer.average_last=0", "trainer.progress_bar=false", "report.html=false",
                 "report.bootstrap_resamples=0", "overwrite=true", f"hydra.run.dir={run_dir}"]
    launcher = [sys.executable] if ranks == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}"]
    run(launcher + [str(ROOT / "scripts" / "train.py"), *overrides])
    report = json.loads((run_dir / "report.json").read_text())
    return {"precision": precision, "gpus": ranks, "steps": report["steps"],
            "train_tokens_per_second": report["train_tokens_per_second"],
            "train_seconds": report["train_seconds"], "test_bleu": report["bleu"],
            "checkpoint": report["checkpoint"]}


def decode(args: argparse.Namespace, root: Path, checkpoint: str, beam: int) -> dict[str, Any]:
    """test_2016_flickr translated with ``checkpoint`` on the GPU; BLEU and speed."""
    report_dir = Path(args.work_dir) / f"decode_beam{beam}"
    run([sys.executable, str(ROOT / "scripts" / "evaluate.py"), "--checkpoint", checkpoint,
         "--src", str(root / "test_2016_flickr.en"), "--ref", str(root / "test_2016_flickr.de"),
         "--beam", str(beam), "--device", "cuda", "--bootstrap", "0", "--attention-plots", "0",
         "--report-dir", str(report_dir)])
    report = json.loads((report_dir / "report.json").read_text())
    seconds = report["decode_seconds"]
    return {"beam": beam, "bleu": report["bleu"], "decode_seconds": seconds,
            "sentences_per_second": round(report["num_sentences"] / max(seconds, 1e-9), 1)}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        print("error: benchmarks/gpu.py measures CUDA GPUs, and torch sees none here "
              f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); "
              "benchmarks/speed.py measures CPUs", file=sys.stderr)
        return 2
    root = Path(args.data_root)
    root = root / "multi30k" if (root / "multi30k").is_dir() else root
    gpus = torch.cuda.device_count() if args.gpus is None else args.gpus
    results: dict[str, Any] = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0),
                               "gpus": torch.cuda.device_count(), "training": [], "decoding": []}
    for precision in PRECISIONS:
        for ranks in sorted({1, gpus} - {0}) if gpus >= 2 else [1]:
            results["training"].append(train(args, root, precision, ranks))
    checkpoint = results["training"][0]["checkpoint"]  # bf16, one GPU
    results["decoding"] = [decode(args, root, checkpoint, beam) for beam in (1, 5)]
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"\n{results['gpu']} x{results['gpus']}, torch {results['torch']}")
    print(f"{'precision':>9} {'GPUs':>4} {'steps':>5} {'train tok/s':>12} {'test BLEU':>9}")
    for r in results["training"]:
        print(f"{r['precision']:>9} {r['gpus']:>4} {r['steps']:>5} "
              f"{r['train_tokens_per_second']:>12.0f} {r['test_bleu']:>9.2f}")
    print(f"{'beam':>9} {'BLEU':>6} {'sent/s':>8}   (decoding {checkpoint})")
    for r in results["decoding"]:
        print(f"{r['beam']:>9} {r['bleu']:>6.2f} {r['sentences_per_second']:>8.1f}")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
