"""seq2seq: recurrent sequence-to-sequence models, machine translation first."""

__version__ = "0.1.0"
