import pytest

from seq2seq.errors import ConfigError
from seq2seq.tokenization import (
    BOS, EOS, PAD, SPECIALS, UNK, SentencePieceTokenizer, TokenizerPair, TokenizerSettings,
    build_tokenizers, train_sentencepiece,
)


def test_special_ids_are_one_definition():
    assert (PAD, UNK, BOS, EOS) == tuple(SPECIALS) == (0, 1, 2, 3)


def test_round_trip_and_cache(tiny_corpus, cache_dir):
    files = [tiny_corpus / "train.en", tiny_corpus / "train.de"]
    settings = TokenizerSettings(vocab_size=120)
    tok = train_sentencepiece(files, settings, cache_dir)
    lines = ["we have twenty-one green birds", "sie kauft einen Hund"]
    ids = tok.encode(lines)
    assert all(i > EOS for seq in ids for i in seq)  # specials are never produced by encode
    assert tok.decode(ids) == lines
    assert tok.decode([[BOS] + ids[0] + [EOS, PAD]]) == [lines[0]]  # specials dropped on decode
    cached = sorted(cache_dir.glob("spm-*.model"))
    again = train_sentencepiece(files, settings, cache_dir)
    assert sorted(cache_dir.glob("spm-*.model")) == cached  # reused, not retrained
    assert again.model_proto == tok.model_proto
    train_sentencepiece(files, TokenizerSettings(vocab_size=100), cache_dir)
    assert len(list(cache_dir.glob("spm-*.model"))) == len(cached) + 1  # new settings, new key


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_joint_and_separate(tiny_corpus, cache_dir, model_type):
    src, tgt = [tiny_corpus / "train.en"], [tiny_corpus / "train.de"]
    joint = build_tokenizers(src, tgt, TokenizerSettings(model_type, 100, joint=True), cache_dir)
    assert joint.src is joint.tgt
    separate = build_tokenizers(src, tgt, TokenizerSettings(model_type, 80, joint=False), cache_dir)
    assert separate.src.model_proto != separate.tgt.model_proto
    restored = TokenizerPair.from_state_dict(separate.state_dict())
    assert restored.tgt.encode(["drei Katzen"]) == separate.tgt.encode(["drei Katzen"])


def test_vocab_smaller_than_specials_is_a_config_error():
    with pytest.raises(ConfigError, match="tokenizer.vocab_size=3"):
        TokenizerSettings(vocab_size=3)


def test_unknown_model_type_is_a_config_error():
    with pytest.raises(ConfigError, match="tokenizer.model_type"):
        TokenizerSettings(model_type="wordpiece")


def test_foreign_model_ids_rejected(tiny_corpus, tmp_path):
    import sentencepiece as spm
    spm.SentencePieceTrainer.train(input=str(tiny_corpus / "train.en"),
                                   model_prefix=str(tmp_path / "m"), vocab_size=60,
                                   minloglevel=2)  # sentencepiece's default ids: unk 0, bos 1
    with pytest.raises(ConfigError, match="special ids"):
        SentencePieceTokenizer.load(tmp_path / "m.model")
