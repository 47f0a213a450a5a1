"""Highlight aggregation (reproduce.highlighting.moments): per-frame weights, densities on a common grid,
moments, rankings; each against a direct construction."""

import numpy as np
import pytest

from reproduce.highlighting.moments import (
    FrameWeights,
    combine_curves,
    extreme_frames,
    find_moments,
    frame_times,
    strip_columns,
    top_classes,
)


def test_frame_weights_average_steps_then_overlapping_windows():
    acc = FrameWeights(16)
    a1 = np.array([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]])          # window at 0: frames 0, 16, 32
    a2 = np.array([[0.2, 0.2, 0.6], [0.4, 0.4, 0.2]])          # window at 16: frames 16, 32, 48
    np.testing.assert_allclose(acc.add(np.array([0, 16, 32]), a1), [0.3, 0.45, 0.25])
    acc.add(np.array([16, 32, 48]), a2)
    frames, weights = acc.result()
    assert frames.tolist() == [0, 16, 32, 48]
    np.testing.assert_allclose(weights, [0.3, (0.45 + 0.3) / 2, (0.25 + 0.3) / 2, 0.4])


def test_combine_curves_holds_each_density_over_its_cell():
    coarse = (np.array([0, 16, 32]), np.array([1.0, 2.0, 3.0]), 16)
    fine = (np.array([0, 8, 16, 24, 32]), np.array([4.0, 0.0, 2.0, 2.0, 1.0]), 8)
    grid, values, cell = combine_curves([coarse, fine], 48)
    assert cell == 8 and grid.tolist() == [0, 8, 16, 24, 32, 40]
    np.testing.assert_allclose(values, [2.5, 0.5, 2.0, 2.0, 2.0, 3.0])   # frame 40: only the coarse one
    grid, values, _ = combine_curves([coarse], 64)
    assert np.isnan(values[-1]) and values[:3].tolist() == [1.0, 2.0, 3.0]


def test_moments_merge_runs_rank_by_peak_and_clip_to_the_video():
    values = np.array([0.5, 2.0, 2.5, 0.4, 1.6, 0.2, 3.0, np.nan, 1.5])
    grid = np.arange(len(values)) * 16
    moments = find_moments(grid, values, 16, covered=140, threshold=1.5, top=5)
    assert [(m.start, m.end, m.peak_frame, m.peak) for m in moments] == [
        (96, 112, 96, 3.0), (16, 48, 32, 2.5), (64, 80, 64, 1.6), (128, 140, 128, 1.5)]
    assert moments[1].mean == pytest.approx(2.25)
    merged = find_moments(grid, values, 16, covered=140, threshold=1.5, top=2, gap=1)
    assert [(m.start, m.end, m.peak) for m in merged] == [(16, 140, 3.0)]   # one cell between hot cells
    assert find_moments(grid, values, 16, 140, threshold=5.0) == []


def test_rankings_and_times():
    scores = np.array([0.1, 0.4, 0.4, 0.05, 0.05])
    assert [c["index"] for c in top_classes(scores, list("abcde"), 3)] == [1, 2, 0]
    high, low = extreme_frames(np.array([0, 16, 32, 48]), np.array([0.2, 0.5, 0.1, 0.2]), 2)
    assert high.tolist() == [1, 0] and low.tolist() == [2, 0]
    frames = list(range(0, 384, 16))                                   # 24 frames → 12, ends kept
    assert strip_columns(frames, 12) == [frames[round(i * 23 / 11)] for i in range(12)]
    assert strip_columns([32, 0, 16, 16], 12) == [0, 16, 32]
    times = np.arange(10) / 25.0
    np.testing.assert_allclose(frame_times([0, 9, 10, 12], times), [0.0, 0.36, 0.4, 0.48])
