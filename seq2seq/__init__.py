"""seq2seq: recurrent sequence-to-sequence models, machine translation first."""

__version__ = "0.2.0"  # the one place: pyproject reads it
