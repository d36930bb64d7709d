"""The real corpus: ../shared/data/multi30k (or $SEQ2SEQ_DATA_DIR/multi30k)."""

import json

import pytest

from seq2seq.data.corpus import CorpusFiles
from seq2seq.pipeline import run_training
from tests.conftest import compose_train, require_shared
from tests.test_smoke import TINY_MODEL


def test_multi30k_splits_are_aligned():
    root = require_shared("multi30k")
    files = CorpusFiles(root, "en", "de", "train", "val", "test_2016_flickr")
    files.check_exist()
    assert [len(files.read(s)) for s in ("train", "val", "test_2016_flickr")] == [29000, 1014, 1000]


@pytest.mark.slow
def test_data_multi30k_trains_and_reports(tmp_path):
    root = require_shared("multi30k")
    cfg = compose_train(["data=multi30k", f"data.root={root}", "data.limit_train=2000",
                         "data.vocab_size=500", f"paths.cache_dir={tmp_path / 'cache'}",
                         "trainer=smoke", "search.beam=2", "search.max_length=30", *TINY_MODEL])
    report = run_training(cfg, tmp_path / "run")
    assert report["test_set"].endswith("test_2016_flickr.de") and report["num_sentences"] == 1000
    assert json.loads((tmp_path / "run" / "report.json").read_text())["bleu"] == report["bleu"]
