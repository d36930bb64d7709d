"""Benchmarks run from a checkout (``python benchmarks/speed.py``): not part of the package."""
