import pytest

from seq2seq.errors import ConfigError
from seq2seq.tokenization import (
    BOS,
    EOS,
    PAD,
    SPECIALS,
    UNK,
    SentencePieceTokenizer,
    TokenizerPair,
    build_tokenizers,
    train_sentencepiece,
)
from tests.conftest import group_settings


def test_special_ids_are_one_definition():
    assert (PAD, UNK, BOS, EOS) == tuple(SPECIALS) == (0, 1, 2, 3)


def test_round_trip_and_cache(tiny_corpus, cache_dir):
    files = [tiny_corpus / "train.en", tiny_corpus / "train.de"]
    settings = group_settings("tokenizer", "unigram", vocab_size=120)
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
    train_sentencepiece(files, group_settings("tokenizer", "unigram", vocab_size=100),
                        cache_dir)
    assert len(list(cache_dir.glob("spm-*.model"))) == len(cached) + 1  # new settings, new key


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_joint_and_separate(tiny_corpus, cache_dir, model_type):
    src, tgt = [tiny_corpus / "train.en"], [tiny_corpus / "train.de"]
    joint = build_tokenizers(src, tgt, group_settings("tokenizer", model_type, vocab_size=100,
                                                      joint=True), cache_dir)
    assert joint.src is joint.tgt and joint.joint
    assert TokenizerPair.from_state_dict(joint.state_dict()).joint
    separate = build_tokenizers(src, tgt, group_settings("tokenizer", model_type, vocab_size=80,
                                                         joint=False), cache_dir)
    assert separate.src.model_proto != separate.tgt.model_proto
    assert not separate.joint
    restored = TokenizerPair.from_state_dict(separate.state_dict())
    assert restored.tgt.encode(["drei Katzen"]) == separate.tgt.encode(["drei Katzen"])


def test_vocab_smaller_than_specials_is_a_config_error():
    with pytest.raises(ConfigError, match="tokenizer.vocab_size=3"):
        group_settings("tokenizer", "unigram", vocab_size=3)


def test_unknown_model_type_is_a_config_error():
    with pytest.raises(ConfigError, match="tokenizer.model_type"):
        group_settings("tokenizer", "unigram", model_type="wordpiece")


def test_case_folding_lowercases_what_the_model_reads_and_writes(tiny_corpus, cache_dir):
    files = [tiny_corpus / "train.en", tiny_corpus / "train.de"]
    folded = train_sentencepiece(files, group_settings("tokenizer", "unigram", vocab_size=120,
                                                       normalization="nmt_nfkc_cf"), cache_dir)
    cased = train_sentencepiece(files, group_settings("tokenizer", "unigram", vocab_size=120),
                                cache_dir)
    assert folded.folds_case and not cased.folds_case
    assert folded.encode(["Sie kauft einen HUND"]) == folded.encode(["sie kauft einen hund"])
    assert folded.decode(folded.encode(["Sie kauft einen HUND"])) == ["sie kauft einen hund"]
    assert cased.decode(cased.encode(["Sie kauft einen Hund"])) == ["Sie kauft einen Hund"]
    assert SentencePieceTokenizer(folded.model_proto).folds_case  # the rule is in the model file


def test_unknown_normalization_is_a_config_error():
    with pytest.raises(ConfigError, match="tokenizer.normalization"):
        group_settings("tokenizer", "unigram", normalization="lowercase")


def test_foreign_model_ids_rejected(tiny_corpus, tmp_path):
    import sentencepiece as spm
    spm.SentencePieceTrainer.train(input=str(tiny_corpus / "train.en"),
                                   model_prefix=str(tmp_path / "m"), vocab_size=60,
                                   minloglevel=2)  # sentencepiece's default ids: unk 0, bos 1
    with pytest.raises(ConfigError, match="special ids"):
        SentencePieceTokenizer.load(tmp_path / "m.model")


def test_sampled_encoding_is_seeded_and_decodes_to_the_line(tiny_corpus, cache_dir):
    files = [tiny_corpus / "train.en", tiny_corpus / "train.de"]
    tok = train_sentencepiece(files, group_settings("tokenizer", "unigram", vocab_size=120),
                              cache_dir)
    lines = ["we have twenty-one green birds", "sie kauft einen Hund"] * 10
    first = tok.encode_sampled(lines, alpha=0.1, nbest=-1, seed=7)
    assert first == tok.encode_sampled(lines, alpha=0.1, nbest=-1, seed=7)
    assert first != tok.encode_sampled(lines, alpha=0.1, nbest=-1, seed=8)
    assert first != tok.encode(lines)  # other segmentations ...
    assert tok.decode(first) == lines  # ... of the same text


def test_sampling_and_recasing_do_not_change_the_cached_model(tiny_corpus, tmp_path):
    files = [tiny_corpus / "train.en"]
    plain = train_sentencepiece(files, group_settings("tokenizer", "unigram", vocab_size=100),
                                tmp_path)
    sampled = train_sentencepiece(files, group_settings("tokenizer", "unigram", vocab_size=100,
                                                        sampling_alpha=0.2), tmp_path)
    assert sampled.model_proto == plain.model_proto
    assert len(list(tmp_path.glob("spm-*.model"))) == 1  # reused, not retrained
    folded = dict(vocab_size=100, normalization="nmt_nfkc_cf")
    recased = train_sentencepiece(files, group_settings("tokenizer", "unigram", **folded, recase=True),
                                  tmp_path)
    unrecased = group_settings("tokenizer", "unigram", **folded)
    assert recased.model_proto == train_sentencepiece(files, unrecased, tmp_path).model_proto
    assert len(list(tmp_path.glob("spm-*.model"))) == 2


@pytest.mark.parametrize("options, message", [
    ({"sampling_alpha": 1.5}, "tokenizer.sampling_alpha=1.5"),
    ({"sampling_alpha": -0.1}, "tokenizer.sampling_alpha=-0.1"),
    ({"sampling_alpha": 0.1, "model_type": "char"}, "needs model_type unigram or bpe"),
    ({"sampling_nbest": 0}, "tokenizer.sampling_nbest=0"),
    ({"recase": True}, "tokenizer.recase=true .* needs tokenizer.normalization nmt_nfkc_cf"),
])
def test_bad_sampling_options_are_config_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        group_settings("tokenizer", "unigram", **options)


def test_a_comma_in_a_corpus_path_trains_the_same_model(tiny_corpus, tmp_path):
    """SentencePiece reads its input files from one comma-separated string."""
    odd = tmp_path / "corpora, cleaned"
    odd.mkdir()
    (odd / "train.en").write_bytes((tiny_corpus / "train.en").read_bytes())
    settings = group_settings("tokenizer", "unigram", vocab_size=100)
    plain = train_sentencepiece([tiny_corpus / "train.en"], settings, tmp_path / "cache_a")
    commas = train_sentencepiece([odd / "train.en"], settings, tmp_path / "cache_b")
    ids = list(range(plain.vocab_size))  # the protos differ only in the input paths they record
    assert commas.vocab_size == plain.vocab_size and commas.id_to_piece(ids) == plain.id_to_piece(ids)
