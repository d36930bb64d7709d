"""End to end: a few training steps on a tiny generated corpus, then translate and evaluate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from seq2seq.data.corpus import read_lines
from seq2seq.errors import ConfigError
from seq2seq.evaluation.bleu import score_corpus
from seq2seq.pipeline import run_training
from seq2seq.training.metrics_log import read_metrics
from seq2seq.translate import Translator
from tests.conftest import ROOT, compose_train

TINY_MODEL = ["model.encoder.embedding_dim=16", "model.encoder.hidden_size=16",
              "model.decoder.embedding_dim=16", "model.decoder.hidden_size=24"]


def tiny_overrides(tmp: Path) -> list[str]:
    return ["trainer=smoke", f"paths.cache_dir={tmp / 'cache'}", f"data.root={tmp / 'numbers'}",
            "data.generator.sizes.train=300", "data.generator.sizes.valid=16",
            "data.generator.sizes.test=12", "data.vocab_size=90", "search.beam=3", *TINY_MODEL]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("smoke")
    run_dir = tmp / "run"
    cfg = compose_train(tiny_overrides(tmp) + ["trainer.max_steps=12", "trainer.lr=0.01"])
    run_training(cfg, run_dir)
    return run_dir


def run_cli(script: str, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / script), *args], input=stdin,
                          capture_output=True, timeout=300, cwd=ROOT)


@pytest.mark.slow
def test_run_folder_holds_checkpoints_metrics_and_report(trained_run):
    for name in ["checkpoints/best.pt", "checkpoints/last.pt", "metrics.csv", "report.md",
                 "report.json", "learning_curve.png"]:
        assert (trained_run / name).is_file(), name
    report = json.loads((trained_run / "report.json").read_text())
    for key in ["bleu", "chrf", "signature", "test_set", "num_params", "train_seconds",
                "train_tokens_per_second"]:
        assert key in report, key
    assert report["num_params"] > 0 and report["train_tokens_per_second"] > 0
    assert report["wall_seconds"] >= report["train_seconds"] > 0  # the wall time has validation
    assert "nrefs:1" in report["signature"] and report["num_sentences"] == 12
    assert "| BLEU |" in (trained_run / "report.md").read_text()
    train_rows = [r for r in read_metrics(trained_run / "metrics.csv") if r["split"] == "train"]
    assert float(train_rows[-1]["loss"]) < float(train_rows[0]["loss"])  # the loss fell


@pytest.mark.slow
def test_translate_tool_keeps_lines_aligned(trained_run):
    ckpt = str(trained_run / "checkpoints" / "best.pt")
    lines = ["we have two cats", "", "   ", "i see a red dog and nine new books", "x" * 2000]
    result = run_cli("translate.py", "--checkpoint", ckpt, "--beam", "2",
                     stdin=("\n".join(lines) + "\n").encode())
    assert result.returncode == 0, result.stderr.decode()
    out = result.stdout.decode().split("\n")
    assert out[-1] == "" and len(out) - 1 == len(lines)
    assert out[1] == "" and out[2] == ""
    assert "input line 5 has" in result.stderr.decode() and "truncated to" in result.stderr.decode()
    # The Python API gives the same translations.
    translator = Translator.from_checkpoint(ckpt, beam=2)
    assert translator.translate(lines[:2]) == out[:2]


@pytest.mark.slow
def test_translate_tool_ends_quietly_when_the_reader_stops(trained_run, tmp_path):
    """`seq2seq-translate ... | head -1`: the closed pipe ends the tool with status 0 and nothing
    on stderr, not "error: Broken pipe"."""
    ckpt = str(trained_run / "checkpoints" / "best.pt")
    source = tmp_path / "in.txt"
    source.write_text("we have two cats\n" * 3000)
    command = (f"{sys.executable} {ROOT / 'scripts' / 'translate.py'} --checkpoint {ckpt} "
               f"--input {source} --chunk 1 | head -1")
    result = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True,
                            timeout=300, cwd=ROOT)
    assert result.stdout.decode().count("\n") == 1
    assert result.stderr.decode() == "" and result.returncode == 0


@pytest.mark.slow
def test_translate_tool_files_and_bad_bytes(trained_run, tmp_path):
    ckpt = str(trained_run / "checkpoints" / "last.pt")
    src = tmp_path / "in.txt"
    src.write_bytes(b"two cats\r\n\xff\xfe broken\nlast line without newline")
    out = tmp_path / "out.txt"
    result = run_cli("translate.py", "--checkpoint", ckpt, "--input", str(src), "--output", str(out))
    assert result.returncode == 0, result.stderr.decode()
    assert "in.txt:2: invalid UTF-8" in result.stderr.decode()
    assert len(out.read_text().splitlines()) == 3


@pytest.mark.slow
def test_translate_tool_rejects_a_bad_checkpoint(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    out = tmp_path / "out.txt"
    result = run_cli("translate.py", "--checkpoint", str(bad), "--output", str(out), stdin=b"a\n")
    assert result.returncode == 2
    assert "bad.pt: cannot read checkpoint" in result.stderr.decode()
    assert "Traceback" not in result.stderr.decode() and not out.exists()


@pytest.mark.slow
def test_evaluate_tool_with_checkpoint_and_with_hypotheses(trained_run, tmp_path):
    report = json.loads((trained_run / "report.json").read_text())
    src, ref = report["source_file"], report["test_set"]
    result = run_cli("evaluate.py", "--checkpoint", str(trained_run / "checkpoints" / "best.pt"),
                     "--src", src, "--ref", ref, "--beam", "3", "--report-dir", str(tmp_path / "a"))
    assert result.returncode == 0, result.stderr.decode()
    assert "BLEU = " in result.stdout.decode() and "nrefs:1" in result.stdout.decode()
    scored = json.loads((tmp_path / "a" / "report.json").read_text())
    assert scored["bleu"] == pytest.approx(report["bleu"])  # same checkpoint, same beam

    hyp = trained_run / "test.hyp.de"
    result = run_cli("evaluate.py", "--hyp", str(hyp), "--ref", ref, "--report-dir",
                     str(tmp_path / "b"))
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads((tmp_path / "b" / "report.json").read_text())["bleu"] == scored["bleu"]
    assert len(read_lines(hyp)) == 12


@pytest.mark.slow
def test_train_script_is_a_hydra_app(tmp_path):
    run_dir = tmp_path / "hydra_run"
    result = run_cli("train.py", *tiny_overrides(tmp_path), f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    assert "bleu" in result.stdout.decode()
    assert (run_dir / "report.json").is_file() and (run_dir / ".hydra" / "config.yaml").is_file()


@pytest.mark.slow
def test_train_script_reports_bad_data_clearly(tmp_path):
    result = run_cli("train.py", "data=multi30k", f"data.root={tmp_path / 'nowhere'}",
                     f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode != 0
    assert "nowhere/train.en" in result.stderr.decode() + result.stdout.decode()


@pytest.mark.slow
def test_shared_embeddings_train_and_reload_shared(tmp_path):
    shared = tiny_overrides(tmp_path) + ["model.share_embeddings=true",
                                         "model.decoder.tie_embeddings=true"]
    run_training(compose_train(shared + ["trainer.max_steps=3"]), tmp_path / "run")
    model = Translator.from_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt").model
    assert model.encoder.embedding.weight is model.decoder.embedding.weight
    assert model.decoder.output_layer.weight is model.decoder.embedding.weight


@pytest.mark.slow
def test_an_output_layer_restricted_to_the_training_targets_trains_and_reloads(tmp_path):
    """model.decoder.output_vocabulary=training_targets: with the joint vocabulary of the
    numbers corpus some pieces occur only in the English sources; the output layer leaves them
    out, and the checkpoint brings the same restriction back for translation."""
    from seq2seq.topologies.translate import corpus_and_tokenizers
    overrides = tiny_overrides(tmp_path) + ["model.decoder.output_vocabulary=training_targets"]
    cfg = compose_train(overrides + ["trainer.max_steps=3"])
    run_training(cfg, tmp_path / "run")
    files, tokenizers, _ = corpus_and_tokenizers(cfg)
    target_ids = {i for ids in tokenizers.tgt.encode(files.read(files.train).tgt) for i in ids}
    translator = Translator.from_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    kept = set(translator.model.decoder.output_ids.tolist())
    assert kept == target_ids | {0, 1, 2, 3}
    assert len(kept) < tokenizers.tgt.vocab_size  # the English-only pieces are left out
    assert len(translator.translate(["one two", "three"])) == 2


def test_a_restricted_output_layer_refuses_subword_sampling(tmp_path):
    cfg = compose_train(tiny_overrides(tmp_path) + [
        "model.decoder.output_vocabulary=training_targets", "tokenizer.sampling_alpha=0.2"])
    with pytest.raises(ConfigError, match="output_vocabulary=training_targets cannot be "
                                          "combined with tokenizer.sampling_alpha"):
        run_training(cfg, tmp_path / "run")


def test_shared_embeddings_need_a_joint_tokenizer(tmp_path):
    cfg = compose_train(tiny_overrides(tmp_path) + ["model.share_embeddings=true",
                                                     "tokenizer.joint=false"])
    with pytest.raises(ConfigError, match="model.share_embeddings=true.*tokenizer.joint=true"):
        run_training(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()  # stopped before any training


@pytest.mark.slow
def test_a_case_folding_tokenizer_is_scored_against_lowercased_references(tmp_path):
    run_dir = tmp_path / "run"
    run_training(compose_train(tiny_overrides(tmp_path) + [
        "trainer.max_steps=3", "tokenizer.normalization=nmt_nfkc_cf"]), run_dir)
    report = json.loads((run_dir / "report.json").read_text())
    assert report["references_lowercased"] is True
    assert "against the lowercased references" in (run_dir / "report.md").read_text()
    hypotheses = read_lines(run_dir / "test.hyp.de", allow_empty=True)
    assert all(line == line.lower() for line in hypotheses)
    references = read_lines(report["test_set"])
    assert any(line != line.lower() for line in references)  # the corpus is cased
    lowered = score_corpus(hypotheses, [line.lower() for line in references])
    assert report["chrf"] == pytest.approx(lowered.chrf) and lowered.chrf > 0  # 3 steps: BLEU is 0
    assert lowered.chrf != pytest.approx(score_corpus(hypotheses, references).chrf)

    result = run_cli("evaluate.py", "--checkpoint", str(run_dir / "checkpoints" / "best.pt"),
                     "--src", report["source_file"], "--ref", report["test_set"], "--beam", "3",
                     "--report-dir", str(tmp_path / "scored"))
    assert result.returncode == 0, result.stderr.decode()
    scored = json.loads((tmp_path / "scored" / "report.json").read_text())
    assert scored["references_lowercased"] is True and scored["chrf"] == pytest.approx(report["chrf"])
    result = run_cli("search_sweep.py", "--checkpoint", str(run_dir / "checkpoints" / "best.pt"),
                     "--src", report["source_file"], "--ref", report["test_set"], "--beams", "3",
                     "--length-penalties", "1.0",  # conf/search/beam.yaml
                     "--out", str(tmp_path / "sweep.json"))
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads((tmp_path / "sweep.json").read_text())[0]["chrf"] == pytest.approx(report["chrf"])


@pytest.mark.slow
def test_a_recased_model_writes_cased_text_scored_against_the_cased_references(tmp_path):
    run_dir = tmp_path / "run"
    run_training(compose_train(tiny_overrides(tmp_path) + [
        "trainer.max_steps=3", "tokenizer.normalization=nmt_nfkc_cf", "tokenizer.recase=true"]),
        run_dir)
    report = json.loads((run_dir / "report.json").read_text())
    assert report["recased"] is True and report["references_lowercased"] is False
    assert "its output is recased" in (run_dir / "report.md").read_text()
    references = read_lines(report["test_set"])
    hypotheses = read_lines(run_dir / "test.hyp.de", allow_empty=True)
    assert report["chrf"] == pytest.approx(score_corpus(hypotheses, references).chrf)
    checkpoint = run_dir / "checkpoints" / "best.pt"
    translator = Translator.from_checkpoint(checkpoint)
    # the generated corpus writes German nouns with a capital and starts lines in lowercase
    assert translator.recaser.recase("wir sehen drei hunde") == "wir sehen drei Hunde"
    assert translator.translate(read_lines(report["source_file"])) == hypotheses

    result = run_cli("evaluate.py", "--checkpoint", str(checkpoint), "--src", report["source_file"],
                     "--ref", report["test_set"], "--beam", "3", "--report-dir", str(tmp_path / "scored"))
    assert result.returncode == 0, result.stderr.decode()
    scored = json.loads((tmp_path / "scored" / "report.json").read_text())
    assert scored["recased"] is True and scored["chrf"] == pytest.approx(report["chrf"])
    result = run_cli("recase.py", "--checkpoint", str(checkpoint), stdin="du willst sechs lampen\n".encode())
    assert result.returncode == 0 and result.stdout.decode() == "du willst sechs Lampen\n"


@pytest.mark.slow
def test_recase_tool_names_a_checkpoint_without_a_recaser(trained_run):
    result = run_cli("recase.py", "--checkpoint", str(trained_run / "checkpoints" / "best.pt"),
                     stdin=b"wir sehen drei hunde\n")
    assert result.returncode == 2 and not result.stdout
    assert "best.pt: holds no recaser" in result.stderr.decode()


@pytest.mark.slow
def test_search_sweep_scores_each_setting(trained_run, tmp_path):
    numbers = trained_run.parent / "numbers"
    out = tmp_path / "sweep.json"
    result = run_cli("search_sweep.py", "--checkpoint", str(trained_run / "checkpoints" / "best.pt"),
                     "--src", str(numbers / "valid.en"), "--ref", str(numbers / "valid.de"),
                     "--beams", "1", "3", "--length-penalties", "0", "1", "--out", str(out))
    assert result.returncode == 0, result.stderr.decode()
    rows = json.loads(out.read_text())
    assert sorted((r["beam"], r["length_penalty"]) for r in rows) == [(1, 0), (1, 1), (3, 0), (3, 1)]
    assert rows == sorted(rows, key=lambda r: -r["bleu"])
    assert "lc BLEU" in result.stdout.decode()
    bad = run_cli("search_sweep.py", "--checkpoint", str(trained_run / "checkpoints" / "best.pt"),
                  "--src", str(numbers / "valid.en"), "--ref", str(numbers / "train.de"))
    assert bad.returncode == 2 and "sources but" in bad.stderr.decode()


@pytest.mark.slow
def test_translate_and_evaluate_with_an_ensemble(trained_run, tmp_path):
    best, last = (str(trained_run / "checkpoints" / name) for name in ("best.pt", "last.pt"))
    result = run_cli("translate.py", "--checkpoint", best, last, "--beam", "2", "--length-penalty", "1.2",
                     stdin=b"we have two cats\n\ni see a red dog\n")
    assert result.returncode == 0, result.stderr.decode()
    assert len(result.stdout.decode().split("\n")) == 4  # three lines out, then the final newline
    numbers = trained_run.parent / "numbers"
    result = run_cli("evaluate.py", "--checkpoint", best, last, "--src", str(numbers / "test.en"),
                     "--ref", str(numbers / "test.de"), "--length-penalty", "0.6",
                     "--report-dir", str(tmp_path / "eval"))
    assert result.returncode == 0, result.stderr.decode()
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert " + " in report["checkpoint"] and report["length_penalty"] == 0.6


def test_evaluate_reports_the_decoding_time_of_the_whole_test_set(trained_run, tmp_path, monkeypatch):
    from seq2seq.cli import evaluate
    real = Translator.translate_detailed

    def timed(self, sentences, *args, **kwargs):  # a stand-in clock: one second per sentence
        out = real(self, sentences, *args, **kwargs)
        self.last_seconds = float(len(sentences))
        return out

    monkeypatch.setattr(Translator, "translate_detailed", timed)
    numbers = trained_run.parent / "numbers"
    test_lines = len(read_lines(numbers / "test.en"))
    assert evaluate.main(["--checkpoint", str(trained_run / "checkpoints" / "best.pt"),
                          "--src", str(numbers / "test.en"), "--ref", str(numbers / "test.de"),
                          "--attention-plots", "2", "--report-dir", str(tmp_path)]) == 0
    # Not the time of the short attention pass that follows the test set's translation.
    assert json.loads((tmp_path / "report.json").read_text())["decode_seconds"] == test_lines


def test_an_ensemble_member_of_another_topology_is_named(trained_run, tmp_path):
    from seq2seq.errors import CheckpointError
    from seq2seq.training.checkpoint import load_checkpoint, save_checkpoint
    best = trained_run / "checkpoints" / "best.pt"
    payload = load_checkpoint(best)
    payload["config"]["topology"] = {"task": "tag"}
    other = tmp_path / "tagger.pt"
    save_checkpoint(other, payload)
    with pytest.raises(CheckpointError, match="tagger.pt: a tag checkpoint"):
        Translator.from_checkpoints([best, other])
