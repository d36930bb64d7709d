"""Slot-value substitution (``topology.augment_copies``): new utterances keep their class and
slot types, values come from the right pools, and a run trains on the copies."""

import json

import pytest

from seq2seq.data.augment import cross_fitted_substitutions, slot_values, substitute_slots, substitution_pools
from seq2seq.data.lexicon import bio_spans, cross_fitted_features, fold_assignment
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


@pytest.mark.slow
def test_a_run_trains_on_the_copies(tmp_path):
    run_training(compose_train(overrides_for(tmp_path, "snips_intent") + [
        "trainer.max_steps=4", "trainer.validate_every=2", "topology.augment_copies=1",
        "topology.substitution_groups=[[artist,city]]"]), tmp_path / "run")
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["substituted_utterances"] == report["train_utterances"] == 240
    assert "accuracy" in report


def test_copies_need_tags(tmp_path):
    with pytest.raises(ConfigError, match="augment_copies=1 needs the slot tags.*augment_copies=0"):
        run_training(compose_train(overrides_for(tmp_path, "snips_intent") + [
            "topology.auxiliary_tags=false", "model=classifier", "topology.augment_copies=1"]),
            tmp_path / "run")


def test_cross_fitted_copies_draw_values_from_their_own_fold():
    # Ten utterances of one carrier phrase, each with its own genre: a copy can only take a
    # value of its own fold, and its lexicon features are those of the other folds' lexicon.
    genres = [f"g{i}" for i in range(10)]
    words = [["play", g] for g in genres]
    tags = [["O", "B-genre"]] * 10
    labels = [f"class{i}" for i in range(10)]
    fold_of = fold_assignment(10, 3, seed=4)
    new_words, new_tags, new_labels, features = cross_fitted_substitutions(
        words, tags, labels, 4, [], ["genre"], folds=3, seed=4)
    assert len(new_words) == len(new_labels) == len(features) == 40
    assert all(t == ["O", "B-genre"] for t in new_tags)
    fold_of_value = {g: f for g, f in zip(genres, fold_of)}
    # fold after fold, each utterance's copies in order, with its class
    sources = [i for fold in range(3) for i in range(10) if fold_of[i] == fold for _ in range(4)]
    assert new_labels == [labels[i] for i in sources]
    for source, copy, feats in zip(sources, new_words, features):
        assert fold_of_value[copy[1]] == fold_of[source]
        # the value is in its own fold only, so never in the other folds' lexicon
        assert feats == [[], []]
    # Each genre twice: a copy's value matches the lexicon exactly when the value's other
    # utterance is in another fold, as for the real utterances (cross_fitted_features).
    twice = words + words
    folds = fold_assignment(20, 3, seed=4)
    copies, _, no_labels, copy_features = cross_fitted_substitutions(twice, tags * 2, None, 1, [],
                                                                     ["genre"], 3, seed=4)
    assert no_labels is None
    sources = [i for fold in range(3) for i in range(20) if folds[i] == fold]
    for source, copy, feats in zip(sources, copies, copy_features):
        elsewhere = any(folds[j] != folds[source] for j in range(20) if twice[j] == copy)
        assert feats == [[], [1] if elsewhere else []]
    real = cross_fitted_features(twice, tags * 2, ["genre"], 3, 4)
    for i, feats in enumerate(real):
        elsewhere = folds[i] != folds[(i + 10) % 20]
        assert feats == [[], [1] if elsewhere else []]
    with pytest.raises(ConfigError, match="'track' is not tagged"):
        cross_fitted_substitutions(words, tags, labels, 1, [["genre", "track"]], ["genre"], 3)


@pytest.mark.slow
def test_copies_with_a_slot_lexicon_train(tmp_path):
    run_training(compose_train(overrides_for(tmp_path, "snips_slots") + [
        "trainer.max_steps=4", "trainer.validate_every=2", "topology.augment_copies=1"]),
        tmp_path / "run")
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["substituted_utterances"] == report["train_utterances"] == 240
    assert "slot_f1" in report
