"""Corpora: reading aligned files, generating the built-in corpus, downloading, batching."""
