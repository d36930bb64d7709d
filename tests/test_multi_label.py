"""Multi-label classification (``model.multi_label=true``): several ``#``-joined labels a line,
one sigmoid a label, binary cross-entropy, threshold decoding, exact-match and F1 scores."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from seq2seq.cli.evaluate import main as evaluate_main
from seq2seq.data.labelled import WordPieces, make_labelled_batch, split_labels
from seq2seq.data.word_tables import WordTables
from seq2seq.errors import ConfigError, DataError
from seq2seq.evaluation.labels import multi_label_scores
from seq2seq.pipeline import run_training
from seq2seq.topologies.labelling.data import encode_labels, label_vocabulary
from seq2seq.topologies.labelling.inference import labelling_loss, threshold_decode
from seq2seq.topologies.labelling.predictor import Labeller, build_labelling_model
from seq2seq.training.checkpoint import load_checkpoint
from tests.conftest import compose_train
from tests.test_topologies import TINY


def tiny_batch(label_sets: list[list[int]], num_labels: int):
    pieces = [WordPieces([5, 6], [0, 1], [b"a", b"b"]) for _ in label_sets]
    return make_labelled_batch(pieces, None, None, range(len(label_sets)), label_sets, num_labels)


def test_loss_is_torch_binary_cross_entropy_summed():
    logits = torch.tensor([[2.0, -1.0, 0.5], [-0.3, 1.5, -2.0]])
    batch = tiny_batch([[0, 2], [1]], 3)
    assert batch.label_sets.tolist() == [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    assert batch.num_tgt_tokens == 2  # one label set per utterance
    expected = F.binary_cross_entropy_with_logits(logits, batch.label_sets, reduction="sum")
    torch.testing.assert_close(labelling_loss(logits, None, batch, 0.0), expected)
    torch.testing.assert_close(labelling_loss(logits, None, batch, 0.0, class_weight=2.0),
                               2 * expected)
    # Smoothing moves each target towards 1/2: 0.1 makes them 0.95 and 0.05.
    smoothed = F.binary_cross_entropy_with_logits(logits, batch.label_sets * 0.9 + 0.05,
                                                  reduction="sum")
    torch.testing.assert_close(labelling_loss(logits, None, batch, 0.1), smoothed)


def test_threshold_decoding_keeps_every_label_above_it_and_at_least_the_best():
    probabilities = torch.tensor([[0.9, 0.2, 0.7], [0.1, 0.4, 0.3], [0.6, 0.55, 0.2]])
    logits = torch.logit(probabilities)
    assert threshold_decode(logits, 0.5) == [[0, 2], [1], [0, 1]]
    assert threshold_decode(logits, 0.8) == [[0], [1], [0]]
    assert threshold_decode(logits, 0.0) == [[0, 1, 2]] * 3


def test_labels_are_split_on_hash_and_the_vocabulary_holds_single_labels(tmp_path):
    lines = ["atis_flight#atis_airfare", "atis_flight", "atis_airfare#atis_flight#atis_flight"]
    assert split_labels(lines) == [["atis_flight", "atis_airfare"], ["atis_flight"],
                                   ["atis_airfare", "atis_flight"]]
    vocab = label_vocabulary(lines, tmp_path / "label", multi_label=True)
    assert vocab.names == ["atis_airfare", "atis_flight"]
    assert encode_labels(vocab, lines, None, True).sets == [[1, 0], [1], [0, 1]]
    assert encode_labels(vocab, ["atis_flight#atis_meal"], None, True, known_only=True).sets == [[1]]
    with pytest.raises(DataError, match="does not occur in the training data"):
        encode_labels(vocab, ["atis_meal"], tmp_path / "label", True)
    with pytest.raises(DataError, match=r"label:2: expected labels joined by '#'"):
        split_labels(["a", "a##b"], tmp_path / "label")
    # Single-label: a joined line stays one class, as ATIS's single-intent setup counts it.
    single = label_vocabulary(lines, None, multi_label=False)
    assert len(single) == 3 and encode_labels(single, lines[:1], None, False).sets is None


def test_exact_match_micro_and_macro_f1():
    gold = [["a", "b"], ["a"], ["c"], ["b"]]
    predicted = [["a", "b"], ["a", "c"], ["b"], ["b"]]
    scores = multi_label_scores(gold, predicted, ["a", "b", "c"])
    assert scores["accuracy"] == 50.0  # the first and the last sets are right
    # true positives 4 (a, b, a, b), predicted 6, gold 5: P 4/6, R 4/5
    assert scores["micro_f1"] == round(100 * 2 * (4 / 6) * (4 / 5) / (4 / 6 + 4 / 5), 2)
    # a: P 1 R 1 F 1; b: P 2/3 R 1 F 0.8; c: P 0 R 0 F 0 -> mean 60
    assert scores["macro_f1"] == 60.0 and scores["per_class"]["b"]["support"] == 2
    assert "confusion_matrix" not in scores and scores["multi_label"]


def test_threshold_is_checked():
    with pytest.raises(ConfigError, match="model.threshold"):
        compose_and_build(["model.multi_label=true", "model.threshold=1.5"])


def compose_and_build(overrides: list[str]):
    cfg = compose_train(["topology=classify", "data=snips", "model=classifier", *overrides])
    return build_labelling_model(cfg.model, 11, 3, 0, WordTables())


def test_single_label_configs_stay_as_they_were():
    model = compose_and_build([])
    assert model.multi_label is False and model.threshold == 0.5


MUSIC, WEATHER = "PlayMusic", "GetWeather"


def write_multi_label_corpus(root: Path, sizes=(300, 30, 30), seed: int = 0) -> Path:
    """Utterances that ask for music, for the weather, or both (``PlayMusic#GetWeather``)."""
    rng = random.Random(seed)
    music = ["play some jazz", "play miles davis", "put on some music", "play the beatles"]
    weather = ["what is the weather in paris", "will it rain in oslo", "is it cold in tokyo"]
    for split, size in zip(("train", "valid", "test"), sizes):
        words, labels = [], []
        for _ in range(size):
            kind = rng.randrange(3)
            if kind == 0:
                words.append(rng.choice(music))
                labels.append(MUSIC)
            elif kind == 1:
                words.append(rng.choice(weather))
                labels.append(WEATHER)
            else:  # gold order unlike the vocabulary's: predictions come out sorted
                words.append(f"{rng.choice(music)} and {rng.choice(weather)}")
                labels.append(f"{MUSIC}#{WEATHER}")
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "seq.in").write_text("\n".join(words) + "\n")
        (folder / "label").write_text("\n".join(labels) + "\n")
    return root


@pytest.mark.slow
def test_multi_label_classify_end_to_end(tmp_path):
    corpus = write_multi_label_corpus(tmp_path / "corpus")
    run = tmp_path / "run"
    run_training(compose_train([
        "topology=classify", "model=classifier", *TINY, "trainer.max_steps=60",
        "trainer.max_epochs=4", "trainer.validate_every=20", "model.multi_label=true", f"data.root={corpus}",
        f"paths.cache_dir={tmp_path / 'cache'}", "trainer.early_stopping_metric=micro_f1"]), run)
    report = json.loads((run / "report.json").read_text())
    assert report["multi_label"] and report["threshold"] == 0.5
    assert report["classes"] == [WEATHER, MUSIC] and "confusion_matrix" not in report
    assert report["micro_f1"] >= 90 and report["accuracy"] >= 80  # an easy task
    assert "## Multi-label classification" in (run / "report.md").read_text()
    predicted = (run / "test.hyp.label").read_text().splitlines()
    assert len(predicted) == 30 and set(predicted) <= {WEATHER, MUSIC, f"{WEATHER}#{MUSIC}"}
    labeller = Labeller.from_checkpoint(load_checkpoint(run / "checkpoints" / "best.pt"), False)
    assert labeller.multi_label
    out = labeller.predict(["play some jazz and will it rain in oslo", "", "play some jazz"])
    # Both labels, in the vocabulary's order (the corpus writes them the other way round).
    assert out == [f"{WEATHER}#{MUSIC}", "", MUSIC]
    # The evaluate tool scores a multi-label checkpoint on its own terms.
    assert evaluate_main(["--checkpoint", str(run / "checkpoints" / "best.pt"),
                          "--src", str(corpus / "test" / "seq.in"),
                          "--ref", str(corpus / "test" / "label"),
                          "--report-dir", str(tmp_path / "evaluated")]) == 0
    evaluated = json.loads((tmp_path / "evaluated" / "report.json").read_text())
    assert evaluated["micro_f1"] == report["micro_f1"] and evaluated["multi_label"]
