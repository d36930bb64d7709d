"""Evaluation reports and sweep leaderboards, from a tiny two-run Hydra multirun (run in parallel)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from seq2seq.evaluation import compare
from seq2seq.evaluation.analysis import best_and_worst, bleu_by_length, length_bucket
from seq2seq.evaluation.bleu import score_corpus
from seq2seq.evaluation.compare import Run, leaderboard, ranking_metric, write_leaderboard
from seq2seq.evaluation.significance import paired_bootstrap
from tests.test_smoke import run_cli, tiny_overrides


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("sweep")
    # Side by side on Hydra's joblib launcher (one process and one thread per run), the way
    # README trains the members of an ensemble; the third cell's attention does not exist, and it
    # fails alone.
    result = run_cli("train.py", "-m", *tiny_overrides(tmp), "trainer.max_steps=8", "num_threads=1",
                     "model.attention=none,bahdanau,sideways", f"hydra.sweep.dir={tmp / 'multirun'}",
                     "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    # the failed cell makes the sweep's status 1, after the others ran
    assert result.returncode == 1 and b"sideways" in result.stderr, result.stderr.decode()[-3000:]
    assert len(list((tmp / "multirun").rglob("report.json"))) == 2
    assert len(list((tmp / "multirun").rglob("failed.json"))) == 1
    return tmp / "multirun"


def run_dirs(sweep: Path) -> list[Path]:
    return sorted(p.parent for p in sweep.rglob("report.json"))


@pytest.mark.slow
def test_training_report_sections(sweep):
    run = next(d for d in run_dirs(sweep)
               if "bahdanau" in json.loads((d / "report.json").read_text())["overrides"][-1])
    report = json.loads((run / "report.json").read_text())
    for key in ["bleu", "chrf", "ter", "bleu_signature", "chrf_signature", "ter_signature"]:
        assert key in report
    low, high = report["bleu_ci"]
    assert low <= report["bleu"] <= high or high - low < 1e-6  # the interval holds the estimate
    assert report["chrf_ci"][0] <= report["chrf"] <= report["chrf_ci"][1]
    assert sum(row["sentences"] for row in report["bleu_by_length"]) == report["num_sentences"]
    assert (run / report["bleu_by_length_png"]).is_file()
    assert len(report["attention_plots"]) == 3
    assert all((run / p["png"]).is_file() for p in report["attention_plots"])
    assert len(report["samples"]["best"]) == 5 and len(report["samples"]["worst"]) == 5
    assert report["samples"]["best"][0]["chrf"] >= report["samples"]["worst"][0]["chrf"]
    assert report["data_files"] and all(n > 0 for n in report["data_files"].values())
    assert report["versions"]["sacrebleu"] and report["train_tokens_per_second"] > 0
    markdown = (run / "report.md").read_text()
    for heading in ["## Scores", "## BLEU by source length", "## Attention", "## Learning curve",
                    "## Best translations", "## Worst translations", "## Run", "## Versions"]:
        assert heading in markdown
    assert "![attention](attention_1.png)" in markdown
    # the validation figures at the tested step, every topology's (a dict in report.json)
    assert set(report["best_valid"]) == {"loss", "ppl", "bleu", "chrf"}
    assert f"| best_valid bleu | {report['best_valid']['bleu']:.2f} |" in markdown
    html = (run / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 5  # length chart, 3 heatmaps, learning curve


@pytest.mark.slow
def test_evaluate_with_baseline_checkpoint_and_without_checkpoint(sweep, tmp_path):
    first, second = run_dirs(sweep)
    report = json.loads((first / "report.json").read_text())
    src, ref = report["source_file"], report["test_set"]
    result = run_cli("evaluate.py", "--checkpoint", str(first / "checkpoints" / "best.pt"),
                     "--src", src, "--ref", ref, "--baseline", str(second / "checkpoints" / "best.pt"),
                     "--bootstrap", "200", "--report-dir", str(tmp_path / "a"), "--html")
    assert result.returncode == 0, result.stderr.decode()
    assert "vs baseline: BLEU" in result.stdout.decode()
    scored = json.loads((tmp_path / "a" / "report.json").read_text())
    assert [r["metric"] for r in scored["baseline"]["results"]] == ["BLEU", "chrF2", "TER"]
    assert "## Compared with" in (tmp_path / "a" / "report.md").read_text()
    assert (tmp_path / "a" / "report.html").is_file()

    # Outputs only, no checkpoint: a system against itself is not significantly different.
    hyp = first / report["hypothesis_file"]
    result = run_cli("evaluate.py", "--hyp", str(hyp), "--ref", ref, "--baseline", str(hyp),
                     "--report-dir", str(tmp_path / "b"), "--bootstrap", "200")
    assert result.returncode == 0, result.stderr.decode()
    itself = json.loads((tmp_path / "b" / "report.json").read_text())["baseline"]["results"]
    assert all(r["p_value"] == 1.0 and not r["significant"] for r in itself)


@pytest.mark.slow
def test_compare_writes_a_leaderboard(sweep, tmp_path):
    result = run_cli("compare.py", str(sweep), "--out", str(tmp_path), "--bootstrap", "200")
    assert result.returncode == 0, result.stderr.decode()
    rows = list(csv.DictReader(open(tmp_path / "leaderboard.csv")))
    assert len(rows) == 2
    assert float(rows[0]["bleu"]) >= float(rows[1]["bleu"])
    assert {r["overrides"].split()[-1] for r in rows} == {"model.attention=none",
                                                          "model.attention=bahdanau"}
    assert rows[1]["p_value_vs_best"] != "" and rows[0]["p_value_vs_best"] == ""
    markdown = (tmp_path / "leaderboard.md").read_text()
    assert "| 1 |" in markdown and "| 2 |" in markdown and "best" in markdown
    # the failed cell: listed with its error, not ranked, and the sweep went on without it
    assert "Failed runs:" in markdown and "model.attention='sideways'" in markdown
    assert (tmp_path / "validation_bleu.png").stat().st_size > 1000


def _fake_run(folder: Path, references: Path, hypotheses: list[str], lowercased: bool) -> Run:
    """A run folder as training leaves it, with the report's scores computed from its output."""
    folder.mkdir()
    (folder / "test.hyp").write_text("\n".join(hypotheses) + "\n")
    refs = references.read_text().splitlines()
    scores = score_corpus(hypotheses, [r.lower() for r in refs] if lowercased else refs)
    report = {"bleu": scores.bleu, "bleu_lc": scores.bleu_lc, "chrf": scores.chrf,
              "test_set": str(references), "hypothesis_file": "test.hyp",
              "references_lowercased": lowercased}
    (folder / "report.json").write_text(json.dumps(report))
    return Run(folder, report)


def test_compare_ranks_lowercased_and_cased_runs_on_lowercased_bleu(tmp_path, monkeypatch):
    refs = ["A Man rides a Horse in Berlin .", "Two Dogs play .", "The Girl reads ."] * 20
    (tmp_path / "refs").write_text("\n".join(refs) + "\n")
    # The cased run has every word right but the case of the nouns: a poor cased BLEU, the best
    # lowercased BLEU. The lowercased run drops a word in every sentence.
    cased = _fake_run(tmp_path / "cased", tmp_path / "refs", [r.lower() for r in refs], False)
    lower = _fake_run(tmp_path / "lower", tmp_path / "refs",
                      [r.lower().replace(" in berlin", "").replace("two ", "")
                       for r in refs], True)
    assert lower.report["bleu"] > cased.report["bleu"]          # unlike figures
    assert cased.report["bleu_lc"] > lower.report["bleu_lc"]    # like ones
    assert ranking_metric([cased, lower]) == "bleu_lc" and ranking_metric([cased]) == "bleu"

    tested = []
    monkeypatch.setattr(compare, "paired_bootstrap", lambda *args: tested.append(args) or
                        paired_bootstrap(*args))
    rows = leaderboard([lower, cased], n_bootstrap=200)
    assert [row["run"] for row in rows] == [str(cased.folder), str(lower.folder)]
    assert rows[1]["significantly_worse"] is True and rows[0]["ranked_by"] == "bleu_lc"
    # the bootstrap saw both outputs and the references lowercased
    (system, baseline, references, _, tokenize), = tested
    assert tokenize == "13a"  # what the best run's report was scored with
    assert references == [r.lower() for r in refs] and baseline == [r.lower() for r in refs]
    assert system == lower.hypotheses()
    write_leaderboard(rows, [lower, cased], tmp_path / "board")
    markdown = (tmp_path / "board" / "leaderboard.md").read_text()
    assert "Sorted by lowercased test BLEU" in markdown and "| lower * |" in markdown
    assert "write lowercased text" in markdown


@pytest.mark.slow
def test_compare_without_runs_is_a_clear_error(tmp_path):
    result = run_cli("compare.py", str(tmp_path))
    assert result.returncode == 2 and "no report.json found" in result.stderr.decode()


def test_paired_bootstrap_detects_a_real_difference():
    refs = ["a cat sat on a mat", "the dog ran home", "we have three cats"] * 30
    worse = ["a cat sat on the mat", "the dog", "we have two cats"] * 30
    better = ["a cat sat on a mat", "the dog ran home", "we have two cats"] * 30
    results = paired_bootstrap(better, worse, refs, n_samples=300)
    assert all(r.significant for r in results)
    assert results[0].system > results[0].baseline


def test_length_buckets_and_samples():
    assert [length_bucket(n) for n in (1, 10, 11, 40, 41)] == ["1-10", "1-10", "11-20", "31-40",
                                                              "41+"]
    sources = ["a b", "a b c d e f g h i j k l"]
    rows = bleu_by_length(sources, ["x y", "same words here"], ["x y", "same words here"])
    assert [(r["bucket"], r["sentences"]) for r in rows] == [("1-10", 1), ("11-20", 1)]
    samples = best_and_worst(sources, ["good", "bad"], ["good", "other"], count=1)
    assert samples["best"][0]["line"] == 1 and samples["worst"][0]["line"] == 2
