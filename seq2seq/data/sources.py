"""Make a configured corpus available on disk: generate it, download it, or check it is there."""

from __future__ import annotations

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
