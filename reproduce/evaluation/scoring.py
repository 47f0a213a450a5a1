"""Video scores: what every scorer (a checkpoint, an ensemble, the C3D baseline, a shard of a torchrun
job) produces and what the metrics read, and the scorers themselves.

Windows of several videos are concatenated into one forward pass of up to ``window_batch`` windows;
a video's score row is the mean of its windows' scores (docs/paper.md §4).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import numpy as np
import torch

from alstm_core.progress import progress_bar
from reproduce.errors import ReproduceError
from reproduce.runtime.precision import autocast

NO_VIDEO = "no video to evaluate: the split is empty or every video is shorter than a window"


class VideoScores(NamedTuple):
    """One row of class scores per video: V videos, C classes."""

    video_ids: tuple[str, ...]
    scores: np.ndarray        # (V, C) float64: the mean of the video's window scores
    positives: np.ndarray     # (V, C) bool: the video's label(s)
    loss: float | None        # the mean per-window loss, when a loss function was given


def _positives(targets: torch.Tensor, num_classes: int) -> np.ndarray:
    """A video's label row (C,) bool from its windows' targets: (B,) int64 or (B, C) multi-hot."""
    first = targets[0]
    if first.dim() == 0:
        row = np.zeros(num_classes, dtype=bool)
        row[int(first)] = True
        return row
    return first.cpu().numpy() > 0.5



def _grouped(windows: Iterable, window_batch: int):
    """Lists of (video_id, Batch) holding at most ``window_batch`` windows (at least one video)."""
    group, size = [], 0
    for video_id, batch in windows:
        count = batch.inputs.shape[0]
        if group and size + count > window_batch:
            yield group
            group, size = [], 0
        group.append((video_id, batch))
        size += count
    if group:
        yield group



def _concat(tensors: Sequence[torch.Tensor | None], device: torch.device) -> torch.Tensor | None:
    if tensors[0] is None:
        return None
    return torch.cat(list(tensors)).to(device)



@torch.no_grad()
def score_videos(model: torch.nn.Module, windows: Iterable, *, device: str | torch.device = "cpu",
                 loss_fn: Callable | None = None, window_batch: int = 400,
                 progress: bool = False, desc: str = "evaluate", precision: str = "float32") -> VideoScores:
    """Video scores of ``model`` (put in eval mode) over ``windows`` (pairs (video_id, Batch), e.g. a
    TestWindows). ``loss_fn(step_logits (B, N, C), targets) -> (B,)`` adds the mean window loss.
    ``precision``: a resolved `reproduce.runtime.precision` choice for the forward pass."""
    device = torch.device(device)
    model.eval()
    ids, rows, positives = [], [], []
    loss_sum, loss_count = 0.0, 0
    total = len(windows) if hasattr(windows, "__len__") else None
    with progress_bar(total=total, desc=desc, unit="video", enabled=progress, leave=False) as bar:
        for group in _grouped(windows, window_batch):
            batches = [b for _, b in group]
            with autocast(precision, device):
                out = model(_concat([b.inputs for b in batches], device),
                            _concat([b.attended for b in batches], device),
                            _concat([b.attended_mask for b in batches], device))
            scores = out.scores.double().cpu()                                          # (ΣB, C)
            if loss_fn is not None:
                targets = _concat([b.targets for b in batches], device)
                losses = loss_fn(out.step_logits.float(), targets)                      # (ΣB,)
                loss_sum += float(losses.double().sum())
                loss_count += losses.shape[0]
            start = 0
            for video_id, batch in group:
                count = batch.inputs.shape[0]
                ids.append(video_id)
                rows.append(scores[start:start + count].mean(dim=0).numpy())         # mean of the windows
                positives.append(_positives(batch.targets, scores.shape[1]))
                start += count
            bar.update(len(group))
    if not ids:
        raise ReproduceError(NO_VIDEO)
    return VideoScores(tuple(ids), np.stack(rows), np.stack(positives),
                       loss_sum / loss_count if loss_fn is not None else None)



def baseline_scores(windows: Iterable, *, already_probabilities: bool = False, num_classes: int,
                    progress: bool = False) -> VideoScores:
    """The C3D (fc8) baseline from windows whose ``inputs`` (B, N, C) are fc8 rows: the softmax of each
    chunk (unless ``already_probabilities``), averaged over the N chunks, then over the windows."""
    ids, rows, positives = [], [], []
    for video_id, batch in progress_bar(windows, desc="baseline", unit="video", enabled=progress,
                                        leave=False):
        chunks = batch.inputs.double()                                                  # (B, N, C)
        if chunks.shape[-1] != num_classes:
            raise ReproduceError(
                f"the baseline source has {chunks.shape[-1]} columns but the dataset has {num_classes} "
                "classes: C3D (fc8) needs the fc8 of a network fine-tuned on the dataset's classes"
            )
        probs = chunks if already_probabilities else torch.softmax(chunks, dim=-1)
        ids.append(video_id)
        rows.append(probs.mean(dim=(0, 1)).numpy())                                    # windows and chunks
        positives.append(_positives(batch.targets, num_classes))
    if not ids:
        raise ReproduceError(NO_VIDEO)
    return VideoScores(tuple(ids), np.stack(rows), np.stack(positives), None)



def ensemble_scores(members: Sequence[VideoScores]) -> VideoScores:
    """The average of several scorers' video scores (same videos, same order, same labels)."""
    first = members[0]
    for other in members[1:]:
        if other.video_ids != first.video_ids:
            raise ReproduceError("ensemble members scored different videos: give them the same data, split, "
                                 "window length and seed")
        if not np.array_equal(other.positives, first.positives):
            raise ReproduceError("ensemble members disagree on the videos' labels: were they trained on "
                                 "the same class list?")
    return VideoScores(first.video_ids, np.mean([m.scores for m in members], axis=0), first.positives, None)
