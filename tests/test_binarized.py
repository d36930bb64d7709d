"""The binarized training split (seq2seq/data/binarized.py): the same batches as the list path."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from seq2seq.data import binarized
from seq2seq.data.batching import PairFilter, ParallelBatches, kept_pairs, length_batches
from seq2seq.data.binarized import (
    MappedParallelBatches,
    binarized_training_split,
    encoded_chunks,
    open_binarized,
    token_dtype,
)
from seq2seq.data.corpus import iter_parallel, read_lines
from seq2seq.data.synthetic import write_number_corpus
from seq2seq.errors import DataError
from seq2seq.tokenization import TokenizerSettings, build_tokenizers, training_sample
from seq2seq.topologies.translate import fit_recaser, training_data
from seq2seq.training.distributed import Distributed
from tests.conftest import compose_train, require_shared


def reference_length_batches(lengths, batch_tokens, shuffle, seed=0, max_sentences=None):
    """The list-based planner the numpy one replaced, verbatim: the plans must not change."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    if shuffle:
        rng.shuffle(order)
    order.sort(key=lambda i: lengths[i])
    batches, current, longest = [], [], 0
    for i in order:
        grown = max(longest, lengths[i])
        full = max_sentences is not None and len(current) >= max_sentences
        if current and (grown * (len(current) + 1) > batch_tokens or full):
            batches.append(current)
            current, grown = [], lengths[i]
        current.append(i)
        longest = grown
    if current:
        batches.append(current)
    if shuffle:
        rng.shuffle(batches)
    return batches


@pytest.mark.parametrize("max_sentences", [None, 0, 1, 7])
@pytest.mark.parametrize("batch_tokens", [1, 40, 333, 10**9])
@pytest.mark.parametrize("shuffle", [True, False])
def test_numpy_planner_plans_what_the_list_planner_did(max_sentences, batch_tokens, shuffle):
    rng = random.Random(batch_tokens)
    lengths = [rng.randint(1, 60) for _ in range(700)] + [200, 1, 1]
    for seed in (0, 5):
        assert length_batches(lengths, batch_tokens, shuffle, seed, max_sentences) == \
            reference_length_batches(lengths, batch_tokens, shuffle, seed, max_sentences)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    """A small corpus with pairs that every filter drops, and its SentencePiece model."""
    tmp = tmp_path_factory.mktemp("binarized")
    root = write_number_corpus(tmp / "numbers", {"train": 400, "valid": 10, "test": 10}, seed=5,
                               max_items=3, max_number=999)
    src, tgt = read_lines(root / "train.en"), read_lines(root / "train.de")
    src[3], tgt[7] = "", ""                               # empty sides
    src[11] = " ".join(["one hundred and twenty"] * 12)   # too long
    tgt[13] = " ".join(["dreihundertdreiunddreißig"] * 4)  # a wild length ratio
    (root / "train.en").write_text("".join(s + "\n" for s in src))
    (root / "train.de").write_text("".join(t + "\n" for t in tgt))
    settings = TokenizerSettings("unigram", 120, True, 1.0, False, 0, 0.0, -1, "nmt_nfkc", False,
                                 str(tmp / "spm"))
    tokenizers = build_tokenizers([root / "train.en"], [root / "train.de"], settings, tmp / "spm")
    return {"root": root, "tmp": tmp, "tokenizers": tokenizers, "src": src, "tgt": tgt}


def binarize(corpus: dict, pair_filter: PairFilter, workers: int = 1, cache: Path | None = None):
    tokenizers, root = corpus["tokenizers"], corpus["root"]
    return binarized_training_split(root / "train.en", root / "train.de",
                                    tokenizers.src.model_proto, tokenizers.tgt.model_proto,
                                    (tokenizers.src.vocab_size, tokenizers.tgt.vocab_size),
                                    pair_filter, cache or corpus["tmp"] / "cache", workers)


def list_batches(corpus: dict, pair_filter: PairFilter, rank: int = 0, world_size: int = 1):
    tokenizers = corpus["tokenizers"]
    src = tokenizers.src.encode(corpus["src"][:pair_filter.limit])
    tgt = tokenizers.tgt.encode(corpus["tgt"][:pair_filter.limit])
    keep = kept_pairs(src, tgt, pair_filter.max_length, max_ratio=pair_filter.max_ratio)
    return ParallelBatches([src[i] for i in keep], [tgt[i] for i in keep], 60, 1, 5, rank,
                           world_size)


def assert_same_batches(mapped, listed, epochs=(0, 1, 2)) -> None:
    for epoch in epochs:
        assert mapped.num_batches(epoch) == listed.num_batches(epoch) > 0
        for a, b in zip(mapped.epoch(epoch), listed.epoch(epoch), strict=True):
            for field in a._fields:
                assert getattr(a, field).dtype == getattr(b, field).dtype, field
                assert torch.equal(getattr(a, field), getattr(b, field)), field
    for a, b in zip(mapped.in_order(16), listed.in_order(16), strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("pair_filter", [PairFilter(100), PairFilter(60, 2.5), PairFilter(40, None, 150)])
@pytest.mark.parametrize("rank, world_size", [(0, 1), (1, 2)])
def test_mapped_batches_equal_the_list_batches(corpus, pair_filter, rank, world_size):
    mapped = MappedParallelBatches(binarize(corpus, pair_filter), 60, 1, 5, rank, world_size)
    assert_same_batches(mapped, list_batches(corpus, pair_filter, rank, world_size))


def test_filters_count_what_they_drop(corpus, caplog):
    with caplog.at_level(logging.INFO):
        split = binarize(corpus, PairFilter(60, 2.5))
    dropped = split.meta["dropped"]
    assert dropped["empty"] == 2 and dropped["too_long"] >= 1 and dropped["length_ratio"] >= 1
    assert split.meta["lines"] == 400 and len(split) == 400 - sum(dropped.values())
    assert f"dropped 2 pairs with an empty side and {dropped['too_long']} pairs over 60" in caplog.text
    assert split.meta["dtype"] == "uint16" and split.src.dtype == np.uint16
    used = {i for s in corpus["tokenizers"].tgt.encode(corpus["tgt"]) for i in s}
    assert set(split.target_ids().tolist()) <= used and len(split.target_ids()) > 10


def test_a_pool_of_workers_encodes_as_one_process(corpus, monkeypatch):
    monkeypatch.setattr(binarized, "CHUNK_LINES", 37)  # several chunks, in flight at once
    tokenizers = corpus["tokenizers"]
    pairs = list(iter_parallel(corpus["root"] / "train.en", corpus["root"] / "train.de"))
    models = (tokenizers.src.model_proto, tokenizers.tgt.model_proto)
    one = list(encoded_chunks(iter(pairs), *models, workers=1))
    pool = list(encoded_chunks(iter(pairs), *models, workers=2))
    assert len(one) == len(pool) == 11
    for a, b in zip(one, pool):
        assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert np.concatenate([c.src_len for c in one]).tolist() == \
        [len(ids) for ids in tokenizers.src.encode(corpus["src"])]


def test_the_cache_is_reused_and_keyed_by_the_data(corpus, tmp_path, caplog):
    cache = tmp_path / "cache"
    first = binarize(corpus, PairFilter(100), cache=cache)
    with caplog.at_level(logging.INFO):
        again = binarize(corpus, PairFilter(100), cache=cache)
    assert again.folder == first.folder and "reusing the binarized training split" in caplog.text
    assert binarize(corpus, PairFilter(99), cache=cache).folder != first.folder
    folders = sorted(p.name for p in (cache / "binarized").iterdir())
    assert len(folders) == 2 and not any(name.startswith(".") for name in folders)  # no leftovers
    changed = tmp_path / "changed"
    changed.mkdir()
    for name in ("train.en", "train.de"):
        (changed / name).write_bytes((corpus["root"] / name).read_bytes().replace(b"one", b"two"))
    moved = dict(corpus, root=changed)
    assert binarize(moved, PairFilter(100), cache=cache).folder.name not in folders


def test_an_incomplete_folder_is_a_data_error(corpus, tmp_path):
    folder = binarize(corpus, PairFilter(100), cache=tmp_path).folder
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "pairs": meta["pairs"] * 100}))
    with pytest.raises(DataError, match="delete the folder"):
        open_binarized(folder)
    (folder / "meta.json").write_text(json.dumps(meta))
    open_binarized(folder)
    offsets = folder / "tgt_offsets.bin"  # as a power cut can leave it: the right size, zeros
    offsets.write_bytes(bytes(offsets.stat().st_size))
    with pytest.raises(DataError, match="offsets end at 0"):
        open_binarized(folder)


def test_misaligned_and_undecodable_files_are_named(tmp_path):
    (tmp_path / "a.en").write_text("one\ntwo\n")
    (tmp_path / "a.de").write_text("eins\n")
    with pytest.raises(DataError, match=r"line counts differ: .*a\.de has 1 lines"):
        list(iter_parallel(tmp_path / "a.en", tmp_path / "a.de"))
    (tmp_path / "b.de").write_bytes(b"eins\nzw\xffei\n")
    with pytest.raises(DataError, match=r"b\.de:2: invalid UTF-8"):
        list(iter_parallel(tmp_path / "a.en", tmp_path / "b.de"))


def test_token_dtype_widens_for_large_vocabularies():
    assert token_dtype(65536) == np.uint16 and token_dtype(65537) == np.int32


def test_sentencepiece_samples_only_corpora_over_the_sample_size():
    settings = TokenizerSettings("unigram", 120, True, 1.0, False, 0, 0.0, -1, "nmt_nfkc", False,
                                 "cache", sample_sentences=1000)
    assert training_sample(settings, 1000) == 0 and training_sample(settings, 1001) == 1000
    explicit = TokenizerSettings("unigram", 120, True, 1.0, False, 50, 0.0, -1, "nmt_nfkc", False,
                                 "cache", sample_sentences=1000)
    assert training_sample(explicit, 10) == 50


def test_the_recaser_of_a_large_corpus_is_fitted_on_a_logged_sample(corpus, caplog):
    path = corpus["root"] / "train.de"
    with caplog.at_level(logging.INFO):
        whole = fit_recaser(path)
        sample = fit_recaser(path, max_lines=50)
    assert "first 400 training targets:" in caplog.text
    assert "first 50 training targets (a sample" in caplog.text
    assert len(sample.forms) <= len(whole.forms)


def run_config(corpus: dict, *overrides: str):
    return compose_train(["trainer=smoke", f"paths.cache_dir={corpus['tmp'] / 'run-cache'}",
                          f"data.root={corpus['root']}", "data.vocab_size=120", "data.generator=null",
                          "trainer.batch_tokens=60", *overrides])


def test_the_topology_trains_on_the_same_batches_either_way(corpus):
    from seq2seq.topologies.translate import binarize_training_split, corpus_and_tokenizers

    cfg = run_config(corpus, "data.max_length=60", "data.max_length_ratio=2.5")
    files, tokenizers, settings = corpus_and_tokenizers(cfg)
    split = binarize_training_split(cfg, files, tokenizers, settings)
    mapped = training_data(cfg, files, tokenizers, settings, Distributed(), split)
    listed = training_data(cfg, files, tokenizers, settings, Distributed(), None)
    assert mapped.facts == listed.facts and mapped.facts["train_dropped"]["empty"] == 2
    assert np.array_equal(mapped.target_ids, np.unique([i for s in listed.target_ids for i in s]))
    assert_same_batches(mapped.batches, listed.batches, epochs=(0, 3))


@pytest.mark.slow
def test_multi30k_batches_are_the_same_from_the_binarized_split(tmp_path):
    """The same seed trains on the same batches in the same order on Multi30k."""
    from seq2seq.topologies.translate import binarize_training_split, corpus_and_tokenizers

    root = require_shared("multi30k")
    cfg = compose_train(["experiment=multi30k_en_de", f"data.root={root}",
                         f"paths.cache_dir={tmp_path}", "tokenizer.vocab_size=2000"])
    files, tokenizers, settings = corpus_and_tokenizers(cfg)
    split = binarize_training_split(cfg, files, tokenizers, settings)
    mapped = training_data(cfg, files, tokenizers, settings, Distributed(), split)
    listed = training_data(cfg, files, tokenizers, settings, Distributed(), None)
    assert mapped.facts == listed.facts and mapped.facts["train_lines"] == 29_000
    assert_same_batches(mapped.batches, listed.batches, epochs=(0, 1))
