"""Evaluation (``alstm evaluate``): video scores, their metrics, and scoring shared over processes."""
