"""Pretrained word vectors (seq2seq/models/pretrained.py): reading, matching pieces, freezing."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import pytest
import torch
from torch import nn

from seq2seq.errors import ConfigError, DataError
from seq2seq.models.decoder import RNNDecoder
from seq2seq.models.encoder import RNNEncoder
from seq2seq.models.encoder_decoder import EncoderDecoder
from seq2seq.models.pretrained import load_pretrained_embeddings, piece_words, read_vectors
from tests.conftest import compose_train

E = 4
# A SentencePiece-like vocabulary: specials, whole words (▁...), a word continuation, a bare ▁.
PIECES = ["<pad>", "<unk>", "<s>", "</s>", "▁the", "▁Cat", "▁sat", "at", "▁", "▁zebra", "▁Mat"]


class Pieces:
    """The tokenizer's side that the loader reads: its pieces by id."""

    def __init__(self, pieces: Sequence[str]) -> None:
        self.pieces = list(pieces)

    @property
    def vocab_size(self) -> int:
        return len(self.pieces)

    def id_to_piece(self, ids: Sequence[int]) -> list[str]:
        return [self.pieces[i] for i in ids]


VECTORS = {"the": [1, 2, 3, 4], "cat": [5, 6, 7, 8], "Cat": [9, 10, 11, 12],
           "sat": [0.5, -0.5, 1e-3, 2e2], "mat": [-1, -2, -3, -4], "at": [7, 7, 7, 7]}


def write_vectors(path: Path, header: bool = True, vectors: dict = VECTORS) -> Path:
    lines = [f"{word} {' '.join(str(v) for v in values)}" for word, values in vectors.items()]
    if header:
        lines.insert(0, f"{len(vectors)} {len(next(iter(vectors.values())))}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def holding(encoder: RNNEncoder) -> nn.Module:
    """A model with ``encoder`` as its part of that name, as the topologies' models have."""
    model = nn.Module()
    model.encoder = encoder
    return model


def encoder(path=None, freeze=False, vocab_size=None) -> RNNEncoder:
    torch.manual_seed(0)
    return RNNEncoder(vocab_size or len(PIECES), cell="gru", embedding_dim=E, hidden_size=3, num_layers=1,
                      bidirectional=True, dropout=0.0, residual=False, implementation="torch",
                      word_dropout=0.0, pretrained_embeddings=None if path is None else str(path),
                      freeze_embeddings=freeze)


def decoder(vocab_size, context_size, attention, path=None, freeze=False, tie=False) -> RNNDecoder:
    return RNNDecoder(vocab_size, context_size, attention=attention, cell="gru", embedding_dim=E,
                      hidden_size=5, num_layers=1, dropout=0.0, input_feeding=False,
                      tie_embeddings=tie, residual=False, implementation="torch", word_dropout=0.0,
                      output_vocabulary="all", pretrained_embeddings=path, freeze_embeddings=freeze)


def test_whole_word_pieces_are_the_words_after_the_marker():
    assert piece_words(PIECES) == {4: "the", 5: "Cat", 6: "sat", 9: "zebra", 10: "Mat"}


@pytest.mark.parametrize("header", [True, False], ids=["word2vec", "glove"])
def test_vectors_go_to_whole_word_pieces_exact_word_first_then_lowercase(tmp_path, header, caplog):
    path = write_vectors(tmp_path / "vectors.txt", header)
    model = encoder(path)
    before = model.embedding.weight.detach().clone()
    with caplog.at_level(logging.INFO):
        coverage = load_pretrained_embeddings(holding(model), {"encoder": Pieces(PIECES)})
    weight = model.embedding.weight.detach()
    torch.testing.assert_close(weight[4], torch.tensor(VECTORS["the"], dtype=torch.float))
    torch.testing.assert_close(weight[5], torch.tensor(VECTORS["Cat"], dtype=torch.float))  # exact
    torch.testing.assert_close(weight[6], torch.tensor(VECTORS["sat"], dtype=torch.float))
    torch.testing.assert_close(weight[10], torch.tensor(VECTORS["mat"], dtype=torch.float))  # lower
    for row in (0, 1, 2, 3, 7, 8, 9):  # specials, "at" (not a word start), "▁", a missing word
        torch.testing.assert_close(weight[row], before[row])
    assert coverage == {"encoder": 4 / len(PIECES)}
    assert f"model.encoder.pretrained_embeddings: 4 of {len(PIECES)} pieces" in caplog.text


def test_parts_without_a_file_are_left_alone(tmp_path):
    model = encoder()
    before = model.embedding.weight.detach().clone()
    assert load_pretrained_embeddings(holding(model), {"encoder": Pieces(PIECES)}) == {}
    with pytest.raises(ValueError, match="has no decoder"):
        load_pretrained_embeddings(holding(model), {"decoder": Pieces(PIECES)})
    torch.testing.assert_close(model.embedding.weight.detach(), before)


def frozen_model(tmp_path: Path, tie: bool) -> EncoderDecoder:
    path = str(write_vectors(tmp_path / "vectors.txt"))
    model = EncoderDecoder(lambda vocab_size: encoder(path, freeze=True),
                           lambda vocab_size, context_size, attention: decoder(
                               vocab_size, context_size, attention, path, True, tie),
                           len(PIECES), len(PIECES), attention="bahdanau", share_embeddings=False)
    load_pretrained_embeddings(model, {"encoder": Pieces(PIECES), "decoder": Pieces(PIECES)})
    return model


def train_steps(model: EncoderDecoder, steps: int = 3) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    src = torch.tensor([[4, 5, 6, 7, 3], [9, 10, 8, 3, 0]])
    tgt = torch.tensor([[2, 4, 5, 6, 10], [2, 9, 7, 8, 1]])
    for _ in range(steps):
        optimizer.zero_grad()
        model(src, torch.tensor([5, 4]), tgt).logits.logsumexp(-1).sum().backward()
        optimizer.step()


@pytest.mark.parametrize("tie", [False, True])
def test_frozen_rows_keep_their_vectors_and_the_others_learn(tmp_path, tie):
    model = frozen_model(tmp_path, tie)
    matched = torch.zeros(len(PIECES), dtype=torch.bool)
    matched[[4, 5, 6, 10]] = True
    for part in (model.encoder, model.decoder):
        assert torch.equal(part.get_buffer("frozen_embeddings"), matched)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train_steps(model)
    for part in ("encoder", "decoder"):
        weight = model.get_parameter(f"{part}.embedding.weight").detach()
        old = before[f"{part}.embedding.weight"]
        torch.testing.assert_close(weight[matched], old[matched], rtol=0, atol=0)
        assert not torch.allclose(weight[~matched][1:], old[~matched][1:])  # past the PAD row


def test_the_frozen_rows_travel_with_the_state_dict(tmp_path):
    """A resumed run does not read the file again: the checkpoint says which rows are frozen."""
    model = frozen_model(tmp_path, tie=False)
    resumed = EncoderDecoder(lambda vocab_size: encoder(str(tmp_path / "gone.txt"), freeze=True),
                             lambda vocab_size, context_size, attention: decoder(
                                 vocab_size, context_size, attention, "gone.txt", True),
                             len(PIECES), len(PIECES), attention="bahdanau",
                             share_embeddings=False)
    resumed.load_state_dict(model.state_dict())
    before = resumed.encoder.embedding.weight.detach().clone()
    train_steps(resumed)
    torch.testing.assert_close(resumed.encoder.embedding.weight.detach()[4], before[4], rtol=0, atol=0)


def test_a_tiny_sentencepiece_vocabulary_takes_its_word_vectors(tmp_path):
    from seq2seq.tokenization import train_sentencepiece
    from tests.conftest import group_settings

    text = tmp_path / "train.txt"
    text.write_text("the cat sat on the mat\nthe dog sat on the log\n" * 20, encoding="utf-8")
    tokenizer = train_sentencepiece([text], group_settings("tokenizer", "unigram", vocab_size=20,
                                                           hard_vocab_limit=False), tmp_path / "spm")
    path = write_vectors(tmp_path / "glove.txt", header=False,
                         vectors={"the": [1, 1, 1, 1], "sat": [2, 2, 2, 2], "log": [3, 3, 3, 3]})
    model = encoder(str(path), vocab_size=tokenizer.vocab_size)
    coverage = load_pretrained_embeddings(holding(model), {"encoder": tokenizer})
    ids = {piece: i for i, piece in enumerate(tokenizer.id_to_piece(range(tokenizer.vocab_size)))}
    if "▁the" in ids:
        assert model.embedding.weight[ids["▁the"]].tolist() == [1.0] * E
    matched = sum(piece in ids for piece in ("▁the", "▁sat", "▁log"))
    assert matched > 0 and coverage["encoder"] == matched / tokenizer.vocab_size


@pytest.mark.parametrize("content,match", [
    (f"2 {E}\nthe 1 2 3 4\ncat 1 2 3\n", r"vectors\.txt:3: expected a word and 4 numbers"),
    ("the 1 2 3 4\ncat 1 2 3 4 5\n", r"vectors\.txt:2: expected a word and 4 numbers"),
    (f"2 {E}\nthe 1 2 3 4\ncat 1 2 x 4\n", r"vectors\.txt:3: number 3 of the vector is 'x'"),
    (f"1 {E}\nthe 1 2 nan 4\n", r"vectors\.txt:2: .*expected a finite number"),
    (f"3 {E}\nthe 1 2 3 4\ncat 1 2 3 4\n", r"vectors\.txt:1: the header announces 3 vectors"),
    ("\n\n", r"vectors\.txt: no vectors"),
])
def test_a_malformed_file_is_a_data_error_naming_file_and_line(tmp_path, content, match):
    path = tmp_path / "vectors.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=match):
        read_vectors(path, E, {"the", "cat"}, "model.encoder")


def test_text_that_is_not_utf8_is_a_data_error(tmp_path):
    path = tmp_path / "vectors.txt"
    path.write_bytes(b"the 1 2 3 4\n\xff\xfe 1 2 3 4\n")
    with pytest.raises(DataError, match=r"vectors\.txt:2: not UTF-8"):
        read_vectors(path, E, {"the"}, "model.encoder")


@pytest.mark.parametrize("header", [True, False])
def test_another_dimension_names_embedding_dim(tmp_path, header):
    path = write_vectors(tmp_path / "vectors.txt", header, {"the": [1, 2, 3], "cat": [4, 5, 6]})
    with pytest.raises(ConfigError, match="dimension 3; model.decoder.embedding_dim is 4"):
        read_vectors(path, E, {"the"}, "model.decoder")


def test_bad_settings_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="model.encoder.freeze_embeddings=true"):
        encoder(None, freeze=True)
    with pytest.raises(ConfigError, match="model.decoder.freeze_embeddings=true"):
        decoder(11, 6, "bahdanau", None, True)
    with pytest.raises(ConfigError, match="no such file"):
        load_pretrained_embeddings(holding(encoder(str(tmp_path / "missing.txt"))),
                                   {"encoder": Pieces(PIECES)})
    with pytest.raises(ConfigError, match="model.share_embeddings=true"):
        EncoderDecoder(lambda vocab_size: encoder("vectors.txt"),
                       lambda vocab_size, context_size, attention: decoder(
                           vocab_size, context_size, attention), len(PIECES), len(PIECES),
                       attention="bahdanau", share_embeddings=True)


@pytest.mark.slow
@pytest.mark.parametrize("resume", [False, True])
def test_the_translate_topology_loads_the_vectors_on_a_fresh_run_only(tiny_corpus, tmp_path, resume):
    from seq2seq.topologies.translate import Translate
    from seq2seq.training.distributed import Distributed

    words = "i see you want we have and a new blue dogs cars".split()  # the corpus's words
    path = write_vectors(tmp_path / "vectors.txt", vectors={w: [1, 1, 1, 1] for w in words})
    if resume:  # a resumed run does not read the file: one that would fail shows it
        path.write_text("not a vectors file\n", encoding="utf-8")
    cfg = compose_train(["trainer=smoke", f"paths.cache_dir={tmp_path / 'cache'}",
                         f"data.root={tiny_corpus}", "data.vocab_size=120", "data.generator=null",
                         f"model.encoder.pretrained_embeddings={path}",
                         f"model.encoder.embedding_dim={E}", f"resume={str(resume).lower()}"])
    model = Translate().setup(cfg, Distributed()).model
    assert model.encoder.pretrained_embeddings == str(path)
    if not resume:
        assert (model.encoder.embedding.weight == 1.0).all(dim=1).any()
