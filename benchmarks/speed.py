"""Training and decoding speed on Multi30k, side by side with the plain-PyTorch floor.

    python benchmarks/speed.py --data-root DATA --floor PATH/torch_floor.py --out benchmark.json \
        [--checkpoint PATH]

DATA holds multi30k/ (or is that folder); --floor names torch_floor.py, a plain-PyTorch training
loop of the reference model that JoeyNMT, OpenNMT-py and fairseq were timed with (BENCHMARKS.md,
"Other toolkits on the same kind of machine"). Measures:
  (a) training throughput (target tokens per second: pieces + EOS, no padding) over --steps
      updates after --warmup, on length-sorted batches of 128 sentence pairs, for that
      reference model (``model=reference``, with the toolkits' joint vocabulary of 8,000 pieces:
      --reference-vocab-size) and for the experiment's model with its own vocabulary (and, when
      its output layer scores only the training targets' pieces, for the same model with the
      output layer over every id: what the restriction buys, in the same run);
  (b) the plain-PyTorch floor (--floor) on the reference model's batches (the same ones), so
      the framework's speed is a ratio measured side by side: the models take turns batch by
      batch, so a change in the machine's speed during the run affects them alike. The floor
      runs in a plain child process (a script of its own, as its users run it: no process
      settings of the framework), and its loop model also runs in this process, which has
      seq2seq-train's ``keep_freed_memory``: two ratios, the second one conservative;
  (c) decoding test_2016_flickr at batch 64 with an output cap of 100: sentences and tokens per
      second, greedy and beam 5, model load excluded, with the BLEU of each, using --checkpoint
      or, without one, the reference model trained for --train-steps updates here.
With a bf16 precision (--precision, or the experiment's trainer/search.precision resolving to
it), the framework's training steps and decoding are also timed in fp32 in the same run.
Prints a table and writes the figures as JSON. Run it alone: the machine has 2 cores.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import random
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from omegaconf import DictConfig
from torch import nn

from seq2seq.config import build
from seq2seq.data.batching import Batch, filter_pairs, length_batches, make_batch
from seq2seq.data.corpus import write_text_atomic
from seq2seq.device import add_device_option, resolve_device
from seq2seq.errors import Seq2SeqError
from seq2seq.evaluation.bleu import score_corpus
from seq2seq.precision import add_precision_option, resolve_precision
from seq2seq.recase import Recaser
from seq2seq.runtime import keep_freed_memory
from seq2seq.tokenization import PAD, UNK, TokenizerPair
from seq2seq.topologies.translate import (
    TranslationObjective,
    ValidationData,
    corpus_and_tokenizers,
    restrict_output_to_targets,
)
from seq2seq.training.checkpoint import load_checkpoint
from seq2seq.training.trainer import Trainer
from seq2seq.translate import (
    SearchSettings,
    Translator,
    build_translation_model,
    checkpoint_recaser,
    comparable_references,
    model_from_checkpoint,
)

CONF = Path(__file__).resolve().parents[1] / "conf"  # the checkout's config tree, as the tests use

Step = Callable[[Batch], Any]  # one timed update (or one lockstep round trip to the floor's child)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="benchmarks/speed.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", required=True,
                        help="a folder holding multi30k/ (or the multi30k folder itself)")
    parser.add_argument("--out", required=True, help="where the JSON goes")
    parser.add_argument("--checkpoint", help="a trained translate checkpoint for decoding")
    parser.add_argument("--experiment", default="multi30k_en_de",
                        help="whose model is timed besides the reference model")
    parser.add_argument("--floor", required=True,
                        help="torch_floor.py: the plain-PyTorch training loop timed beside the framework")
    parser.add_argument("--reference-vocab-size", type=int, default=8000,
                        help="pieces of the joint vocabulary that the reference model and the floor "
                             "are timed with (the other toolkits': 8,000); the experiment's model "
                             "uses its own")
    # 20 timed updates ranked two models 5 % apart the wrong way round (BENCHMARKS.md, "Speed");
    # 60 keep the whole run at about 4 minutes on the project's Xeon.
    parser.add_argument("--steps", type=int, default=60, help="timed updates per model")
    parser.add_argument("--warmup", type=int, default=3, help="untimed updates first")
    parser.add_argument("--batch", type=int, default=128, help="sentence pairs per batch")
    parser.add_argument("--train-steps", type=int, default=150,
                        help="updates of the reference model when no --checkpoint is given")
    add_precision_option(parser, "of the framework's training steps and decoding (default: the "
                                 "experiment's trainer.precision and search.precision); when it "
                                 "comes out bf16, the fp32 figures are measured beside it")
    add_device_option(parser)  # the framework's models; the floor stays on the CPU
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--cache-dir", default=None, help="SentencePiece cache")
    parser.add_argument("--keep-freed-memory", action=argparse.BooleanOptionalAction, default=True,
                        help="glibc keeps freed memory, as seq2seq-train does (keep_freed_memory); "
                             "the floor runs in this process and gains from it too")
    return parser


def compose(overrides: list[str]) -> DictConfig:
    """The training config of the checkout's conf/ with ``overrides``."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return hydra_compose("train", overrides=overrides)


def sorted_batches(src: list[list[int]], tgt: list[list[int]], size: int, count: int,
                   seed: int = 42) -> list[Batch]:
    """``count`` random length-bucketed batches of ``size`` pairs (fairseq/OpenNMT-style)."""
    lengths = [max(len(s), len(t)) + 1 for s, t in zip(src, tgt)]
    plan = [b for b in length_batches(lengths, 10**9, shuffle=True, seed=seed,
                                      max_sentences=size) if len(b) == size]
    chosen = random.Random(seed).sample(plan, min(count, len(plan)))
    return [make_batch([src[i] for i in ids], [tgt[i] for i in ids], ids) for ids in chosen]


@dataclass
class EncodedTraining:
    """The training pairs as one vocabulary's ids, and the timed batches drawn from them."""
    tokenizers: TokenizerPair
    src: list[list[int]]
    tgt: list[list[int]]
    batches: list[Batch]

    @property
    def vocab_size(self) -> int:
        return self.tokenizers.tgt.vocab_size


def encoded_batches(tokenizers: TokenizerPair, train: Any, size: int, count: int) -> EncodedTraining:
    """Encode the training pairs (at most 100 pieces a side) and draw ``count`` batches."""
    src, tgt = filter_pairs(tokenizers.src.encode(train.src), tokenizers.tgt.encode(train.tgt), 100)
    return EncodedTraining(tokenizers, src, tgt, sorted_batches(src, tgt, size, count))


def time_steps(steps: dict[str, Step], batches: dict[str, list[Batch]], warmup: int
               ) -> dict[str, dict[str, Any]]:
    """Run every ``steps[name]`` on its own ``batches[name]`` (models of one vocabulary share a
    list), the models taking turns batch by batch (in an order that rotates), so that a drift in
    the machine's speed during the run hits them all alike; tokens per second of each over the
    batches after ``warmup``."""
    names = list(steps)
    seconds = dict.fromkeys(names, 0.0)
    tokens = dict.fromkeys(names, 0)
    rounds = min(len(batches[name]) for name in names)
    for i in range(rounds):
        for name in names[i % len(names):] + names[:i % len(names)]:
            batch = batches[name][i]
            start = time.perf_counter()
            steps[name](batch)
            if torch.cuda.is_initialized():
                torch.cuda.synchronize()  # a GPU step is timed when it is done, not queued
            if i >= warmup:
                seconds[name] += time.perf_counter() - start
                tokens[name] += batch.num_tgt_tokens
    timed = rounds - warmup
    return {name: {"tokens_per_second": round(tokens[name] / seconds[name], 1), "timed_steps": timed,
                   "tokens_per_batch": round(tokens[name] / max(timed, 1), 1)} for name in names}


def framework_step(model: nn.Module, tokenizers: TokenizerPair, cfg: DictConfig,
                   precision: str = "fp32") -> Step:
    """One update as the framework's trainer does it (loss, backward, clip, Adam), with the
    settings of the composed ``cfg``. Only the objective's loss runs: no validation, so its
    validation data is empty."""
    objective = TranslationObjective(tokenizers, ValidationData([], [], []), build(cfg.search))
    # The timed update of every figure so far: lr 1e-3, clip 1.0, full teacher forcing, no label
    # smoothing and no weight average, whatever the experiment trains with.
    settings = build(cfg.trainer, lr=1e-3, clip_norm=1.0, label_smoothing=0.0, ema_decay=0.0,
                     teacher_forcing={"kind": "constant", "start": 1.0}, precision=precision)
    # Only train_step runs, which writes nothing; the run folder is a fresh empty one all the same.
    trainer = Trainer(settings, model, objective, tempfile.mkdtemp(prefix="seq2seq-speed-"), {})
    return lambda batch: trainer.train_step([batch])


def floor_step(floor: Any, vocab_size: int, kind: str) -> Step:
    """One update of torch_floor.py's model; its PAD and UNK ids are the reverse of ours."""
    torch.manual_seed(42)
    model = floor.Seq2Seq(vocab_size, kind).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def remap(ids: torch.Tensor) -> torch.Tensor:
        out = ids.clone()
        out[ids == PAD], out[ids == UNK] = floor.PAD, floor.UNK
        return out

    def step(batch: Batch) -> None:
        src, tgt_in, tgt_out = remap(batch.src), remap(batch.tgt_in), remap(batch.tgt_out)
        logits = model(src, batch.src_len, tgt_in)
        loss = F.cross_entropy(logits.reshape(-1, vocab_size), tgt_out.reshape(-1),
                               ignore_index=floor.PAD, reduction="sum") / batch.num_tgt_tokens
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return step


class FloorProcess:
    """torch_floor.py's models in a child process of their own (plain PyTorch, default process
    settings), stepped in lockstep with this one: ``step(kind)`` gives a function that sends a
    batch, and returns when the child has done its update, so only one process computes at a
    time and the rotating timing of ``time_steps`` applies unchanged."""

    def __init__(self, floor: str, vocab_size: int, kinds: Sequence[str],
                 threads: int | None = None) -> None:
        load_floor(floor)  # a missing file is reported here, not by the child
        context = multiprocessing.get_context("spawn")  # a fresh interpreter, nothing inherited
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_floor_server, daemon=True,
                                       args=(child, floor, vocab_size, list(kinds), threads))
        self.process.start()
        self._receive()  # the child has built its models

    def _receive(self) -> Any:
        try:
            reply = self.conn.recv()
        except EOFError:
            raise Seq2SeqError("the torch_floor.py child process died; run it alone to see "
                               "why") from None
        if isinstance(reply, str) and reply.startswith("error"):
            raise Seq2SeqError(f"torch_floor.py child process: {reply}")
        return reply

    def step(self, kind: str) -> Step:
        def run(batch: Batch) -> None:
            self.conn.send((kind, batch))
            self._receive()
        return run

    def close(self) -> None:
        self.conn.send(None)
        self.process.join(timeout=30)


def _floor_server(conn: Any, floor_path: str, vocab_size: int, kinds: list[str],
                  threads: int | None) -> None:
    try:
        if threads:
            torch.set_num_threads(threads)
        floor = load_floor(floor_path)
        steps = {kind: floor_step(floor, vocab_size, kind) for kind in kinds}
        conn.send("ready")
        while (message := conn.recv()) is not None:
            kind, batch = message
            steps[kind](batch)
            conn.send("done")
    except Exception as err:  # reported to the parent, which raises it
        conn.send(f"error: {type(err).__name__}: {err}")


def load_floor(path: str) -> ModuleType:
    """The floor script ``path`` (torch_floor.py) imported as the module ``torch_floor``."""
    if not Path(path).is_file():
        raise Seq2SeqError(f"{path}: not found (--floor: the path of torch_floor.py)")
    spec = importlib.util.spec_from_file_location("torch_floor", path)
    if spec is None or spec.loader is None:
        raise Seq2SeqError(f"{path}: not importable as a Python module (--floor: torch_floor.py)")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def decoding(model: nn.Module, tokenizers: TokenizerPair, sources: list[str], references: list[str],
             beam: int, precision: str = "fp32", recaser: Recaser | None = None
             ) -> dict[str, float]:
    """Decode the test set at batch 64 with an output cap of 100 pieces; model load excluded,
    and so is what follows the search (detokenizing, recasing)."""
    search = SearchSettings(beam=beam, length_penalty=1.0, max_length_ratio=100.0, max_length=100,
                            batch_size=64, precision=precision)
    translator = Translator(model, tokenizers, search, recaser=recaser)
    detailed = translator.translate_detailed(sources)
    seconds = translator.last_seconds
    tokens = sum(len(t.hyp_pieces) + 1 for t in detailed if t.src_pieces)  # + EOS
    references = comparable_references(references, translator.writes_lowercase)
    return {"sentences_per_second": round(len(sources) / seconds, 1),
            "tokens_per_second": round(tokens / seconds, 1), "seconds": round(seconds, 2),
            "bleu": score_corpus([t.text for t in detailed], references).bleu}


def peak_rss_mib() -> float:
    """This process's peak resident memory so far."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.keep_freed_memory = args.keep_freed_memory and keep_freed_memory()
    try:
        args.device = resolve_device(args.device, "--device")  # refused before any work
        results = run(args)
    except Seq2SeqError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    write_text_atomic(args.out, json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"written: {args.out}")
    return 0


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement, as the JSON written by ``main``."""
    # Imported here: the corpus preparation and topology internals are being reorganised.
    root = Path(args.data_root)
    root = root / "multi30k" if (root / "multi30k").is_dir() else root
    overrides = [f"experiment={args.experiment}", f"data.root={root}"]
    if args.cache_dir:
        overrides.append(f"paths.cache_dir={args.cache_dir}")
    cfg = compose(overrides)
    files, tokenizers, _ = corpus_and_tokenizers(cfg)
    train = files.read(files.train)
    count = args.warmup + args.steps
    own = encoded_batches(tokenizers, train, args.batch, count)
    # The reference model and the floor use the other toolkits' vocabulary size
    # (--reference-vocab-size: 8,000 joint pieces), whatever size the experiment's own model
    # uses, so that their figures stay comparable with those toolkits'.
    if cfg.data.vocab_size == args.reference_vocab_size:
        ref = own
    else:
        vocabulary = f"data.vocab_size={args.reference_vocab_size}"
        _, ref_tokenizers, _ = corpus_and_tokenizers(compose(overrides + [vocabulary]))
        ref = encoded_batches(ref_tokenizers, train, args.batch, count)
    results: dict[str, Any] = {"torch": torch.__version__, "threads": torch.get_num_threads(),
                               "keep_freed_memory": args.keep_freed_memory,
                               "batch_sentences": args.batch, "vocab_size": own.vocab_size,
                               "reference_vocab_size": ref.vocab_size}

    train_precision = resolve_precision(args.precision or cfg.trainer.get("precision", "fp32"),
                                        "trainer.precision", args.device.type)
    decode_precision = resolve_precision(args.precision or cfg.search.get("precision", "fp32"),
                                         "search.precision", args.device.type)
    results["device"] = str(args.device)
    results.update(train_precision=train_precision, decode_precision=decode_precision)

    # The reference model alone: an experiment's model settings would otherwise merge into it.
    models = {"reference": (compose(["model=reference"]).model, ref),
              "experiment_model": (cfg.model, own)}
    if cfg.model.decoder.get("output_vocabulary", "all") != "all":
        # what the output layer restricted to the training targets' pieces buys, in this run
        models["experiment_model_all_outputs"] = (
            compose(overrides + ["model.decoder.output_vocabulary=all"]).model, own)
    # bf16 is timed beside fp32 (each from the same initial weights), so that what it buys is a
    # ratio measured in the same run.
    steps: dict[str, Step] = {}
    batches: dict[str, list[Batch]] = {}
    params: dict[str, int] = {}
    for name, (model_cfg, data) in models.items():
        for suffix, precision in precision_variants(train_precision).items():
            torch.manual_seed(42)
            model = build_translation_model(model_cfg, data.vocab_size, data.vocab_size)
            restrict_output_to_targets(model.get_submodule("decoder"), data.tgt)
            model.to(args.device)
            params[name] = sum(p.numel() for p in model.parameters())
            steps[name + suffix] = framework_step(model, data.tokenizers, cfg, precision)
            batches[name + suffix] = data.batches
            if name == "reference" and not suffix:
                reference = model
    floor_process = FloorProcess(args.floor, ref.vocab_size, ("loop", "fused"), args.threads)
    try:
        floor_steps = {"floor_loop": floor_process.step("loop"),
                       "floor_fused": floor_process.step("fused"),
                       "floor_loop_same_process": floor_step(load_floor(args.floor),
                                                             ref.vocab_size, "loop")}
        steps.update(floor_steps)
        batches.update(dict.fromkeys(floor_steps, ref.batches))
        results.update(time_steps(steps, batches, args.warmup))
    finally:
        floor_process.close()
    for name in models:
        results[name]["params"] = params[name]

    test = files.read(files.test)
    recaser = None
    if args.checkpoint:
        payload = load_checkpoint(args.checkpoint)
        model, tokenizers, _ = model_from_checkpoint(payload, args.device)
        recaser = checkpoint_recaser(payload)
        results["decoding_model"] = str(args.checkpoint)
    else:
        model = brief_training(reference, ref, args.batch, args.train_steps, cfg, train_precision)
        tokenizers = ref.tokenizers
        results["decoding_model"] = f"reference model after {args.train_steps} updates"
    model.eval()
    # fp32 first in each pair, so the bf16 figure does not gain from a colder start.
    variants = list(precision_variants(decode_precision).items())[::-1]
    for key, beam in (("greedy", 1), ("beam5", 5)):
        for suffix, precision in variants:
            results[key + suffix] = decoding(model, tokenizers, test.src, test.tgt, beam, precision,
                                             recaser)

    results.update(
        train_tokens_per_second=results["reference"]["tokens_per_second"],
        experiment_train_tokens_per_second=results["experiment_model"]["tokens_per_second"],
        **({} if "experiment_model_all_outputs" not in results else {
            "output_restriction_speedup": round(
                results["experiment_model"]["tokens_per_second"]
                / results["experiment_model_all_outputs"]["tokens_per_second"], 3)}),
        floor_tokens_per_second=results["floor_loop"]["tokens_per_second"],
        floor_fused_tokens_per_second=results["floor_fused"]["tokens_per_second"],
        ratio_to_floor=round(results["reference"]["tokens_per_second"]
                             / results["floor_loop"]["tokens_per_second"], 3),
        ratio_to_floor_same_process=round(
            results["reference"]["tokens_per_second"]
            / results["floor_loop_same_process"]["tokens_per_second"], 3),
        **({} if "reference_fp32" not in results else {"ratio_to_floor_fp32": round(
            results["reference_fp32"]["tokens_per_second"]
            / results["floor_loop"]["tokens_per_second"], 3)}),
        greedy_tokens_per_second=results["greedy"]["tokens_per_second"],
        beam5_tokens_per_second=results["beam5"]["tokens_per_second"],
        peak_rss_mib=peak_rss_mib())
    return results


def precision_variants(precision: str) -> dict[str, str]:
    """Key suffix -> precision of what is measured: the chosen precision under the plain keys
    and, when that is bf16, fp32 under ``_fp32`` keys too."""
    return {"": precision} if precision == "fp32" else {"": precision, "_fp32": "fp32"}


def brief_training(model: nn.Module, data: EncodedTraining, size: int, steps: int, cfg: DictConfig,
                   precision: str = "fp32") -> nn.Module:
    """``model`` after ``steps`` updates on batches of ``size`` pairs of ``data`` (for decoding)."""
    step = framework_step(model, data.tokenizers, cfg, precision)
    for batch in sorted_batches(data.src, data.tgt, size, steps, seed=7):
        step(batch)
    return model


def print_table(r: dict[str, Any]) -> None:
    """The results as an aligned table on standard output."""
    train, decode = r.get("train_precision", "fp32"), r.get("decode_precision", "fp32")
    rows = [("vocabulary: reference model and floor", r["reference_vocab_size"], "pieces"),
            ("vocabulary: experiment model", r["vocab_size"], "pieces")]
    for suffix, precision in precision_variants(train).items():
        for name, label in (("reference", "reference model"), ("experiment_model", "experiment model"),
                            ("experiment_model_all_outputs", "... output layer over all ids")):
            if name + suffix in r:
                rows.append((f"train: {label} (framework, {precision})",
                             r[name + suffix]["tokens_per_second"], "tok/s"))
    rows += [("train: torch_floor loop", r["floor_loop"]["tokens_per_second"], "tok/s"),
             ("train: torch_floor fused", r["floor_fused"]["tokens_per_second"], "tok/s"),
             ("train: torch_floor loop, in this process",
              r["floor_loop_same_process"]["tokens_per_second"], "tok/s"),
             (f"train: reference ({train}) / floor loop", r["ratio_to_floor"], "x"),
             (f"train: reference ({train}) / floor loop in this process",
              r["ratio_to_floor_same_process"], "x")]
    if "ratio_to_floor_fp32" in r:
        rows.append(("train: reference (fp32) / floor loop", r["ratio_to_floor_fp32"], "x"))
    for suffix, precision in precision_variants(decode).items():
        for key, label in (("greedy", "greedy"), ("beam5", "beam 5")):
            d = r[key + suffix]
            rows.append((f"decode {label}, batch 64 ({precision})", d["tokens_per_second"],
                         f"tok/s ({d['sentences_per_second']} sent/s, BLEU {d['bleu']})"))
    rows.append(("peak RSS", r["peak_rss_mib"], "MiB"))
    width = max(len(name) for name, _, _ in rows)
    print(f"{'measure':<{width}}  {'value':>10}  unit")
    for name, value, unit in rows:
        print(f"{name:<{width}}  {value:>10,}  {unit}")


if __name__ == "__main__":
    sys.exit(main())
