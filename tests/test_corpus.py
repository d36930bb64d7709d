import gzip
import os
import re

import pytest

from seq2seq.data.corpus import CorpusFiles, read_lines, read_parallel, write_lines
from seq2seq.data.download import download_multi30k
from seq2seq.data.synthetic import chinese_number, make_pair, write_number_corpus
from seq2seq.errors import ConfigError, DataError
from tests.conftest import compose_train


def test_missing_file_named(tmp_path):
    with pytest.raises(DataError, match=r"missing\.en: file not found"):
        read_lines(tmp_path / "missing.en")


def test_unequal_line_counts_name_both_files_and_counts(tmp_path):
    (tmp_path / "a.en").write_text("one\ntwo\nthree\n")
    (tmp_path / "a.de").write_text("eins\nzwei\n")
    with pytest.raises(DataError) as err:
        read_parallel(tmp_path / "a.en", tmp_path / "a.de")
    message = str(err.value)
    assert "a.en has 3 lines" in message and "a.de has 2" in message


def test_invalid_utf8_names_file_and_line(tmp_path):
    (tmp_path / "bad.en").write_bytes(b"fine\nalso fine\nbroken \xff\xfe here\n")
    with pytest.raises(DataError, match=r"bad\.en:3: invalid UTF-8"):
        read_lines(tmp_path / "bad.en")


def test_empty_file_is_an_error(tmp_path):
    (tmp_path / "empty.en").write_bytes(b"")
    with pytest.raises(DataError, match="empty.en: file is empty"):
        read_lines(tmp_path / "empty.en")


def test_windows_line_endings_and_missing_final_newline(tmp_path):
    (tmp_path / "crlf.en").write_bytes(b"one\r\ntwo\r\n\r\nfour")
    assert read_lines(tmp_path / "crlf.en") == ["one", "two", "", "four"]


def test_check_exist_lists_every_missing_file(tmp_path):
    (tmp_path / "train.en").write_text("x\n")
    files = CorpusFiles(tmp_path, "en", "de")
    with pytest.raises(DataError) as err:
        files.check_exist()
    assert "train.de" in str(err.value) and "test.en" in str(err.value)
    assert "train.en," not in str(err.value)


def test_write_lines_round_trip(tmp_path):
    path = write_lines(tmp_path / "out.txt", ["a", "", "c"])
    assert read_lines(path) == ["a", "", "c"]
    assert not list(tmp_path.glob(".*tmp"))


def test_number_corpus_is_deterministic_and_held_out(tmp_path):
    sizes = {"train": 200, "valid": 20, "test": 20}
    first = write_number_corpus(tmp_path / "a", sizes, seed=5)
    second = write_number_corpus(tmp_path / "b", sizes, seed=5)
    for split in sizes:
        for lang in ("en", "de"):
            assert (first / f"{split}.{lang}").read_text() == (second / f"{split}.{lang}").read_text()
    train = set(read_lines(first / "train.en"))
    assert not train & set(read_lines(first / "test.en"))
    assert len(read_lines(first / "valid.de")) == 20


def test_number_pairs_need_reordering():
    import random
    pairs = [make_pair(random.Random(i)) for i in range(200)]
    assert any("twenty-one" in en and "einundzwanzig" in de for en, de in pairs) or \
        any("-" in en and "und" in de for en, de in pairs)


def test_download_multi30k_from_local_url(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    for split in ("train", "val", "test_2016_flickr"):
        for lang in ("en", "de"):
            with gzip.open(served / f"{split}.{lang}.gz", "wt", encoding="utf-8") as handle:
                handle.write(f"{split} {lang} line\n")
    root = download_multi30k(tmp_path / "cache", url=served.as_uri() + "/{name}.gz")
    assert read_lines(root / "val.de") == ["val de line"]
    with pytest.raises(DataError, match="could not download"):
        download_multi30k(tmp_path / "cache2", url=served.as_uri() + "/nothing-{name}.gz")
    assert not list((tmp_path / "cache2").iterdir())  # nothing half-written


def test_two_writers_of_the_same_file_do_not_take_each_others_temporary_file(tmp_path, monkeypatch):
    # The runs of a parallel multirun generate the built-in corpus into one folder at once: here a
    # second writer completes the same file between the first one's write and its rename.
    target = tmp_path / "train.en"
    real_replace = os.replace
    interrupted = []

    def replace(src, dst):
        if not interrupted:
            interrupted.append(True)
            write_lines(target, ["the other writer"])
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    write_lines(target, ["this writer"])
    assert target.read_text() == "this writer\n"
    assert [p.name for p in tmp_path.iterdir()] == ["train.en"]  # no temporary file left


def test_an_overlong_training_line_is_read_to_be_dropped_but_a_test_line_is_an_error(tmp_path):
    """Training pairs over data.max_length are dropped and counted (kept_pairs); a line of the
    test split is scored, so a broken one is named instead."""
    files = CorpusFiles(tmp_path, "en", "de", "train", "valid", "test")
    for split in ("train", "test"):
        (tmp_path / f"{split}.en").write_text("short\n" + "x" * 100_000 + "\n")
        (tmp_path / f"{split}.de").write_text("kurz\nlang\n")
    assert len(files.read("train")) == 2
    with pytest.raises(DataError, match=r"test\.en:2: line has 100,000 characters"):
        files.read("test")


@pytest.mark.parametrize("number, written", [
    (0, "零"), (2, "二"), (10, "十"), (11, "十一"), (21, "二十一"), (100, "一百"), (105, "一百零五"),
    (110, "一百一十"), (305, "三百零五"), (1001, "一千零一"), (1010, "一千零一十"),
    (1020, "一千零二十"), (9999, "九千九百九十九"), (10000, "一万"), (20500, "二万零五百"),
    (100000, "十万"), (1100000, "一百一十万"), (100000001, "一亿零一")])
def test_chinese_numerals(number, written):
    assert chinese_number(number) == written


def test_chinese_numerals_refuse_what_they_cannot_write():
    with pytest.raises(ValueError, match="expected a number from 0"):
        chinese_number(-1)


def test_chinese_targets_translate_the_same_english_without_spaces():
    import random
    for seed in range(50):
        en_de, de = make_pair(random.Random(seed))
        en_zh, zh = make_pair(random.Random(seed), tgt_lang="zh")
        assert en_zh == en_de and " " not in zh and not any(c.isascii() for c in zh)
    # One of each thing: subject, then items of number + measure word (+ adjective) + noun.
    item = "一[只条座个辆本朵把棵盏][红蓝绿小大旧新黑]?(猫|狗|房子|苹果|车|书|鸟|花|椅子|船|树|灯)"
    for seed in range(20):
        _, zh = make_pair(random.Random(seed), max_number=1, tgt_lang="zh")
        assert re.fullmatch(f"(我看见|我们有|她买|他们画|你想要){item}(、{item})*(和{item})?", zh), zh
    pairs = [make_pair(random.Random(i), tgt_lang="zh") for i in range(300)]
    assert any("two " in en and "两" in zh for en, zh in pairs)  # 两, not 二, counts things


def test_number_corpus_targets_and_folders(tmp_path):
    root = write_number_corpus(tmp_path / "zh", {"train": 20, "valid": 5, "test": 5}, seed=5,
                               tgt_lang="zh")
    assert len(read_lines(root / "test.zh")) == 5 and not (root / "test.de").exists()
    with pytest.raises(ConfigError, match="data.tgt_lang='fr'.*de or zh"):
        write_number_corpus(tmp_path / "fr", {"train": 2}, tgt_lang="fr")
    with pytest.raises(ConfigError, match="data.src_lang='de'"):
        write_number_corpus(tmp_path / "de", {"train": 2}, src_lang="de", tgt_lang="zh")
    roots = {lang: compose_train([f"data.tgt_lang={lang}"]).data.root for lang in ("de", "zh")}
    assert roots["de"].endswith("numbers_en_de") and roots["zh"].endswith("numbers_en_zh")
