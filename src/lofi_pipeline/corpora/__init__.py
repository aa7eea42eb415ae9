"""Corpora the shipped base models are pre-trained on (read by `lofi base`, never by a run)."""
