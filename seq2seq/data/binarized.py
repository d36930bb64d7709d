"""A training split encoded once into flat token-id arrays on disk, opened memory-mapped.

Encoding a million pairs into Python lists costs every run half a minute and about a gigabyte per
process (each rank holds its own copy). ``binarize`` streams the two files line by line, encodes
chunks of them on every core (a process pool whose workers load the SentencePiece models from their
bytes), drops the pairs no run trains on (``batching.PairFilter``), and writes per side one flat array of
ids (uint16 when the vocabulary fits, else int32) plus the offsets where each pair starts, into a
folder of the tokenizer cache named for a hash of the data files, the SentencePiece models and the
filter (fairseq-preprocess's binarized dataset, in numpy). Later runs and every rank map that folder
(``np.memmap``): a second, with only the pages of the batches read ever loaded.

Layout of ``{cache}/binarized/{key}/``: ``meta.json`` (counts, dtype, what was dropped),
``{src,tgt}.bin`` (ids), ``{src,tgt}_offsets.bin`` (int64, pairs + 1), ``lengths.bin`` (each pair's
bucketing length, ``ParallelBatches.pair_lengths``) and ``target_counts.bin`` (int64 per target id:
which pieces the training targets use).
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections import deque
from dataclasses import asdict
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO, Iterator, NamedTuple, Sequence

import numpy as np
import sentencepiece as spm
import torch

from seq2seq.atomic import UMASK
from seq2seq.data.batching import Batch, BucketedBatches, PairFilter
from seq2seq.data.corpus import iter_parallel
from seq2seq.errors import DataError
from seq2seq.tokenization import BOS, EOS, PAD

log = logging.getLogger(__name__)

FORMAT = 1            # bump when the layout or the encoding changes: older folders are not reused
CHUNK_LINES = 20_000  # pairs a worker encodes at a time: large enough to amortise the pickling


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits, else int32."""
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.int32)


def file_digest(path: Path, digest: Any) -> None:
    """Feed ``path``'s name, size and bytes into ``digest``, streamed a megabyte at a time."""
    digest.update(f"{path.name}\0{path.stat().st_size}\0".encode())
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


def cache_key(files: Sequence[Path], models: Sequence[bytes], pair_filter: PairFilter) -> str:
    """The folder name of a binarized split: a hash of the data files' bytes, the SentencePiece
    models and the filter, so a change to any of them encodes the split again."""
    digest = hashlib.blake2b(digest_size=12)
    digest.update(json.dumps({"format": FORMAT, **asdict(pair_filter)}, sort_keys=True).encode())
    for model in models:
        digest.update(len(model).to_bytes(8, "little"))
        digest.update(model)
    for path in files:
        file_digest(path, digest)
    return digest.hexdigest()


# -- encoding (runs in the pool's workers) ---------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _load_models(src_model: bytes, tgt_model: bytes) -> None:
    src = spm.SentencePieceProcessor(model_proto=src_model)
    _WORKER["src"] = src
    _WORKER["tgt"] = src if tgt_model == src_model else spm.SentencePieceProcessor(model_proto=tgt_model)


class EncodedChunk(NamedTuple):
    src: np.ndarray      # [tokens] int32 ids of the chunk's source lines, concatenated
    src_len: np.ndarray  # [pairs] pieces per source line
    tgt: np.ndarray
    tgt_len: np.ndarray


def _flat(ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter((len(seq) for seq in ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter((i for seq in ids for i in seq), dtype=np.int32, count=int(lengths.sum()))
    return flat, lengths


def _encode_chunk(pairs: list[tuple[str, str]]) -> EncodedChunk:
    # One thread per worker: the pool already has a worker per core.
    src = _WORKER["src"].encode([s for s, _ in pairs], out_type=int, num_threads=1)
    tgt = _WORKER["tgt"].encode([t for _, t in pairs], out_type=int, num_threads=1)
    return EncodedChunk(*_flat(src), *_flat(tgt))


def _chunks(pairs: Iterator[tuple[str, str]]) -> Iterator[list[tuple[str, str]]]:
    while chunk := list(islice(pairs, CHUNK_LINES)):
        yield chunk


def encoded_chunks(pairs: Iterator[tuple[str, str]], src_model: bytes, tgt_model: bytes,
                   workers: int) -> Iterator[EncodedChunk]:
    """The pairs encoded a chunk at a time, in order: in this process for one worker, else in a
    pool of ``workers`` processes with at most two chunks each in flight (the files are read as
    fast as the workers encode, never ahead into memory)."""
    chunks = _chunks(pairs)
    if workers <= 1:
        _load_models(src_model, tgt_model)
        yield from map(_encode_chunk, chunks)
        return
    # fork: a worker needs no import of the caller's main module (spawn's), only the models.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(workers, _load_models,
                                                  (src_model, tgt_model)) as pool:
        pending: deque = deque()
        for chunk in chunks:
            pending.append(pool.apply_async(_encode_chunk, (chunk,)))
            if len(pending) >= 2 * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


# -- writing and opening ---------------------------------------------------------------------------

def _progress(total_bytes: int, enabled: bool) -> Any:
    """A tqdm bar over the source file's bytes on a terminal's stderr; None elsewhere."""
    if not enabled or not sys.stderr.isatty():
        return None
    from tqdm import tqdm
    return tqdm(total=total_bytes, unit="B", unit_scale=True, desc="binarizing", leave=False)


class _Writer:
    """The arrays of a binarized split, appended a chunk at a time under ``folder``."""

    def __init__(self, folder: Path, dtype: np.dtype, tgt_vocab_size: int) -> None:
        self.dtype = dtype
        self.files: dict[str, BinaryIO] = {name: open(folder / f"{name}.bin", "wb") for name in
                                           ("src", "tgt", "src_offsets", "tgt_offsets", "lengths")}
        self.ends = {"src": 0, "tgt": 0}
        for side in self.ends:
            np.zeros(1, np.int64).tofile(self.files[f"{side}_offsets"])
        self.target_counts = np.zeros(tgt_vocab_size, np.int64)
        self.pairs = 0
        self.max_pair_length = 0

    def add(self, chunk: EncodedChunk, kept: np.ndarray) -> None:
        for side in ("src", "tgt"):
            ids, lengths = getattr(chunk, side), getattr(chunk, f"{side}_len")
            ids = ids[np.repeat(kept, lengths)]
            ids.astype(self.dtype).tofile(self.files[side])
            offsets = self.ends[side] + np.cumsum(lengths[kept])
            offsets.astype(np.int64).tofile(self.files[f"{side}_offsets"])
            self.ends[side] = int(offsets[-1]) if len(offsets) else self.ends[side]
            if side == "tgt":
                self.target_counts += np.bincount(ids, minlength=len(self.target_counts))[
                    :len(self.target_counts)]
        pair_lengths = np.maximum(chunk.src_len[kept], chunk.tgt_len[kept]) + 1
        pair_lengths.astype(np.int32).tofile(self.files["lengths"])
        self.pairs += int(kept.sum())
        self.max_pair_length = max(self.max_pair_length, int(pair_lengths.max(initial=0)))

    def close(self, durable: bool = False) -> None:
        """Close the files; ``durable``: on disk first (a power cut never leaves a folder that
        looks complete over arrays the kernel had not written)."""
        for handle in self.files.values():
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
            handle.close()


def binarize(src_path: Path, tgt_path: Path, src_model: bytes, tgt_model: bytes,
             vocab_sizes: tuple[int, int], pair_filter: PairFilter, folder: Path,
             workers: int = 1, progress: bool = True) -> dict[str, Any]:
    """Encode and filter the pairs of two aligned files into ``folder`` (created whole: written
    under a temporary name beside it and renamed into place), and return its metadata."""
    started = time.perf_counter()
    dtype = token_dtype(max(vocab_sizes))
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        os.chmod(tmp, 0o777 & ~UMASK)  # a plain mkdir's mode: a shared cache stays readable
        writer = _Writer(tmp, dtype, vocab_sizes[1])
        dropped = {"empty": 0, "too_long": 0, "length_ratio": 0}
        lines = 0
        bar = _progress(src_path.stat().st_size, progress)
        pairs = islice(_counted(iter_parallel(src_path, tgt_path), bar), pair_filter.limit)
        try:
            for chunk in encoded_chunks(pairs, src_model, tgt_model, workers):
                kept, counts = pair_filter.keep(chunk.src_len, chunk.tgt_len)
                writer.add(chunk, kept)
                lines += len(kept)
                for reason, count in counts.items():
                    dropped[reason] += count
        except BaseException:
            writer.close()
            raise
        finally:
            if bar is not None:
                bar.close()
        writer.close(durable=True)
        writer.target_counts.tofile(tmp / "target_counts.bin")
        meta = {"format": FORMAT, "dtype": dtype.name, "pairs": writer.pairs, "lines": lines,
                "dropped": dropped, "src_tokens": writer.ends["src"], "tgt_tokens": writer.ends["tgt"],
                "tgt_vocab_size": vocab_sizes[1], "files": [str(src_path), str(tgt_path)],
                "filter": asdict(pair_filter), "seconds": round(time.perf_counter() - started, 2)}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / "meta.json").is_file():  # not another process's finished copy
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone after the rename; our leftovers otherwise
    log.info("binarized %d training pairs of %s in %.1f s (%d workers) into %s", writer.pairs,
             src_path.parent, meta["seconds"], workers, folder)
    return meta


def _counted(pairs: Iterator[tuple[str, str]], bar: Any) -> Iterator[tuple[str, str]]:
    if bar is None:
        yield from pairs
        return
    for src, tgt in pairs:
        bar.update(len(src.encode()) + 1)
        yield src, tgt


class BinarizedCorpus(NamedTuple):
    """A binarized training split, memory-mapped (read-only)."""

    folder: Path
    meta: dict[str, Any]
    src: np.ndarray          # [source tokens] ids
    src_offsets: np.ndarray  # [pairs + 1] where each pair's source starts in ``src``
    tgt: np.ndarray
    tgt_offsets: np.ndarray
    lengths: np.ndarray      # [pairs] bucketing length: the longer side + 1

    def __len__(self) -> int:
        return len(self.lengths)

    def target_ids(self) -> np.ndarray:
        """The ids the training targets use, ascending."""
        counts = np.fromfile(self.folder / "target_counts.bin", dtype=np.int64)
        return np.flatnonzero(counts)

    def pair(self, index: int) -> tuple[list[int], list[int]]:
        """The ids of pair ``index`` (source, target)."""
        return (self.src[self.src_offsets[index]:self.src_offsets[index + 1]].tolist(),
                self.tgt[self.tgt_offsets[index]:self.tgt_offsets[index + 1]].tolist())


def _mapped(path: Path, dtype: Any, count: int) -> np.ndarray:
    if count == 0:  # mmap cannot map an empty file
        return np.zeros(0, dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=(count,))


def open_binarized(folder: Path) -> BinarizedCorpus:
    """Map a folder written by ``binarize``; DataError when it is incomplete."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        pairs, dtype = int(meta["pairs"]), np.dtype(meta["dtype"])
        arrays = [_mapped(folder / "src.bin", dtype, int(meta["src_tokens"])),
                  _mapped(folder / "src_offsets.bin", np.int64, pairs + 1),
                  _mapped(folder / "tgt.bin", dtype, int(meta["tgt_tokens"])),
                  _mapped(folder / "tgt_offsets.bin", np.int64, pairs + 1),
                  _mapped(folder / "lengths.bin", np.int32, pairs)]
        for offsets, tokens in ((arrays[1], meta["src_tokens"]), (arrays[3], meta["tgt_tokens"])):
            if int(offsets[0]) != 0 or int(offsets[-1]) != int(tokens):
                raise ValueError(f"offsets end at {int(offsets[-1])}, not at {tokens} tokens")
    except (OSError, ValueError, KeyError) as err:
        raise DataError(f"{folder}: an unreadable binarized corpus ({err}); delete the folder to "
                        "encode the training split again") from None
    return BinarizedCorpus(folder, meta, *arrays)


def binarized_training_split(src_path: Path, tgt_path: Path, src_model: bytes, tgt_model: bytes,
                             vocab_sizes: tuple[int, int], pair_filter: PairFilter, cache_dir: Path,
                             workers: int = 1, progress: bool = True) -> BinarizedCorpus:
    """The training split encoded and filtered, from the cache or encoded into it now."""
    key = cache_key([src_path, tgt_path], [src_model, tgt_model], pair_filter)
    folder = Path(cache_dir).expanduser() / "binarized" / key
    if (folder / "meta.json").is_file():
        log.info("reusing the binarized training split %s", folder)
    else:
        binarize(src_path, tgt_path, src_model, tgt_model, vocab_sizes, pair_filter, folder,
                 workers, progress)
    corpus = open_binarized(folder)
    meta = corpus.meta
    log.info(pair_filter.describe(meta["dropped"], len(corpus)))
    if len(corpus) == 0:
        raise DataError(f"{src_path}: no training pair left after filtering ({meta['dropped']}); "
                        "check data.max_length and data.max_length_ratio")
    return corpus


class MappedParallelBatches(BucketedBatches):
    """``ParallelBatches`` over a binarized split: the same plan from the same lengths, each batch
    read from the memory-mapped arrays when it is needed (never the whole split in lists)."""

    def __init__(self, corpus: BinarizedCorpus, batch_tokens: int, seed: int,
                 max_sentences: int | None = None, rank: int = 0, world_size: int = 1) -> None:
        super().__init__(corpus.lengths, batch_tokens, seed, max_sentences, rank, world_size)
        self.corpus = corpus

    def __len__(self) -> int:
        return len(self.corpus)

    def batch(self, ids: Sequence[int]) -> Batch:
        corpus = self.corpus
        rows = np.asarray(list(ids), dtype=np.int64)
        src = _padded(corpus.src, corpus.src_offsets, rows, prefix=None, suffix=EOS)
        tgt_in = _padded(corpus.tgt, corpus.tgt_offsets, rows, prefix=BOS, suffix=None)
        tgt_out = _padded(corpus.tgt, corpus.tgt_offsets, rows, prefix=None, suffix=EOS)
        src_len = torch.from_numpy(corpus.src_offsets[rows + 1] - corpus.src_offsets[rows] + 1)
        return Batch(torch.from_numpy(src), src_len, torch.from_numpy(tgt_in),
                     torch.from_numpy(tgt_out), torch.from_numpy(rows))


def _padded(tokens: np.ndarray, offsets: np.ndarray, ids: np.ndarray, prefix: int | None,
            suffix: int | None) -> np.ndarray:
    """[B, L] int64: each pair's ids with ``prefix``/``suffix`` added, right-padded with PAD
    (``batching.pad`` of ``make_batch``'s lists)."""
    starts, ends = offsets[ids], offsets[ids + 1]
    extra = (prefix is not None) + (suffix is not None)
    lengths = ends - starts + extra
    out = np.full((len(ids), int(lengths.max(initial=0))), PAD, dtype=np.int64)
    first = int(prefix is not None)
    for row, (start, end) in enumerate(zip(starts.tolist(), ends.tolist())):
        if prefix is not None:
            out[row, 0] = prefix
        out[row, first:first + end - start] = tokens[start:end]
        if suffix is not None:
            out[row, first + end - start] = suffix
    return out
