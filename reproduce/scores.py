"""Video scores: what every scorer (a checkpoint, an ensemble, the C3D baseline, a shard of a torchrun
job) produces and what the metrics read. A module of its own so that `reproduce.evaluate` (which
scores) and `reproduce.distributed` (which merges the ranks' shares) both depend on it, and not on
each other.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

NO_VIDEO = "no video to evaluate: the split is empty or every video is shorter than a window"


class VideoScores(NamedTuple):
    """One row of class scores per video: V videos, C classes."""

    video_ids: tuple[str, ...]
    scores: np.ndarray        # (V, C) float64: the mean of the video's window scores
    positives: np.ndarray     # (V, C) bool: the video's label(s)
    loss: float | None        # the mean per-window loss, when a loss function was given
