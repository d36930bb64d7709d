"""The casing model that puts capitals back into a case-folding model's output."""

import io

import pytest

from seq2seq.cli.recase import main as recase_main
from seq2seq.recase import Recaser

TRAIN = [
    "Ein Mann spielt Gitarre.",
    "Eine Frau und ein Mann essen auf der Straße.",
    "Zwei Kinder sehen einem Mann beim Essen zu.",
    "Das Essen steht auf dem Tisch.",
    "Die Kinder essen ein Eis.",
    "Sie spielen Fußball, und sie lachen.",
    "Ein Hund rennt über eine Wiese in New York.",
]


@pytest.fixture(scope="module")
def recaser() -> Recaser:
    return Recaser.fit(TRAIN)


def test_each_word_takes_its_written_form_in_context(recaser):
    assert recaser.recase("ein mann spielt gitarre.") == "Ein Mann spielt Gitarre."
    # "essen" is a verb after "kinder" and a noun after "beim" / "das"
    assert recaser.recase("die kinder essen beim essen.") == "Die Kinder essen beim Essen."
    assert recaser.recase("das essen ist in new york.") == "Das Essen ist in New York."


def test_unseen_words_keep_their_case_unless_their_ending_is_a_known_noun(recaser):
    # "straßenhund" ends with "hund", seen as "Hund"; "rennen" and "blau" were never seen
    assert recaser.recase("ein straßenhund will rennen, blau!") == "Ein Straßenhund will rennen, blau!"
    assert recaser.recase("42 kinder") == "42 Kinder"  # a digit is the first word: no capital to add


def test_spacing_and_punctuation_stay_exactly_and_only_case_changes(recaser):
    for line in ["  zwei   kinder,\tein hund ...  ", "", "!!", "ein „mann“ - (zwei) kinder?"]:
        out = recaser.recase(line)
        assert out.lower() == line.lower() and len(out) == len(line)
    assert recaser.recase("  zwei   kinder,\tein hund ...  ") == "  Zwei   Kinder,\tein Hund ...  "


def test_first_word_capital_is_learned_from_the_training_lines():
    lowercase_initial = Recaser.fit(["wir haben drei Hunde", "ich sehe zwei Katzen"])
    assert lowercase_initial.recase("wir sehen drei katzen") == "wir sehen drei Katzen"
    assert Recaser.fit(TRAIN).first_capital


def test_the_table_keeps_only_what_the_shorter_context_gets_wrong(recaser):
    assert "mann" in recaser.forms and "spielt" not in recaser.forms  # lowercase: the default
    assert recaser.forms.get("beim essen") == "Essen" and "kinder essen" not in recaser.forms


def test_state_round_trip_gives_the_same_output(recaser):
    restored = Recaser.from_state_dict(recaser.state_dict())
    line = "zwei kinder essen beim essen in new york auf der straße."
    assert restored.recase(line) == recaser.recase(line)


def test_cli_recases_a_stream_line_for_line(tmp_path, capsys):
    train = tmp_path / "train.de"
    train.write_text("\n".join(TRAIN) + "\n", encoding="utf-8")
    out = io.StringIO()
    assert recase_main(["--train", str(train)], stdin=io.BytesIO(b"ein mann\n\ndas essen.\n"),
                       stdout=out) == 0
    assert out.getvalue() == "Ein Mann\n\nDas Essen.\n"
    assert recase_main(["--train", str(tmp_path / "missing.de")], stdin=io.BytesIO(b"x\n"),
                       stdout=io.StringIO()) == 2
    assert "missing.de" in capsys.readouterr().err
