"""--nbest and --sampling on the translate and evaluate tools, on a checkpoint and on its ONNX
export (a tiny training run: slow)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from seq2seq.cli.evaluate import main as evaluate_main
from seq2seq.cli.translate import main as translate_main
from seq2seq.nbest import parse_nbest_line
from seq2seq.pipeline import run_training
from tests.conftest import compose_train
from tests.test_smoke import tiny_overrides

LINES = ["twenty-one cats", "", "three dogs and five birds", "one hundred"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A translation checkpoint of a short run; its search.beam is 3."""
    tmp = tmp_path_factory.mktemp("nbest")
    run_training(compose_train(tiny_overrides(tmp) + [
        "trainer.max_steps=20", "trainer.lr=0.01", "report.bootstrap_resamples=0",
        "report.html=false", "report.attention_plots=0"]), tmp / "run")
    return tmp / "run" / "checkpoints" / "best.pt"


def translate(path: Path, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = translate_main(["--checkpoint", str(path), *args],
                          stdin=io.BytesIO(("\n".join(LINES) + "\n").encode()), stdout=out)
    return code, out.getvalue()


def parsed(text: str) -> list:
    return [parse_nbest_line(line) for line in text.splitlines()]


def test_nbest_lines_parse_are_sorted_and_lead_with_the_default_output(checkpoint):
    code, plain = translate(checkpoint)
    assert code == 0 and plain.count("\n") == len(LINES)
    code, one = translate(checkpoint, "--nbest", "1")
    assert code == 0
    entries = parsed(one)
    assert [e.sentence for e in entries] == list(range(len(LINES)))  # one line per line in
    assert [e.text for e in entries] == plain.splitlines()
    code, three = translate(checkpoint, "--nbest", "3", "--chunk", "2")  # indices over chunks
    assert code == 0
    entries = parsed(three)
    assert [e.sentence for e in entries] == [i for i in range(len(LINES)) for _ in range(3)]
    for i in range(len(LINES)):
        scores = [e.score for e in entries if e.sentence == i]
        assert scores == sorted(scores, reverse=True)
    assert [entries[3 * i].text for i in range(len(LINES))] == plain.splitlines()
    assert entries[3].text == "" and entries[3].score == 0.0  # the empty line


@pytest.mark.parametrize("args", [["--nbest", "4", "--beam", "2"], ["--nbest", "0"],
                                  ["--sampling", "--beam", "3"]])
def test_bad_combinations_are_refused_by_the_parser(checkpoint, args):
    with pytest.raises(SystemExit) as exit_info:
        translate(checkpoint, *args)
    assert exit_info.value.code == 2


@pytest.mark.parametrize("args,message", [
    (["--nbest", "5"], "--nbest=5 is more than the beam width (3)"),
    (["--temperature", "0.5"], "--temperature: sampling options; add --sampling"),
    (["--sampling", "--temperature", "0"], "search.temperature=0.0"),
    (["--sampling", "--top-p", "2"], "search.top_p=2.0"),
])
def test_bad_options_against_the_checkpoint_name_the_option(checkpoint, args, message, capsys):
    code, out = translate(checkpoint, *args)
    assert code == 2 and out == ""
    assert message in capsys.readouterr().err


def test_seeded_sampling_is_reproducible(checkpoint):
    runs = [translate(checkpoint, "--sampling", "--seed", str(seed), "--nbest", "4",
                      "--temperature", "2", "--top-k", "20") for seed in (1, 1, 2)]
    assert all(code == 0 for code, _ in runs)
    assert runs[0][1] == runs[1][1] and runs[0][1] != runs[2][1]
    assert len(parsed(runs[0][1])) == 4 * len(LINES)  # 4 samples each, above the beam of 3
    code, plain = translate(checkpoint, "--sampling", "--seed", "1")
    assert code == 0 and plain.count("\n") == len(LINES)


def test_evaluate_writes_the_lists_and_the_oracle_and_keeps_the_one_best_scores(checkpoint,
                                                                                tmp_path, capsys):
    src, ref = tmp_path / "test.src", tmp_path / "test.ref"
    src.write_text("\n".join(LINES) + "\n")
    ref.write_text("einundzwanzig Katzen\n\ndrei Hunde und fünf Vögel\nhundert\n")
    reports = {}
    for name, extra in (("plain", []), ("nbest", ["--nbest", "3"])):
        code = evaluate_main(["--checkpoint", str(checkpoint), "--src", str(src), "--ref",
                              str(ref), "--report-dir", str(tmp_path / name), "--bootstrap", "0",
                              "--attention-plots", "0", *extra])
        assert code == 0
        reports[name] = json.loads((tmp_path / name / "report.json").read_text())
    assert reports["nbest"]["bleu"] == reports["plain"]["bleu"]
    assert reports["nbest"]["chrf"] == reports["plain"]["chrf"]
    assert reports["nbest"]["nbest"] == 3 and "oracle_chrf" in reports["nbest"]
    hypotheses = (tmp_path / "nbest" / "hypotheses.txt").read_text().splitlines()
    entries = parsed((tmp_path / "nbest" / "nbest.txt").read_text())
    assert [e.text for e in entries[::3]] == hypotheses
    assert "oracle of the 3-best lists" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        evaluate_main(["--hyp", str(ref), "--ref", str(ref), "--nbest", "2"])


def test_the_exported_model_gives_the_same_lists_and_samples(checkpoint, tmp_path):
    pytest.importorskip("onnxruntime")
    from seq2seq.export.onnx_export import export_onnx

    exported = export_onnx(checkpoint, tmp_path / "model")
    for args in (["--nbest", "3"], ["--sampling", "--seed", "5", "--nbest", "2"]):
        found = {}
        for name, path in (("checkpoint", checkpoint), ("exported", exported)):
            code, out = translate(path, *args)
            assert code == 0
            found[name] = parsed(out)
        assert [(e.sentence, e.text) for e in found["exported"]] == \
            [(e.sentence, e.text) for e in found["checkpoint"]]
        assert [e.score for e in found["exported"]] == \
            pytest.approx([e.score for e in found["checkpoint"]], abs=1e-3)
