"""Make a configured corpus available on disk: generate it, download it, or check it is there."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from seq2seq.data.corpus import CorpusFiles
from seq2seq.errors import ConfigError


def prepare_corpus(root: str, src_lang: str, tgt_lang: str, train: str = "train",
                   valid: str = "valid", test: str = "test",
                   generator: Optional[Callable[..., Any]] = None, download: bool = False,
                   downloader: Optional[Callable[..., Path]] = None,
                   download_dir: Optional[str] = None) -> CorpusFiles:
    """Return the corpus files, after generating them (``generator(root)``) or, when ``download``
    is set, fetching them into ``download_dir`` (``downloader(download_dir, langs)``).
    Raises DataError if a file is still missing."""
    folder = Path(root).expanduser()
    if generator is not None:
        generator(root=folder, src_lang=src_lang, tgt_lang=tgt_lang)
    elif download:
        if downloader is None or download_dir is None:
            raise ConfigError("data.download=true needs data.downloader and data.download_dir")
        folder = downloader(Path(download_dir).expanduser(), langs=(src_lang, tgt_lang))
    files = CorpusFiles(folder, src_lang, tgt_lang, train, valid, test)
    files.check_exist()
    return files


@dataclass(frozen=True)
class ParallelData:
    """The ``data`` group of a parallel corpus (``conf/data/numbers.yaml``, ``multi30k.yaml``)."""

    root: str
    src_lang: str
    tgt_lang: str
    train: str
    valid: str
    test: str
    max_length: int                 # training pairs with a side over this many pieces are dropped
    limit_train: Optional[int]      # only the first N training pairs
    vocab_size: int                 # read by tokenizer.vocab_size
    generator: Optional[Callable[..., Any]]
    download: bool
    downloader: Optional[Callable[..., Path]]
    download_dir: Optional[str]
    # Training pairs whose longer side has more than this many times the pieces of the shorter are
    # dropped and counted (Moses's clean-corpus-n uses 9); None keeps them.
    max_length_ratio: Optional[float] = None
    # Encode the training split once into the tokenizer cache and map it (seq2seq/data/binarized.py);
    # false encodes it into lists every run, as subword sampling (tokenizer.sampling_alpha) does.
    binarize: bool = True

    def files(self) -> CorpusFiles:
        """The corpus files, generated or downloaded first when so configured."""
        return prepare_corpus(self.root, self.src_lang, self.tgt_lang, self.train, self.valid,
                              self.test, self.generator, self.download, self.downloader,
                              self.download_dir)
