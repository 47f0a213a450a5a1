"""The highlight report (reproduce.highlighting.report): figure selections, brightness ∝ weight, a
self-contained page that headless Chromium renders without touching the network."""

import base64
import io
import re

import numpy as np
import pytest
from helpers.browser import external_references, needs_chromium, render
from PIL import Image

from reproduce.highlighting.figures import (
    BRIGHTNESS_FLOOR,
    Figure3Strip,
    StripRow,
    darken,
    figure2_selection,
    figure3_selection,
    model_label,
    render_figure3,
    report_frames,
)
from reproduce.highlighting.report import write_report
from reproduce.highlighting.results import HighlightedVideo, HighlightSettings, ModelInfo, summarize
from reproduce.highlighting.windows import Reading, WindowResult, plan_windows

CLASSES = ["Archery", "Sailing", "Curling", "Playing violin"]


def ensemble_highlights(seed=0):
    """An ensemble of an obj model attending every 16 frames (T = N = 3) and an act model attending
    every 8 frames (T = 2N = 6) over a 160-frame video at 25 frames/s, windows of 48 frames."""
    rng = np.random.default_rng(seed)
    readings = [Reading("c3d_fc6", "vgg_obj_fc8", 48, 3, 1), Reading("c3d_fc6", "vgg_act_fc8", 48, 3, 2)]
    windows = []
    for s in plan_windows(160, 48).tolist():
        obj = (s + 16 * np.arange(3), rng.dirichlet(np.full(3, 0.5), size=3))
        act = (s + 8 * np.arange(6), rng.dirichlet(np.full(6, 0.5), size=3))
        windows.append(WindowResult(s, rng.dirichlet(np.ones(4)), [obj, act]))
    models = [ModelInfo(f"{n}.pt", model_label(r.input_source, r.attended_source), r.input_source,
                        r.attended_source, 48, 3, r.attended_per_step, "a")
              for n, r in zip(("obj", "act"), readings, strict=True)]
    video = HighlightedVideo("/videos/match.mp4", 25.0)
    return summarize(windows, readings, CLASSES, np.arange(160) / 25.0, 160, video=video, models=models,
                     settings=HighlightSettings(threshold=1.3))


def colour_thumbnails(frames):
    """A uniform 160×90 thumbnail per frame, its colour a function of the frame."""
    return {f: np.full((90, 160, 3), (f % 200 + 30, 255 - f % 200, 90), np.uint8) for f in frames}


def test_darken_is_proportional():
    image = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    np.testing.assert_array_equal(darken(image, 0.3), np.rint(image * 0.3).astype(np.uint8))
    np.testing.assert_array_equal(darken(image, 1.7), image)


def test_figure2_selection_is_the_extremes_of_each_model():
    highlights = ensemble_highlights()
    rows = figure2_selection(highlights, k=3)
    assert [r.label for r in rows] == ["aLSTM-VGG_obj (fc8)", "aLSTM-VGG_act (fc8)"]
    for row, item in zip(rows, highlights.frames, strict=True):
        pairs = list(zip(item.weights.tolist(), item.frames.tolist(), strict=True))
        order = sorted(pairs, key=lambda p: (-p[0], p[1]))
        assert [f for f, _, _ in row.high] == [f for _, f in order[:3]]
        order = sorted(zip(item.weights.tolist(), item.frames.tolist(), strict=True))
        assert [f for f, _, _ in row.low] == [f for _, f in order[:3]]
        assert all(t == pytest.approx(f / 25.0) for f, t, _ in row.high + row.low)


def test_figure3_strip_is_the_most_confident_window_with_each_models_weights():
    highlights = ensemble_highlights()
    strip = figure3_selection(highlights, columns=12)
    top = highlights.top_classes[0].name
    best = max(highlights.windows, key=lambda w: w.class_scores[top])
    assert strip.window == best.index and strip.class_name == top
    start = best.start_frame
    assert strip.frames == list(range(start, start + 48, 8))            # the union of both models' frames
    obj, act = strip.rows
    assert [obj.label, act.label] == ["Object", "Action"]
    np.testing.assert_allclose([w for w in obj.weights if w is not None], best.attention[0].frame_weights)
    assert [w is None for w in obj.weights] == [(f - start) % 16 != 0 for f in strip.frames]
    np.testing.assert_allclose(act.weights, best.attention[1].frame_weights)
    assert set(strip.frames) <= report_frames(highlights)


def test_figure3_brightness_follows_the_weight():
    strip = Figure3Strip(0, "Archery", 0.5, [0, 16, 32], [0, 0.64, 1.28],
                         [StripRow("Object", "aLSTM-VGG_obj (fc8)", [0.1, 0.25, 0.4])])
    white = {f: np.full((90, 160, 3), 255, np.uint8) for f in strip.frames}
    pixels = np.asarray(Image.open(io.BytesIO(render_figure3(strip, white))).convert("RGB")).reshape(-1, 3)
    for weight in (0.1, 0.25):                                          # 0.15 + 0.85 · w / 0.4 of white
        level = round(255 * (BRIGHTNESS_FLOOR + (1 - BRIGHTNESS_FLOOR) * weight / 0.4))  # 92, 174
        count = np.all(pixels == level, axis=1).sum()
        assert count > 3000, (weight, count)                              # a whole thumbnail at that grey
    assert np.all(pixels == 128, axis=1).sum() < 100                      # and no other large grey patch


def test_report_is_self_contained_and_inlines_its_figures(tmp_path):
    highlights = ensemble_highlights()
    written = write_report(str(tmp_path), highlights, colour_thumbnails(report_frames(highlights)))
    names = sorted(p.rsplit("/", 1)[1] for p in written)
    assert names == ["figure2.png", "figure3.png", "report.html", "timeline.png"]
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert external_references(page) == [] and "<script" not in page.lower()
    inlined = [base64.b64decode(m) for m in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)]
    assert sorted(inlined) == sorted((tmp_path / n).read_bytes() for n in names if n.endswith(".png"))
    for item in highlights.top_classes:
        assert f"<td>{item.name}</td><td>{item.score:.3f}</td>" in page
    for moment in highlights.moments:
        assert f"<td>{moment.start_time:.2f}</td><td>{moment.end_time:.2f}</td>" in page
    assert len(highlights.moments) > 0 and not list(tmp_path.glob("*.tmp*"))


def test_external_reference_check_finds_what_leaves_the_file():
    page = ("<img src='data:image/png;base64,AAAA'><a href='#top'></a><img src=\"http://x.org/a.png\">"
            "<link href='//cdn.example/s.css'><div style=\"background:url( 'https://y.org/b.png')\"></div>"
            "<style>@import 'ftp://z.org/c.css';</style><img src='figure2.png'>")
    assert external_references(page) == ["http://x.org/a.png", "//cdn.example/s.css", "https://y.org/b.png",
                                         "ftp://z.org/c.css"]


@needs_chromium
def test_report_renders_in_chromium_and_requests_nothing(tmp_path):
    highlights = ensemble_highlights()
    write_report(str(tmp_path), highlights, colour_thumbnails(report_frames(highlights)))
    shot = render(tmp_path / "report.html", tmp_path / "report.png", 1200, 1600, tmp_path)
    assert shot.image.shape == (1600, 1200, 3)
    assert shot.page_requests == []
    grey = shot.image.mean(axis=2)
    assert (grey < 200).mean() > 0.05                                     # text, plots and frames drawn
    assert len(np.unique(shot.image.reshape(-1, 3) // 16, axis=0)) > 50   # in many colours
    # the thumbnails' colours reach the screen: frame f's colour appears somewhere
    frame = figure2_selection(highlights, 4)[0].high[0].frame
    colour = np.array([frame % 200 + 30, 255 - frame % 200, 90])
    assert np.any(np.all(np.abs(shot.image.astype(int) - colour) <= 6, axis=2))

    # the same probe sees a page that does reach out
    (tmp_path / "leaky.html").write_text("<html><body><img src='http://example.invalid/a.png'>"
                                         "<link rel=stylesheet href='https://fonts.invalid/x.css'></body></html>")
    leaky = render(tmp_path / "leaky.html", tmp_path / "leaky.png", 400, 300, tmp_path / "leaky")
    assert sorted(leaky.page_requests) == ["http://example.invalid/a.png", "https://fonts.invalid/x.css"]
