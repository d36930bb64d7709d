"""Slot-value substitution (``topology.augment_copies``): new utterances keep their class and
slot types, values come from the right pools, and a run trains on the copies."""

import json

import pytest

from seq2seq.data.augment import slot_values, substitute_slots, substitution_pools
from seq2seq.data.lexicon import bio_spans
from seq2seq.errors import ConfigError
from seq2seq.pipeline import run_training
from tests.conftest import compose_train
from tests.test_topologies import overrides_for

WORDS = [["play", "kind", "of", "blue"], ["watch", "heat"], ["hello"], ["play", "jazz", "now"]]
TAGS = [["O", "B-album", "I-album", "I-album"], ["O", "B-movie"], ["O"], ["O", "B-genre", "O"]]
LABELS = ["PlayMusic", "Watch", "Greet", "PlayMusic"]


def test_values_are_each_types_distinct_spans():
    assert slot_values(WORDS, TAGS) == {"album": [("kind", "of", "blue")], "movie": [("heat",)],
                                        "genre": [("jazz",)]}


def test_copies_keep_class_carrier_words_and_slot_types():
    words, tags, labels = substitute_slots(WORDS + [["play", "rock"]], TAGS + [["O", "B-genre"]],
                                           LABELS + ["PlayMusic"], copies=3, seed=1)
    assert len(words) == 3 * 4  # "hello" has no slot: no copies of it
    assert labels == ["PlayMusic"] * 3 + ["Watch"] * 3 + ["PlayMusic"] * 6
    for w, t in zip(words, tags):
        assert len(w) == len(t)
    genre_values = {tuple(w[1:2]) for w, t in zip(words, tags) if t[1] == "B-genre"}
    assert genre_values == {("jazz",), ("rock",)}  # drawn from the type's pool
    assert all(w[-1] == "now" for w, t in zip(words, tags) if len(w) == 3)  # carrier kept
    again = substitute_slots(WORDS, TAGS, LABELS, copies=3, seed=1)
    assert again == substitute_slots(WORDS, TAGS, LABELS, copies=3, seed=1)  # seeded


def test_a_group_lets_values_cross_types_and_tags_follow_the_new_length():
    words, tags, _ = substitute_slots(WORDS, TAGS, None, copies=20, groups=[["album", "movie"]],
                                      seed=0)
    watched = {tuple(w[1:]) for w in words if w[0] == "watch"}
    assert watched == {("heat",), ("kind", "of", "blue")}
    for w, t in zip(words, tags):
        if w[0] == "watch":
            assert [name for name, _, _ in bio_spans(t)] == ["movie"]
            assert t == ["O", "B-movie"] + ["I-movie"] * (len(w) - 2)


def test_bad_groups_and_copies_name_the_option():
    values = slot_values(WORDS, TAGS)
    with pytest.raises(ConfigError, match="substitution_groups.*'track'.*album, genre, movie"):
        substitution_pools(values, [["album", "track"]])
    with pytest.raises(ConfigError, match="'album' is in two groups"):
        substitution_pools(values, [["album", "movie"], ["album", "genre"]])
    with pytest.raises(ConfigError, match="augment_copies=-1"):
        substitute_slots(WORDS, TAGS, LABELS, copies=-1)


def test_a_run_trains_on_the_copies(tmp_path):
    run_training(compose_train(overrides_for(tmp_path, "snips_intent") + [
        "trainer.max_steps=4", "trainer.validate_every=2", "topology.augment_copies=1",
        "topology.substitution_groups=[[artist,city]]"]), tmp_path / "run")
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["substituted_utterances"] == report["train_utterances"] == 240
    assert "accuracy" in report


def test_copies_need_tags_and_no_lexicon(tmp_path):
    with pytest.raises(ConfigError, match="augment_copies needs the slot tags"):
        run_training(compose_train(overrides_for(tmp_path, "snips_intent") + [
            "topology.auxiliary_tags=false", "model=classifier", "topology.augment_copies=1"]),
            tmp_path / "run")
    with pytest.raises(ConfigError, match="lexicon_features"):
        run_training(compose_train(overrides_for(tmp_path, "snips_slots") + [
            "topology.augment_copies=1"]), tmp_path / "run2")
