import json
import re
from pathlib import Path

import pytest
from sacrebleu.metrics import BLEU

from seq2seq.cli.compare import main as compare_main
from seq2seq.cli.evaluate import main as evaluate_main
from seq2seq.data.corpus import read_lines
from seq2seq.errors import ConfigError, DataError
from seq2seq.evaluation.bleu import bleu_tokenizer, score_corpus, tool_tokenizer
from seq2seq.pipeline import run_training
from tests.conftest import compose_train
from tests.test_smoke import tiny_overrides


def test_perfect_and_signature():
    refs = ["ich sehe drei Katzen .", "wir haben einen Hund"]
    scores = score_corpus(refs, refs)
    assert scores.bleu == 100.0 and scores.chrf == 100.0
    assert scores.bleu_signature.startswith("nrefs:1|case:mixed") and "tok:13a" in scores.bleu_signature
    assert "case:lc" in scores.bleu_lc_signature


def test_casing_only_differs_in_lowercased_bleu():
    scores = score_corpus(["ICH SEHE DREI KATZEN"], ["ich sehe drei Katzen"])
    assert scores.bleu < 100.0 and scores.bleu_lc == 100.0


def test_count_mismatch():
    with pytest.raises(DataError, match="2 hypotheses but 1 references"):
        score_corpus(["a", "b"], ["a"])


# -- the BLEU tokenizer (evaluation.tokenize, --tokenize) -----------------------------------------

@pytest.mark.parametrize("lang, expected", [("zh", "zh"), ("zh-CN", "zh"), ("ZH_Hans", "zh"),
                                            ("de", "13a"), ("en", "13a"), (None, "13a")])
def test_auto_tokenizer_follows_the_target_language(lang, expected):
    assert bleu_tokenizer("auto", lang) == expected


def test_explicit_tokenizers_are_kept_and_unknown_ones_refused():
    assert bleu_tokenizer("char", "de") == "char" and bleu_tokenizer("13a", "zh") == "13a"
    with pytest.raises(ConfigError, match="evaluation.tokenize='nope'.*auto or one of"):
        bleu_tokenizer("nope", "de")
    with pytest.raises(ConfigError, match="--tokenize"):
        bleu_tokenizer("nope", "de", "--tokenize")


@pytest.mark.parametrize("lang, name, extra", [("ja", "ja-mecab", "sacrebleu[ja]"),
                                               ("ko", "ko-mecab", "sacrebleu[ko]")])
def test_mecab_tokenizers_name_their_pip_extra_when_missing(lang, name, extra):
    try:
        BLEU(tokenize=name)
    except RuntimeError:  # the extra is not installed here: a ConfigError says how to get it
        with pytest.raises(ConfigError, match=re.escape(f"pip install '{extra}'")):
            bleu_tokenizer("auto", lang)
    else:
        assert bleu_tokenizer("auto", lang) == name


def test_tools_fall_back_on_the_checkpoint_config():
    config = {"data": {"tgt_lang": "zh"}, "evaluation": {"tokenize": "auto"}}
    assert tool_tokenizer(None, None, config) == "zh"
    assert tool_tokenizer(None, "de", config) == "13a"     # --tgt-lang wins
    assert tool_tokenizer("char", None, config) == "char"  # --tokenize wins
    assert tool_tokenizer(None, None, {"data": {"tgt_lang": "zh"}}) == "zh"  # predates the key
    assert tool_tokenizer(None, None, {"evaluation": {"tokenize": "intl"}}) == "intl"
    assert tool_tokenizer(None, None, None) == "13a"


def test_chinese_bleu_needs_the_zh_tokenizer_and_says_so():
    refs = ["我们有二十一只绿鸟和一座大房子"]
    hyps = ["我们有二十一只绿鸟和一座小房子"]  # one character wrong
    spaced = score_corpus(hyps, refs)  # 13a: the whole sentence is one "word"
    scores = score_corpus(hyps, refs, tokenize="zh")
    assert spaced.bleu == 0.0 and scores.bleu > 50.0
    assert "tok:zh" in scores.bleu_signature and "tok:zh" in scores.bleu_lc_signature
    assert scores.bleu_tokenize == "zh" and "asian:yes" in scores.ter_signature


@pytest.mark.slow
def test_a_chinese_target_run_scores_bleu_with_the_zh_tokenizer(tmp_path, capsys):
    """The built-in corpus with data.tgt_lang=zh: validation and test BLEU use sacrebleu's zh
    tokenizer, the report's signature says so, and so do the evaluate and compare tools."""
    run = tmp_path / "run"
    overrides = [o for o in tiny_overrides(tmp_path) if not o.startswith("data.root")]
    cfg = compose_train(overrides + ["data.tgt_lang=zh", "data.vocab_size=120"])
    assert cfg.data.root.endswith("numbers_en_zh")
    run_training(cfg, run)
    report = json.loads((run / "report.json").read_text())
    assert "tok:zh" in report["bleu_signature"] and report["bleu_tokenize"] == "zh"
    assert report["tgt_lang"] == "zh" and "tok:zh" in (run / "report.md").read_text()
    hypotheses = run / report["hypothesis_file"]
    assert hypotheses.name == "test.hyp.zh"
    references = read_lines(report["test_set"])
    assert not any(" " in line for line in references)
    # evaluate: the checkpoint's target language picks zh; --tokenize overrides it.
    assert evaluate_main(["--hyp", str(hypotheses), "--ref", report["test_set"], "--bootstrap", "0",
                          "--tgt-lang", "zh", "--report-dir", str(tmp_path / "zh")]) == 0
    assert "tok:zh" in capsys.readouterr().out
    assert evaluate_main(["--checkpoint", str(run / "checkpoints" / "best.pt"), "--src",
                          str(Path(report["test_set"]).with_suffix(".en")), "--ref",
                          report["test_set"], "--bootstrap", "0", "--attention-plots", "0",
                          "--tokenize", "char", "--report-dir", str(tmp_path / "char")]) == 0
    assert "tok:char" in capsys.readouterr().out
    assert compare_main([str(run), "--bootstrap", "10", "--out", str(tmp_path / "board")]) == 0
    assert "tokenizer zh" in (tmp_path / "board" / "leaderboard.md").read_text()
