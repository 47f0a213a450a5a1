"""Scoring videos over the processes of a torchrun job, with the result of one process.

The videos are cut into the groups that one forward pass of ``window_batch`` windows holds in a single
process, group c goes to rank c mod W, and the per-video scores are gathered by every rank. Each
forward pass is then the single-process one, so the merged scores are bitwise those of one process,
and every rank takes the same decisions from them (early stopping). The model is not DDP-wrapped
there: ranks may run different numbers of passes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from reproduce.errors import ReproduceError
from reproduce.evaluation.scoring import NO_VIDEO, VideoScores
from reproduce.runtime.distributed import Distributed


class ShardedWindows:
    """The (video_id, Batch) pairs of the videos of ``windows`` (a TestWindows) that ``rank`` scores:
    groups of ``videos_per_group`` consecutive videos, group c to rank c mod W. Records the video
    indices and the number of windows it handed out."""

    def __init__(self, windows, videos_per_group: int, rank: int, world_size: int):
        self.windows = windows
        count = len(windows)
        self.indices = [n for n in range(count) if (n // videos_per_group) % world_size == rank]
        self.windows_read = 0

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self):
        for n in self.indices:
            video_id, batch = self.windows[n]
            self.windows_read += batch.inputs.shape[0]
            yield video_id, batch


def videos_per_group(windows, window_batch: int) -> int:
    """How many videos one forward pass of at most ``window_batch`` windows holds in
    `reproduce.evaluation.evaluate.score_videos` (every video of a TestWindows has crops × (1 + flip)
    windows)."""
    per_video = windows.crops * (2 if windows.flip else 1)
    return max(1, window_batch // per_video)


def score_sharded(dist: Distributed, windows, score: Callable[[Any], VideoScores],
                  window_batch: int = 400) -> VideoScores:
    """``score(iterable of (video_id, Batch)) -> VideoScores`` run on this rank's share of ``windows``,
    then the shares merged (in the order of ``windows``) on every rank. The merged loss is the mean over
    all windows (each rank's mean weighted by its window count)."""
    if dist.world_size == 1:
        return score(windows)
    mine = ShardedWindows(windows, videos_per_group(windows, window_batch), dist.rank, dist.world_size)
    part = score(mine) if len(mine) else None
    return merge_video_scores(dist.all_gather_object((mine.indices, part, mine.windows_read)))


def merge_video_scores(parts: Sequence[tuple[list[int], VideoScores | None, int]]) -> VideoScores:
    """One VideoScores from the ranks' (video indices, VideoScores or None, windows scored)."""
    order, ids, scores, positives = [], [], [], []
    loss_sum, windows, has_loss = 0.0, 0, False
    for indices, part, count in parts:
        if part is None:
            continue
        order.extend(indices)
        ids.extend(part.video_ids)
        scores.append(part.scores)
        positives.append(part.positives)
        if part.loss is not None:
            has_loss = True
            loss_sum += part.loss * count
            windows += count
    if not ids:
        raise ReproduceError(NO_VIDEO)
    rank = np.argsort(np.asarray(order), kind="stable")
    return VideoScores(tuple(ids[i] for i in rank), np.concatenate(scores)[rank],
                       np.concatenate(positives)[rank], loss_sum / windows if has_loss else None)
