"""Decoding speed of a translation checkpoint with torch and with its ONNX export (onnxruntime).

    python benchmarks/onnx_speed.py --checkpoint RUN/checkpoints/best.pt \
        --src test.en [--ref test.de] --out onnx_speed.json

Exports the checkpoint (seq2seq-export) into a temporary folder (or uses --onnx DIR), then
translates --src at batch 64, greedy and beam 5, with each: sentences and output tokens (pieces +
EOS) per second of search (model load, a warm-up batch, tokenizing and detokenizing excluded),
the share of lines the export translates exactly as torch does, and BLEU against --ref. Also
gives the sizes of the checkpoint, of its fp32 and bf16 releases (seq2seq-release) and of the
export. The search settings are the checkpoint's but for the beam and the batch size. Prints a
table and writes the figures as JSON. Run it alone: the figures are of this machine's CPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import torch

from seq2seq.atomic import atomic_file
from seq2seq.data.corpus import read_lines
from seq2seq.evaluation.bleu import score_corpus
from seq2seq.export.onnx_export import export_onnx
from seq2seq.export.onnx_runtime import load_translator
from seq2seq.release import make_release
from seq2seq.translate import Translator, comparable_references

BEAMS = (1, 5)
BATCH = 64


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="benchmarks/onnx_speed.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a translate checkpoint")
    parser.add_argument("--src", required=True, help="source lines to translate")
    parser.add_argument("--ref", default=None, help="references: BLEU of each system")
    parser.add_argument("--onnx", default=None, help="an export of --checkpoint to use (default: "
                                                     "export it into a temporary folder)")
    parser.add_argument("--out", required=True, help="the JSON file to write")
    return parser


def folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.iterdir() if path.is_file())


def sizes(checkpoint: Path, export: Path, scratch: Path) -> dict[str, float]:
    """MiB of the checkpoint, of its fp32 and bf16 releases, and of the export folder."""
    mib = {"checkpoint": checkpoint.stat().st_size}
    for dtype in ("fp32", "bf16"):
        release = scratch / f"release.{dtype}.pt"
        make_release(checkpoint, release, dtype)
        mib[f"release_{dtype}"] = release.stat().st_size
    mib["onnx_export"] = folder_size(export)
    return {name: round(size / 2**20, 1) for name, size in mib.items()}


def decode(translator: Translator, sources: list[str], beam: int) -> tuple[list[str], dict[str, float]]:
    """Translations of ``sources`` at ``beam`` and the speed of the search."""
    detailed = translator.translate_detailed(sources, beam=beam)
    seconds = translator.last_seconds
    tokens = sum(len(t.hyp_pieces) + 1 for t in detailed if t.src_pieces)  # + EOS
    return [t.text for t in detailed], {
        "seconds": round(seconds, 2), "sentences_per_second": round(len(sources) / seconds, 1),
        "tokens_per_second": round(tokens / seconds, 1)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    checkpoint = Path(args.checkpoint)
    sources = read_lines(args.src, allow_empty=True)
    references = read_lines(args.ref, allow_empty=True) if args.ref else None
    torch_translator = Translator.from_checkpoint(checkpoint, batch_size=BATCH)
    with tempfile.TemporaryDirectory() as scratch:
        export = Path(args.onnx) if args.onnx else export_onnx(checkpoint, Path(scratch) / "onnx")
        onnx_translator = load_translator(export, batch_size=BATCH)
        results: dict[str, Any] = {
            "checkpoint": str(checkpoint), "src": args.src, "ref": args.ref,
            "lines": len(sources), "batch_size": BATCH, "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "cpu": cpu_name(),
            "sizes_mib": sizes(checkpoint, export, Path(scratch)), "decoding": []}
        for translator in (torch_translator, onnx_translator):
            translator.translate(sources[:BATCH])  # warm-up: thread pools, kernel selection
        for beam in BEAMS:
            torch_lines, torch_speed = decode(torch_translator, sources, beam)
            onnx_lines, onnx_speed = decode(onnx_translator, sources, beam)
            same = sum(a == b for a, b in zip(torch_lines, onnx_lines)) / max(len(sources), 1)
            for name, lines, speed in (("torch", torch_lines, torch_speed),
                                       ("onnxruntime", onnx_lines, onnx_speed)):
                row = {"runtime": name, "beam": beam, **speed,
                       "identical_to_torch": 1.0 if name == "torch" else round(same, 4)}
                if references is not None:
                    refs = comparable_references(references, torch_translator.writes_lowercase)
                    row["bleu"] = round(score_corpus(lines, refs).bleu, 2)
                results["decoding"].append(row)
    return results


def cpu_name() -> str:
    """The CPU's model name (``lscpu``'s), else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def print_table(results: dict[str, Any]) -> None:
    print(f"{results['lines']} lines, batch {results['batch_size']}, {results['cpu']}")
    print(f"{'runtime':<12} {'beam':>4} {'sent/s':>8} {'tok/s':>9} {'identical':>9} {'BLEU':>6}")
    for row in results["decoding"]:
        bleu = f"{row['bleu']:6.2f}" if "bleu" in row else f"{'-':>6}"
        print(f"{row['runtime']:<12} {row['beam']:>4} {row['sentences_per_second']:>8.1f} "
              f"{row['tokens_per_second']:>9.1f} {row['identical_to_torch']:>9.2%} {bleu}")
    print("sizes (MiB): " + ", ".join(f"{name} {size}" for name, size in
                                      results["sizes_mib"].items()))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    results = run(args)
    print_table(results)
    with atomic_file(args.out) as handle:
        json.dump(results, handle, indent=2)
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
