"""Scoring translations and writing evaluation reports."""
