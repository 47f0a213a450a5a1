"""A video's highlights (reproduce.highlighting.results): `summarize` against the windows it is given."""

import numpy as np
import pytest

from reproduce.highlighting.results import HighlightedVideo, HighlightSettings, ModelInfo, summarize
from reproduce.highlighting.windows import Reading, WindowResult, plan_windows


def test_summarize_reports_windows_frames_and_moments_consistently():
    rng = np.random.default_rng(2)
    reading = Reading("c3d_fc6", "vgg_obj_fc8", 48, 3, 1)
    starts = plan_windows(150, 48, 32)                               # [0, 32, 64, 96]
    windows = []
    for s in starts.tolist():
        attention = rng.dirichlet(np.ones(3), size=3)                # (N, T), rows sum to 1
        windows.append(WindowResult(s, rng.dirichlet(np.ones(4)), [(s + 16 * np.arange(3), attention)]))
    times = np.arange(150) / 30.0
    model = ModelInfo("c.pt", "aLSTM-VGG_obj (fc8)", "c3d_fc6", "vgg_obj_fc8", 48, 3, 1, "a")
    out = summarize(windows, [reading], ["w", "x", "y", "z"], times, 150,
                    video=HighlightedVideo("v.mp4", 30.0), models=[model],
                    settings=HighlightSettings(threshold=1.2)).to_json()
    np.testing.assert_allclose([c["score"] for c in out["top_classes"]],
                               np.sort(np.mean([w.scores for w in windows], axis=0))[::-1], rtol=1e-6)
    assert out["duration"] == pytest.approx(5.0) and out["frames_read"] == 144
    # per frame: the mean over the windows reading it of the window's step-averaged weight
    expected = {}
    for w in windows:
        frames, attention = w.attention[0]
        for f, v in zip(frames.tolist(), attention.mean(0).tolist(), strict=True):
            expected.setdefault(f, []).append(v)
    item = out["frames"][0]
    assert item["frames"] == sorted(expected)
    np.testing.assert_allclose(item["weights"], [np.mean(expected[f]) for f in sorted(expected)], atol=1e-6)
    np.testing.assert_allclose(item["density"], 3 * np.asarray(item["weights"]), atol=1e-5)
    np.testing.assert_allclose(item["times"], np.asarray(item["frames"]) / 30.0, atol=1e-6)
    for window in out["windows"]:
        np.testing.assert_allclose(np.sum(window["attention"][0]["step_weights"], axis=1), 1.0, atol=1e-5)
    # one model: the moments are exactly the runs of attended frames at or above the threshold
    hot = {f for f, d in zip(item["frames"], item["density"], strict=True) if d >= 1.2}
    runs = sum(1 for f in hot if f - 16 not in hot)
    assert 0 < len(out["moments"]) == min(runs, 5)
    inside = {f for m in out["moments"] for f in range(m["start_frame"], m["end_frame"], 16)}
    assert inside == hot if runs <= 5 else inside <= hot
    for moment in out["moments"]:
        assert moment["start_time"] == pytest.approx(moment["start_frame"] / 30.0)
        assert moment["end_time"] == pytest.approx(moment["end_frame"] / 30.0)
        assert moment["end_frame"] - moment["start_frame"] >= 16
