"""N vs 1, N vs N and 1 vs N: data checks, scores, and one end-to-end run per topology."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from seq2seq.data.labelled import LabelledCorpus, LabelVocab, encode_words, make_labelled_batch
from seq2seq.errors import DataError
from seq2seq.evaluation.labels import classification_scores, distinct_n, slot_scores
from seq2seq.models.encoder import RNNEncoder
from seq2seq.models.labelling import Pooling
from seq2seq.models.tag_decoding import bio_transitions, class_slots, class_tag_scores, joint_decode, viterbi
from seq2seq.pipeline import run_training
from seq2seq.sampling import sampler
from seq2seq.search import greedy_search
from seq2seq.tokenization import EOS
from seq2seq.topologies.labelling.inference import labelling_loss
from seq2seq.training.checkpoint import load_checkpoint
from tests.conftest import ROOT, compose_train, group_settings, require_shared
from tests.test_smoke import run_cli

ARTISTS = ["miles davis", "nina simone", "the beatles", "bob marley"]
CITIES = ["paris", "new york", "tokyo", "oslo"]


def write_intent_corpus(root: Path, sizes=(240, 24, 24), seed: int = 0) -> Path:
    """A SNIPS-layout corpus of two intents with slots, e.g. "play miles davis" / B-artist."""
    rng = random.Random(seed)
    for split, size in zip(("train", "valid", "test"), sizes):
        words, tags, labels = [], [], []
        for _ in range(size):
            if rng.random() < 0.5:
                artist = rng.choice(ARTISTS).split()
                w = ["play", "some", "music", "by"] + artist
                t = ["O"] * 4 + ["B-artist"] + ["I-artist"] * (len(artist) - 1)
                labels.append("PlayMusic")
            else:
                city = rng.choice(CITIES).split()
                w = ["what", "is", "the", "weather", "in"] + city
                t = ["O"] * 5 + ["B-city"] + ["I-city"] * (len(city) - 1)
                labels.append("GetWeather")
            words.append(" ".join(w))
            tags.append(" ".join(t))
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "seq.in").write_text("\n".join(words) + "\n")
        (folder / "seq.out").write_text("\n".join(tags) + "\n")
        (folder / "label").write_text("\n".join(labels) + "\n")
    return root


TINY = ["data=snips", "trainer=smoke", "trainer.max_steps=30", "trainer.validate_every=10",
        "trainer.lr=0.01", "data.vocab_size=60", "report.html=false",
        "model.encoder.embedding_dim=16", "model.encoder.hidden_size=16", "model.hidden_size=16"]


def overrides_for(tmp: Path, experiment: str) -> list[str]:
    corpus = write_intent_corpus(tmp / "corpus")
    extra = [] if experiment != "snips_generate" else [
        "model.decoder.embedding_dim=16", "model.decoder.hidden_size=24", "model.condition_dim=8"]
    tiny = [o for o in TINY if experiment != "snips_generate" or "model." not in o]
    return [f"experiment={experiment}", *tiny, *extra, f"data.root={corpus}",
            f"paths.cache_dir={tmp / 'cache'}"]


@pytest.fixture(scope="module")
def intent_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("intent")
    run_training(compose_train(overrides_for(tmp, "snips_intent") + [
        "model=classifier", "model.encoder.embedding_dim=16", "model.encoder.hidden_size=16",
        "topology.auxiliary_tags=false", "topology.augment_copies=0",
        "trainer.early_stopping_metric=accuracy"]), tmp / "run")
    return tmp / "run"


@pytest.mark.slow
def test_classify_end_to_end(intent_run):
    import json
    report = json.loads((intent_run / "report.json").read_text())
    assert report["accuracy"] >= 90 and report["macro_f1"] >= 90  # two easy intents
    assert (intent_run / "confusion.png").stat().st_size > 0
    assert "## Intent classification" in (intent_run / "report.md").read_text()
    # Every test prediction, a class per line, which evaluate scores to the same figure.
    assert report["hypothesis_files"] == {"label": "test.hyp.label"}
    gold = intent_run.parent / "corpus" / "test" / "label"
    predicted = (intent_run / "test.hyp.label").read_text().splitlines()
    assert len(predicted) == len(gold.read_text().splitlines()) == 24
    result = run_cli("evaluate.py", "--hyp", str(intent_run / "test.hyp.label"), "--ref", str(gold),
                     "--task", "classify", "--report-dir", str(intent_run.parent / "rescored"))
    assert result.returncode == 0, result.stderr.decode()
    assert f"accuracy = {report['accuracy']:.2f}" in result.stdout.decode()
    checkpoint = str(intent_run / "checkpoints" / "best.pt")
    result = run_cli("translate.py", "--checkpoint", checkpoint,
                     stdin=b"play some music by nina simone\n\n \nwhat is the weather in oslo\n")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().split("\n") == ["PlayMusic", "", "", "GetWeather", ""]


@pytest.mark.parametrize("output", [["model.crf=false", "model.byte_features=0", "model.word_dropout=0"],
                                    ["model.byte_features=8"],  # the experiment's CRF, word dropout
                                    ["model.byte_features=0", "model.lexicon_features=8"],
                                    ["model.byte_features=0", "model.word_embeddings=8"],
                                    ["model.byte_features=8", "trainer.precision=bf16"]],
                         ids=["softmax", "crf_bytes", "crf_lexicon", "crf_words", "crf_bytes_bf16"])
@pytest.mark.slow
def test_tag_end_to_end_scores_words_not_pieces(tmp_path, output):
    run_training(compose_train(overrides_for(tmp_path, "snips_slots") + ["trainer.max_steps=60"]
                               + output), tmp_path / "run")
    import json
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["slot_f1"] >= 80 and set(report["per_slot"]) == {"artist", "city"}
    assert "accuracy" in report  # the joint model also predicts the intent
    assert report["joint_decoding"] is True  # ... decoded together with the tags
    assert "decoded jointly" in (tmp_path / "run" / "report.md").read_text()
    data = tmp_path / "corpus" / "test"
    if "model.word_embeddings=8" in output:  # the word vocabulary travels with the checkpoint
        payload = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
        assert "play" in payload["word_vocab"] and "words.weight" in payload["model"]
    result = run_cli("evaluate.py", "--checkpoint", str(tmp_path / "run" / "checkpoints" / "best.pt"),
                     "--src", str(data / "seq.in"), "--ref", str(data / "seq.out"),
                     "--labels", str(data / "label"), "--report-dir", str(tmp_path / "eval"))
    assert result.returncode == 0, result.stderr.decode()
    assert "slot_f1 = " in result.stdout.decode()
    # The run's and the evaluation's predictions, a tag sequence per line, rescore the same.
    assert report["hypothesis_files"] == {"label": "test.hyp.label", "tags": "test.hyp.tags"}
    assert (tmp_path / "eval" / "hypotheses.tags").read_text() == \
        (tmp_path / "run" / "test.hyp.tags").read_text()
    result = run_cli("evaluate.py", "--hyp", str(tmp_path / "run" / "test.hyp.tags"),
                     "--ref", str(data / "seq.out"), "--task", "tag",
                     "--report-dir", str(tmp_path / "rescored"))
    assert result.returncode == 0, result.stderr.decode()
    assert f"slot_f1 = {report['slot_f1']:.2f}" in result.stdout.decode()


@pytest.mark.slow
def test_generate_end_to_end_with_a_judge(tmp_path, intent_run):
    judge = intent_run / "checkpoints" / "best.pt"
    cfg = compose_train(overrides_for(tmp_path, "snips_generate") + [
        f"topology.judge_checkpoint={judge}", "trainer.max_steps=40"])
    report = run_training(cfg, tmp_path / "run")
    assert report["perplexity"] > 1 and 0 <= report["distinct_2"] <= 100
    assert report["intent_fidelity"] is not None and report["intent_fidelity"] >= 50
    result = run_cli("translate.py", "--checkpoint", str(tmp_path / "run" / "checkpoints" / "best.pt"),
                     "--temperature", "0", stdin=b"PlayMusic\nNoSuchIntent\n")
    assert result.returncode == 0 and "unknown class 'NoSuchIntent'" in result.stderr.decode()
    lines = result.stdout.decode().split("\n")
    assert len(lines) == 3 and lines[0] and lines[1] == ""


def test_tags_must_match_words_and_name_the_line(tmp_path):
    root = write_intent_corpus(tmp_path, sizes=(5, 5, 5))
    tags = (root / "train" / "seq.out").read_text().splitlines()
    tags[2] += " O"
    (root / "train" / "seq.out").write_text("\n".join(tags) + "\n")
    with pytest.raises(DataError, match=r"train/seq\.out:3: \d+ tags for the \d+ words"):
        LabelledCorpus(root).read("train")
    (root / "valid" / "label").write_text("PlayMusic\n")
    with pytest.raises(DataError, match=r"valid/seq\.in has 5 lines, .*valid/label has 1"):
        LabelledCorpus(root).read("valid", tags=False)


def test_word_starts_point_at_first_pieces(tmp_path):
    from seq2seq.tokenization import train_sentencepiece
    root = write_intent_corpus(tmp_path)
    tokenizer = train_sentencepiece([root / "train" / "seq.in"],
                                    group_settings("tokenizer", "unigram", vocab_size=40),
                                    tmp_path / "spm")
    words = [["play", "nina", "simone"], ["oslo"]]
    encoded = encode_words(tokenizer, words)
    for utterance, pieces in zip(words, encoded):
        assert len(pieces.starts) == len(utterance)
        bounds = pieces.starts + [len(pieces.ids)]
        rebuilt = [tokenizer.decode([pieces.ids[a:b]])[0] for a, b in zip(bounds, bounds[1:])]
        assert rebuilt == utterance
    batch = make_labelled_batch(encoded, [[0, 1, 2], [1]], [0, 1], [0, 1])
    assert batch.word_mask.tolist() == [[True, True, True], [True, False, False]]
    last_pieces = [[b - 1 for b in p.starts[1:] + [len(p.ids)]] for p in encoded]
    assert batch.word_ends[0].tolist() == last_pieces[0] and batch.word_ends[1, 0] == last_pieces[1][0]
    assert batch.tags[1, 1:].tolist() == [-100, -100] and batch.num_tgt_tokens == 4
    assert int(batch.src[1, batch.src_len[1] - 1]) == EOS


def test_bio_decoding_never_starts_a_slot_inside():
    names = ["B-x", "I-x", "I-y", "O"]
    start, moves = bio_transitions(names)
    # Word by word the most likely tags are I-x, I-x, I-y: not a valid BIO sequence.
    log_probs = torch.log(torch.tensor([[[0.3, 0.4, 0.0, 0.3], [0.1, 0.6, 0.0, 0.3],
                                         [0.0, 0.1, 0.5, 0.4]]]) + 1e-9)
    assert viterbi(log_probs, torch.ones(1, 3, dtype=torch.bool), start, moves) == [[0, 1, 3]]
    padded = torch.tensor([[True, True, False]])
    assert viterbi(log_probs, padded, start, moves) == [[0, 1]]


def test_class_slots_and_the_tags_they_allow():
    slots = class_slots(["Play", "Weather", "Play"],
                        [["O", "B-artist", "I-artist"], ["B-city"], ["B-song", "O"]])
    assert slots == {"Play": ["artist", "song"], "Weather": ["city"]}
    allowed = class_tag_scores(slots, ["Play", "Weather"], ["O", "B-artist", "I-artist", "B-city"])
    assert torch.isinf(allowed).tolist() == [[False, False, False, True],
                                             [False, True, True, False]]


def test_joint_decoding_keeps_class_and_slots_consistent():
    names = ["O", "B-artist", "B-city"]
    start, moves = bio_transitions(names)
    allowed = class_tag_scores({"Play": ["artist"], "Weather": ["city"]}, ["Play", "Weather"], names)
    mask = torch.ones(2, 1, dtype=torch.bool)
    # Row 0: the class leans to Weather a little, the word is clearly an artist -> Play, B-artist.
    # Row 1: the class is clearly Play, the word leans to city a little -> Play, B-artist.
    labels = torch.log(torch.tensor([[0.45, 0.55], [0.95, 0.05]]))
    tags = torch.log(torch.tensor([[[0.05, 0.9, 0.05]], [[0.1, 0.4, 0.5]]]))
    assert joint_decode(labels, tags, mask, start, moves, None, allowed) == ([0, 0], [[1], [1]])
    # With every tag allowed for every class, it is independent decoding.
    free = torch.zeros_like(allowed)
    assert joint_decode(labels, tags, mask, start, moves, None, free) == ([1, 0], [[1], [2]])


def test_scores_on_hand_made_examples():
    scores = classification_scores(["a", "a", "b", "c"], ["a", "b", "b", "c"], ["a", "b", "c"])
    assert scores["accuracy"] == 75.0
    assert scores["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert scores["macro_f1"] == round((100 * 2 / 3 + 100 * 2 / 3 + 100) / 3, 2)
    gold = [["B-x", "I-x", "O", "B-y"]]
    assert slot_scores(gold, gold)["slot_f1"] == 100.0
    half = slot_scores(gold, [["B-x", "O", "O", "B-y"]])  # x's span is cut short
    assert half["slot_f1"] == 50.0 and half["per_slot"]["y"]["f1"] == 100.0
    assert distinct_n(["a b a b", "a b"], 2) == round(100 * 2 / 4, 2)
    with pytest.raises(DataError, match="does not occur in the training data"):
        LabelVocab(["x"]).encode(["y"], "file:1")


@pytest.mark.parametrize("kind", ["final", "attention", "mean", "max"])
def test_pooling_ignores_padding(kind):
    torch.manual_seed(0)
    encoder = RNNEncoder(20, cell="gru", embedding_dim=6, hidden_size=5, num_layers=1,
                         bidirectional=True, dropout=0.0, residual=False, implementation="torch",
                         word_dropout=0.0).eval()
    pool = Pooling(kind, encoder.output_size).eval()
    batch = torch.tensor([[4, 5, 6, 3], [7, 3, 0, 0]])
    together = pool(encoder(batch, torch.tensor([4, 2])))
    alone = pool(encoder(batch[1:, :2], torch.tensor([2])))
    torch.testing.assert_close(together[1], alone[0], atol=1e-6, rtol=0)


def test_top_1_sampling_is_greedy():
    class Fixed:
        def step(self, prev, state):
            scores = torch.log_softmax(torch.tensor([[0.0, 0.0, 0.0, 1.0, 3.0, 2.0]]), -1)
            return scores.expand(len(prev), -1), state, None

    class State:
        def index_select(self, order):
            return self

    limits = torch.tensor([3, 3])
    greedy = greedy_search(Fixed(), State(), 2, limits)
    sampled = greedy_search(Fixed(), State(), 2, limits, choose=sampler(1.0, top_k=1))
    assert [h.tokens for h in sampled] == [h.tokens for h in greedy] == [[4, 4, 4]] * 2


def test_real_snips_reads_with_aligned_tags():
    root = require_shared("snips")
    split = LabelledCorpus(root).read("valid")
    assert len(split) == 700 and len(set(split.labels)) == 7
    assert all(len(w) == len(t) for w, t in zip(split.words, split.tags))


def test_experiment_configs_name_the_topologies():
    for experiment, topology in [("snips_intent", "Classify"), ("snips_slots", "Tag"),
                                 ("snips_generate", "Generate")]:
        cfg = compose_train([f"experiment={experiment}"])
        assert cfg.topology._target_.endswith(topology) and cfg.data.root.endswith("snips")
    assert (ROOT / "conf" / "topology" / "translate.yaml").is_file()


def test_span_word_state_reads_the_whole_word_in_both_directions():
    from seq2seq.models.labelling import SequenceTagger
    src, lengths = torch.tensor([[5, 6, 7, 3]]), torch.tensor([4])
    changed = torch.tensor([[5, 9, 7, 3]])  # the second piece of word 1 (pieces 0-1) differs
    starts, ends = torch.tensor([[0, 2]]), torch.tensor([[1, 2]])

    def forward_half_of_word_1(word_state: str, tokens: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(0)
        tagger = SequenceTagger(20, 3, lambda vocab_size, **kw: RNNEncoder(
            vocab_size, cell="gru", embedding_dim=6, hidden_size=4, num_layers=1,
            bidirectional=True, dropout=0.0, residual=False, implementation="torch",
            word_dropout=0.0, **kw),
            num_labels=0, num_lexicon=0, num_words=0, joint=False, pooling="attention",
            hidden_size=256, dropout=0.3, word_state=word_state, byte_features=0, crf=False,
            word_dropout=0.0, lexicon_features=0, word_embeddings=0).eval()
        states = tagger.encoder(tokens, lengths).states
        return tagger.word_states(states, starts, ends)[0, 0, :4]

    # Reading forward, the first piece alone has not seen the word's second piece; the span has.
    torch.testing.assert_close(forward_half_of_word_1("first", src),
                               forward_half_of_word_1("first", changed))
    assert not torch.allclose(forward_half_of_word_1("span", src),
                              forward_half_of_word_1("span", changed))


@pytest.mark.slow
def test_classify_with_auxiliary_slot_tags_outputs_classes_only(tmp_path):
    # the experiment's joint tagger (CRF, word dropout), smaller byte features, as the tag test
    cfg = compose_train(overrides_for(tmp_path, "snips_intent") + ["trainer.max_steps=100",
                                                                  "model.byte_features=8"])
    assert cfg.topology.auxiliary_tags and cfg.model._target_.endswith("SequenceTagger")
    report = run_training(cfg, tmp_path / "run")
    assert report["accuracy"] >= 90 and "slot_f1" in report  # the tags were learned too
    result = run_cli("translate.py", "--checkpoint", str(tmp_path / "run" / "checkpoints" / "best.pt"),
                     stdin=b"play some music by nina simone\n")
    assert result.returncode == 0 and result.stdout.decode() == "PlayMusic\n"


def test_class_loss_weight_scales_the_class_term_only():
    from seq2seq.data.labelled import WordPieces
    from seq2seq.models.crf import CRF
    pieces = [WordPieces([5, 6, 7], [0, 2], [b"ab", b"c"]), WordPieces([8], [0], [b"d"])]
    batch = make_labelled_batch(pieces, [[0, 1], [2]], [1, 0], [0, 1])
    torch.manual_seed(0)
    label_logits, tag_logits, crf = torch.randn(2, 3), torch.randn(2, 2, 3), CRF(3)
    for tagger in (None, crf):  # softmax tags, then CRF tags
        tags_only = labelling_loss(None, tag_logits, batch, 0.0, tagger)
        both = labelling_loss(label_logits, tag_logits, batch, 0.0, tagger)
        tripled = labelling_loss(label_logits, tag_logits, batch, 0.0, tagger, class_weight=3.0)
        assert torch.allclose(tripled - tags_only, 3 * (both - tags_only))
        assert (both - tags_only).item() > 0


def test_class_loss_weight_must_be_positive(tmp_path):
    from seq2seq.errors import ConfigError
    cfg = compose_train(overrides_for(tmp_path, "snips_intent") + ["topology.class_loss_weight=0"])
    with pytest.raises(ConfigError, match="topology.class_loss_weight=0: expected a number > 0"):
        run_training(cfg, tmp_path / "run")


def test_auxiliary_tags_need_a_joint_tagger(tmp_path):
    from seq2seq.errors import ConfigError
    cfg = compose_train(overrides_for(tmp_path, "snips_intent") + ["model.joint=false"])
    with pytest.raises(ConfigError, match="auxiliary_tags=true needs model=tagger"):
        run_training(cfg, tmp_path / "run")


@pytest.mark.parametrize("experiment", ["snips_intent", "snips_slots", "snips_generate"])
def test_subword_sampling_and_recasing_are_refused_outside_translation(tmp_path, experiment):
    from seq2seq.errors import ConfigError
    cfg = compose_train(overrides_for(tmp_path, experiment) + ["tokenizer.sampling_alpha=0.2"])
    with pytest.raises(ConfigError, match="sampling_alpha=0.2: subword sampling is for "
                                          "topology=translate"):
        run_training(cfg, tmp_path / "run")
    cfg = compose_train(overrides_for(tmp_path, experiment) + [
        "tokenizer.normalization=nmt_nfkc_cf", "tokenizer.recase=true"])
    with pytest.raises(ConfigError, match="tokenizer.recase=true .* is for topology=translate"):
        run_training(cfg, tmp_path / "run")


def test_the_generator_refuses_a_restricted_output_layer(tmp_path):
    from seq2seq.errors import ConfigError
    cfg = compose_train(overrides_for(tmp_path, "snips_generate") + [
        "model.decoder.output_vocabulary=training_targets"])
    with pytest.raises(ConfigError, match="output_vocabulary.*set model.decoder.output_vocabulary=all"):
        run_training(cfg, tmp_path / "run")


def test_evaluate_scores_label_files_without_a_checkpoint(tmp_path, capsys):
    from seq2seq.cli.evaluate import main as evaluate_main
    gold, hyp = tmp_path / "gold.txt", tmp_path / "hyp.txt"
    gold.write_text("PlayMusic\nGetWeather\nPlayMusic\nGetWeather\n")
    hyp.write_text("PlayMusic\nGetWeather\nGetWeather\nGetWeather\n")
    assert evaluate_main(["--hyp", str(hyp), "--ref", str(gold), "--task", "classify",
                          "--report-dir", str(tmp_path / "cls")]) == 0
    assert "accuracy = 75.00" in capsys.readouterr().out
    assert (tmp_path / "cls" / "confusion.png").is_file()
    gold.write_text("O B-artist I-artist\nB-city\n")
    hyp.write_text("O B-artist O\nB-city\n")
    assert evaluate_main(["--hyp", str(hyp), "--ref", str(gold), "--task", "tag",
                          "--report-dir", str(tmp_path / "tag")]) == 0
    assert "slot_f1 = 50.00" in capsys.readouterr().out
    hyp.write_text("O B-artist\nB-city\n")
    assert evaluate_main(["--hyp", str(hyp), "--ref", str(gold), "--task", "tag"]) == 2
    assert "hyp.txt:1: 2 tags for the 3 words" in capsys.readouterr().err


def test_predict_gives_one_tag_row_per_utterance_without_a_class_head(tmp_path):
    # A tagger without the joint class head (and so without joint decoding) tags each utterance once.
    from seq2seq.data.labelled import LabelledSplit
    from seq2seq.predict import load_predictor
    from seq2seq.topologies.labelling.data import evaluation_batches
    from seq2seq.topologies.labelling.inference import predict
    run_training(compose_train(overrides_for(tmp_path, "snips_slots") + [
        "trainer.max_steps=4", "trainer.validate_every=2", "model.joint=false",
        "model.byte_features=0"]), tmp_path / "run")
    labeller = load_predictor(tmp_path / "run" / "checkpoints" / "best.pt")
    words = [u.split() for u in ["play some music by nina simone", "what is the weather in oslo"]]
    batches = evaluation_batches(LabelledSplit(words, None, None, {}), labeller.tokenizer,
                                 labeller.tables)
    predictions = predict(labeller.model, batches, labeller.tag_names, labeller.allowed)
    assert predictions.labels is None and [len(t) for t in predictions.tags] == [6, 6]
