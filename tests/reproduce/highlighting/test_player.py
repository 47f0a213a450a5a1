"""The report's player (reproduce.highlighting.player, browser_video, timeline_svg): a report made here
from a video encoded here (small random-weight networks, hand-made checkpoints), driven in headless
Chromium through selenium (seeking, the window panel, keys, the console); the browser copy; the page's
size budget; and two faults of the highlighting that no other fast test catches (--merge-gap not reaching
the moment finder, a model's attention curve attributed to another model of an ensemble)."""

from __future__ import annotations

import dataclasses
import html.parser
import json
import re
import shutil
import time

import av
import numpy as np
import pytest
import torch
from helpers.browser import external_references, find_chromium, render
from helpers.networks import use_small_networks
from helpers.videos import make_video, moving_frames, write_video

from bricks import AttentionLSTM
from reproduce.errors import ReproduceError
from reproduce.highlighting.browser_video import MAX_KBITS, MAX_WIDTH, write_browser_copy
from reproduce.highlighting.figures import figure2_selection, model_label
from reproduce.highlighting.pipeline import highlight_features, highlight_video, load_highlight_models
from reproduce.highlighting.player import DATA_ID, window_at
from reproduce.highlighting.report import PlayerSources, render_html, write_report
from reproduce.highlighting.results import HighlightedVideo, HighlightSettings, ModelInfo, summarize
from reproduce.highlighting.timeline_svg import POINTS_PER_COLUMN, WIDTH, timeline_svg
from reproduce.highlighting.windows import Reading, WindowResult, plan_windows
from reproduce.runs.checkpoint import save_checkpoint

FPS = 25
FRAMES = 400                      # 16 s
CLASSES = list("abcd")
# helpers.networks' small networks, sized for the checkpoints below: C3D fc6 16 wide, VGG-19 fc8 10 wide
SMALL_C3D = dict(num_classes=6, width=2, fc_dim=16)
SMALL_VGG = dict(num_classes=10, width=2, fc_dim=12)

pytestmark = pytest.mark.filterwarnings("ignore::caffe_models.RandomWeightsWarning")


def _selenium_missing() -> str | None:
    """Why the browser tests cannot run here (None: they can)."""
    if find_chromium() is None:
        return "no Chromium binary (Debian: apt-get install -y chromium)"
    if shutil.which("chromedriver") is None:
        return "no chromedriver (Debian: apt-get install -y chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    return None


needs_browser = pytest.mark.skipif(_selenium_missing() is not None, reason=str(_selenium_missing()))


def checkpoint(path, *, seed, attended_source="vgg_obj_fc8", attended_per_step=1):
    """A checkpoint of a small model on random weights (``seed``): windows of 48 frames, N = 3, reading
    c3d_fc6 (16 wide) and attending to ``attended_source`` (10 wide; None: a vanilla LSTM)."""
    args = dict(input_dim=16, attended_dim=10, num_classes=len(CLASSES), hidden_dim=8, match_dim=6,
                attention=attended_source is not None)
    model = AttentionLSTM(**args, generator=torch.Generator().manual_seed(seed))
    save_checkpoint(path, {"config": {}, "model_args": args, "model": model.state_dict(),
                           "class_names": CLASSES, "input_source": "c3d_fc6",
                           "attended_source": attended_source, "iteration": 0,
                           "spec": {"frames": 48, "steps": 3, "attended_per_step": attended_per_step}})
    return str(path)


def one_model(frames=48, steps=3, per_step=1):
    return ModelInfo("m.pt", model_label("c3d_fc6", "vgg_obj_fc8"), "c3d_fc6", "vgg_obj_fc8", frames, steps,
                     per_step, "a")


def run_highlight(video, checkpoints, **settings):
    return highlight_video(str(video), checkpoints, settings=HighlightSettings(**settings), device="cpu",
                           precision="float32", allow_random_weights=True, warn=lambda text: None)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A 16 s video (lossless H.264 RGB, which browsers do not play) highlighted by an ensemble of a
    vanilla LSTM and two attention models (T = 3 every 16 frames, T = 6 every 8), its clip, and the
    report; plus the attention models highlighted alone."""
    root = tmp_path_factory.mktemp("player")
    truth, _ = make_video(root / "match.mp4", FRAMES, 48, 64, codec="h264", seed=5, fps=FPS)
    ckpts = [checkpoint(root / "lstm.pt", seed=0, attended_source=None),
             checkpoint(root / "obj.pt", seed=1),
             checkpoint(root / "fine.pt", seed=2, attended_per_step=2)]
    with pytest.MonkeyPatch.context() as patch:
        use_small_networks(patch, SMALL_C3D, SMALL_VGG)
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            h = run_highlight(root / "match.mp4", ckpts, threshold=1.0)
            alone = {m: run_highlight(root / "match.mp4", [ckpts[m]], threshold=1.0) for m in (1, 2)}
        finally:
            torch.set_num_threads(before)
    out = root / "report"
    out.mkdir()
    h.write_json(str(out / "highlights.json"))
    assert h.moments, "threshold 1.0: some frame is above the mean weight"
    h.write_summary_video(str(root / "clip.mp4"))
    written = h.write_report(str(out), clip=str(root / "clip.mp4"))
    return dict(root=root, out=out, h=h, alone=alone, truth=truth, written=written, checkpoints=ckpts)


# ---------------------------------------------------------------------------------------------------
# the page, without a browser


def embedded(page: str) -> dict:
    """The JSON of the page's <script type="application/json"> element, as a browser reads it."""
    class Finder(html.parser.HTMLParser):
        def __init__(self):
            super().__init__()
            self.inside, self.text = False, []

        def handle_starttag(self, tag, attrs):
            self.inside = tag == "script" and dict(attrs).get("id") == DATA_ID

        def handle_endtag(self, tag):
            self.inside = False

        def handle_data(self, data):
            if self.inside:
                self.text.append(data)

    finder = Finder()
    finder.feed(page)
    return json.loads("".join(finder.text))


def test_report_folder_holds_the_copy_the_clip_and_a_page_that_embeds_highlights_json(made):
    out, h = made["out"], made["h"]
    names = sorted(p.rsplit("/", 1)[1] for p in made["written"])
    assert names == ["clip.mp4", "figure2.png", "figure3.png", "report.html", "timeline.png", "video.mp4"]
    page = (out / "report.html").read_text(encoding="utf-8")
    assert external_references(page) == []
    assert embedded(page) == json.loads((out / "highlights.json").read_text())     # the same schema
    assert page.count("<video") == 1 and "data-player" in page and "src='video.mp4'" in page
    assert "data-clip='clip.mp4'" in page and "data-timeline" in page and "<svg" in page
    # without scripts the page still reads: the figures and the moments' table are plain HTML
    body = re.sub(r"<script.*?</script>", "", page, flags=re.S)
    assert body.count("data:image/png;base64,") == 3 and "<table class='moments'>" in body
    assert all(f"<td>{m.start_time:.2f}</td><td>{m.end_time:.2f}</td>" in body for m in h.moments)
    # every seeking element carries seconds; the moments, in the table and on the timeline, their start
    seeks = [float(s) for s in re.findall(r"data-seek='([^']*)'", page)]
    assert seeks and all(0 <= s <= h.duration for s in seeks)
    for m in h.moments:
        assert page.count(f"data-moment='{m.rank}' data-seek='{m.start_time:.6f}'") == 2
    # thumbnails of both figures seek to their frames' times
    fig2 = {round(s.time, 6) for row in figure2_selection(h) for s in row.high + row.low}
    links = re.search(r"<div class='figure-box' data-figure='figure2'>(.*?)</div>", page).group(1)
    assert {round(float(s), 6) for s in re.findall(r"data-seek='([^']*)'", links)} == fig2
    assert not list(out.glob(".*tmp*"))


def test_the_copy_is_browser_h264_of_the_same_frames_and_times(made):
    out, h, truth = made["out"], made["h"], made["truth"]
    with av.open(str(out / "video.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        frames = [f for f in container.decode(video=0)]
    assert (frames[0].width, frames[0].height) == (64, 48)
    assert len(frames) == h.num_frames == FRAMES
    np.testing.assert_allclose([f.time for f in frames], np.arange(FRAMES) / FPS, atol=1e-4)
    # the same pictures, in order: each decoded frame is nearest to its own true frame
    decoded = np.stack([f.to_ndarray(format="rgb24") for f in frames[::37]]).reshape(-1, 48 * 64 * 3)
    flat = truth.reshape(FRAMES, -1).astype(np.float64)
    picked = [int(np.argmin(((flat - row) ** 2).sum(1))) for row in decoded.astype(np.float64)]
    assert picked == list(range(0, FRAMES, 37))


def test_copy_is_at_most_480_wide_even_and_bitrate_bounded(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, size=(30, 361, 640, 3), dtype=np.uint8)  # noise
    write_video(tmp_path / "wide.mkv", frames, "ffv1", fps=25)
    copy = write_browser_copy(str(tmp_path / "wide.mkv"), str(tmp_path / "copy.mp4"))
    assert (copy.width, copy.height) == (MAX_WIDTH, 270) and copy.frames == 30
    assert copy.duration == pytest.approx(1.2)
    # VBV: at most the cap over the duration plus the buffer (2 s of it), plus the MP4 index
    assert copy.bytes <= MAX_KBITS * 1000 / 8 * (copy.duration + 2.0) + 20 * copy.frames + 4096, copy.bytes
    write_video(tmp_path / "odd.mkv", moving_frames(20, 61, 97), "ffv1", fps=30)
    odd = write_browser_copy(str(tmp_path / "odd.mkv"), str(tmp_path / "odd.mp4"))
    assert (odd.width, odd.height) == (96, 60)
    (tmp_path / "notes.mp4").write_text("not a video\n" * 20)
    with pytest.raises(ReproduceError, match="cannot open as a video"):
        write_browser_copy(str(tmp_path / "notes.mp4"), str(tmp_path / "bad.mp4"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.mp4", "notes.mp4", "odd.mkv", "odd.mp4",
                                                         "wide.mkv"]


def test_pages_without_a_video_or_a_copy_say_so_and_have_no_script(made, tmp_path):
    from fuel_datasets import FeatureWriter, open_dataset

    # stored features (highlight_features): a page without a player, that says so
    rng = np.random.default_rng(0)
    with FeatureWriter(tmp_path / "f.h5", class_names=CLASSES) as writer:
        writer.add_video("v", features={"c3d_fc6": rng.normal(size=(12, 16)).astype(np.float32),
                                        "vgg_obj_fc8": rng.normal(size=(24, 10)).astype(np.float32)},
                         frame_index={"c3d_fc6": np.arange(0, 192, 16), "vgg_obj_fc8": np.arange(0, 192, 8)},
                         num_frames=192, fps=25.0, targets=0, split="test")
    with open_dataset(tmp_path / "f.h5") as ds:
        stored = highlight_features(ds, "v", load_highlight_models(made["checkpoints"][1:], "cpu"))
    written = write_report(str(tmp_path / "stored"), stored, {})
    assert sorted(p.rsplit("/", 1)[1] for p in written) == ["figure2.png", "figure3.png", "report.html",
                                                            "timeline.png"]
    page = (tmp_path / "stored" / "report.html").read_text(encoding="utf-8")
    assert "id='no-player'" in page and "without their video" in page
    assert "<video" not in page and "<script" not in page and "data-seek" not in page
    assert "<svg" in page
    assert "<table class='moments'>" in page or "no moment is highlighted" in page
    # a video that cannot be copied: the page says why, in a visible line, and the caller hears it
    (tmp_path / "gone.mp4").write_text("not a video")
    broken = dataclasses.replace(made["h"], video=dataclasses.replace(made["h"].video,
                                                                       path=str(tmp_path / "gone.mp4")))
    heard = []
    broken.write_report(str(tmp_path / "broken"), warn=heard.append)
    page = (tmp_path / "broken" / "report.html").read_text(encoding="utf-8")
    line = re.search(r"<p class='warn' id='no-player'>(.*?)</p>", page).group(1)
    assert "could not be made playable" in line and "gone.mp4" in line and len(heard) == 1
    assert "<video" not in page and "<script" not in page and not (tmp_path / "broken" / "video.mp4").exists()


def test_embedded_json_cannot_end_its_script_element():
    readings = [Reading("c3d_fc6", "vgg_obj_fc8", 48, 3, 1)]
    rng = np.random.default_rng(1)
    names = ["</script><script>alert(1)</script>", "<!--", "a & b", "</SCRIPT >"]
    windows = [WindowResult(s, np.array([0.4, 0.3, 0.2, 0.1]), [(s + 16 * np.arange(3),
                                                                   rng.dirichlet(np.ones(3), size=3))])
               for s in plan_windows(96, 48).tolist()]
    models = [one_model()]
    h = summarize(windows, readings, names, np.arange(96) / 25.0, 96,
                  video=HighlightedVideo("/v/</script>.mp4", 25.0, 64, 48, 0), models=models)
    page = render_html(h, {}, player=PlayerSources("video.mp4", 64, 48))
    assert page.lower().count("</script") == 2                   # the JSON's element and the player's
    assert embedded(page) == h.to_json()


# ---------------------------------------------------------------------------------------------------
# in the browser


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = find_chromium()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000",
                 "--host-resolver-rules=MAP * ~NOTFOUND", "--disable-background-networking",
                 "--hide-scrollbars", "--mute-audio"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def wait(driver, script, timeout=15.0):
    """Run ``script`` (a JS expression) until it is truthy; its value."""
    end = time.monotonic() + timeout
    while True:
        value = driver.execute_script(f"return {script};")
        if value or time.monotonic() > end:
            assert value, f"timed out waiting for {script}"
            return value
        time.sleep(0.05)


def settled_time(driver) -> float:
    """The player's currentTime once its seek is done."""
    wait(driver, "(function(v){return v.readyState >= 1 && !v.seeking;})"
                 "(document.querySelector('video[data-player]'))")
    return driver.execute_script("return document.querySelector('video[data-player]').currentTime;")


def expected_window(data: dict, t: float) -> dict:
    """highlights.json's window under the playhead at t (the rule of player.window_at)."""
    def key(w):
        inside = w["start_time"] <= t < w["end_time"]
        outside = 0.0 if inside else min(abs(t - w["start_time"]), abs(t - w["end_time"]))
        return (not inside, outside, abs(t - (w["start_time"] + w["end_time"]) / 2), w["index"])

    return min(data["windows"], key=key)


def shown_window(driver) -> tuple[int, list[tuple[int, int, float]]]:
    """The panel's window index and its cells (model, frame, weight)."""
    index = driver.execute_script(
        "return document.getElementById('window-panel').getAttribute('data-window');")
    cells = driver.execute_script(
        "return Array.from(document.querySelectorAll('#window-panel a.cell')).map(function (c) {"
        "return ['data-model', 'data-frame', 'data-weight'].map(function (a) {"
        "return c.getAttribute(a);});});")
    return int(index), [(int(m), int(f), float(w)) for m, f, w in cells]


def check_panel(driver, data: dict, t: float) -> None:
    window = expected_window(data, t)
    index, cells = shown_window(driver)
    assert index == window["index"], (t, index, window["index"])
    expected = [(m, f, w) for m, a in enumerate(window["attention"]) if a is not None
                for f, w in zip(a["frames"], a["frame_weights"], strict=True)]
    assert cells == expected
    rows = driver.execute_script("return document.querySelectorAll('#window-panel .row').length;")
    assert rows == len(data["models"])


@needs_browser
def test_player_seeks_steps_and_shows_the_window_under_the_playhead(made, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    out, h = made["out"], made["h"]
    data = json.loads((out / "highlights.json").read_text())
    period = 1.0 / FPS
    browser.get((out / "report.html").as_uri())
    browser.get_log("browser")                                     # from here on: this page's messages
    player = "document.querySelector('video[data-player]')"
    wait(browser, f"{player}.readyState >= 1")
    # its duration is the video's (the source's frames at its rate, and the JSON's), within a frame
    duration = browser.execute_script(f"return {player}.duration;")
    assert abs(duration - FRAMES / FPS) <= period and abs(duration - data["duration"]) <= period
    assert browser.execute_script(f"return {player}.videoWidth;") == 64
    check_panel(browser, data, 0.0)

    timeline = browser.find_element(By.CSS_SELECTOR, "[data-timeline]")
    box = timeline.rect
    for x in (0.37, 0.83, 0.055):
        dx = round(x * box["width"] - box["width"] / 2)
        dy = round(0.4 * box["height"])                       # the axis band: no moment's badge there
        ActionChains(browser).move_to_element_with_offset(timeline, dx, dy).click().perform()
        t = settled_time(browser)
        assert abs(t - x * data["duration"]) <= period, (x, t)
        check_panel(browser, data, t)
        assert window_at(h, t).index == expected_window(data, t)["index"]

    # moment 1, in the table and on the timeline: its start
    first = data["moments"][0]
    for selector in ("tr[data-moment='1']", "svg g[data-moment='1']"):
        browser.find_element(By.CSS_SELECTOR, "[data-timeline]").click()          # somewhere else first
        browser.find_element(By.CSS_SELECTOR, selector).click()
        t = settled_time(browser)
        assert abs(t - first["start_time"]) <= period / 2, (selector, t)
        check_panel(browser, data, t)

    # a thumbnail of Figure 2 and a frame of the panel seek to their frames
    hot = browser.find_element(By.CSS_SELECTOR, "[data-figure='figure2'] a.hot")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", hot)
    hot.click()
    assert abs(settled_time(browser) - float(hot.get_attribute("data-seek"))) <= 1e-3
    browser.execute_script("window.scrollTo(0, 0);")
    cell = browser.find_elements(By.CSS_SELECTOR, "#window-panel a.cell")[-1]
    target = float(cell.get_attribute("data-seek"))
    cell.click()
    assert abs(settled_time(browser) - target) <= 1e-3
    check_panel(browser, data, target)

    # keys: → and ← step one attended frame (of any model); space plays and pauses, once per press
    steps = sorted({t for curve in data["frames"] for t in curve["times"]})
    now = settled_time(browser)
    body = browser.find_element(By.TAG_NAME, "body")
    ActionChains(browser).send_keys(Keys.ARROW_RIGHT).perform()
    after = settled_time(browser)
    assert after == pytest.approx(min(s for s in steps if s > now + 1e-3), abs=1e-3)
    ActionChains(browser).send_keys(Keys.ARROW_LEFT).perform()
    assert settled_time(browser) == pytest.approx(max(s for s in steps if s < after - 1e-3), abs=1e-3)
    check_panel(browser, data, settled_time(browser))
    assert browser.execute_script(f"return {player}.paused;")
    body.send_keys(Keys.SPACE)
    wait(browser, f"!{player}.paused")
    browser.execute_script(f"{player}.focus();")                     # the native controls have focus
    ActionChains(browser).send_keys(Keys.SPACE).perform()
    wait(browser, f"{player}.paused")
    assert browser.execute_script("return window.scrollY;") == 0      # space did not scroll the page

    # the clip, the second source: the playhead follows its frames in the video's time
    browser.find_element(By.CSS_SELECTOR, "[data-source='clip']").click()
    wait(browser, f"{player}.src.endsWith('clip.mp4') && {player}.readyState >= 1")
    clip_frames = sum(m["end_frame"] - m["start_frame"] for m in data["moments"])
    assert abs(browser.execute_script(f"return {player}.duration;") - clip_frames / FPS) <= period
    browser.find_element(By.CSS_SELECTOR, "[data-timeline]").click()   # a seek returns to the whole video
    wait(browser, f"{player}.src.endsWith('video.mp4') && {player}.readyState >= 1 && !{player}.seeking && "
                  f"Math.abs({player}.currentTime - {data['duration'] / 2}) <= {period}")
    check_panel(browser, data, settled_time(browser))

    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors
    shot = tmp_path / "player.png"
    browser.execute_script("window.scrollTo(0, 0);")
    browser.save_screenshot(str(shot))
    print(f"screenshot of the player: {shot}")
    assert shot.stat().st_size > 10_000


@needs_browser
def test_player_page_requests_nothing_from_the_network(made, tmp_path):
    shot = render(made["out"] / "report.html", tmp_path / "page.png", 1200, 900, tmp_path)
    assert shot.page_requests == []


# ---------------------------------------------------------------------------------------------------
# size: the page grows at most linearly with the video, the timeline not at all


def paper_highlights(minutes: float, fps: float = 30.0, models: int = 1, seed: int = 0):
    """`summarize` of a video of ``minutes`` at ``fps``, read by the paper's models (F = 192, N = 12,
    T = 24 every 8 frames), with random attention and scores (101 classes, 5 listed)."""
    rng = np.random.default_rng(seed)
    num_frames = int(minutes * 60 * fps)
    readings = [Reading("c3d_fc6", "vgg_obj_fc8", 192, 12, 2)] * models
    windows = [WindowResult(s, rng.dirichlet(np.ones(101)),
                            [(s + 8 * np.arange(24), rng.dirichlet(np.full(24, 0.5), size=12))] * models)
               for s in plan_windows(num_frames, 192).tolist()]
    info = [one_model(192, 12, 2)] * models
    return summarize(windows, readings, [f"class {c}" for c in range(101)], np.arange(num_frames) / fps,
                     num_frames, video=HighlightedVideo("/v/long.mp4", fps, 480, 270, 0), models=info)


@pytest.mark.parametrize("models", [1, 2])
def test_timeline_is_thinned_and_the_page_grows_linearly_within_its_budget(models):
    from reproduce.highlighting.report import (
        PAGE_BYTES_FIGURES_PER_MODEL,
        PAGE_BYTES_FIXED,
        PAGE_BYTES_PER_MODEL_10_MINUTES,
        page_budget,
    )

    sizes = {}
    for minutes in (10, 20):
        h = paper_highlights(minutes, models=models)
        svg = timeline_svg(h)
        paths = re.findall(r"<path class='[a-z-]+'[^>]* d='([^']*)'", svg)
        assert len(paths) == models + (models > 1) + len(h.top_classes)
        for path in paths:
            assert len(re.findall(r"[MHV]", path)) <= (POINTS_PER_COLUMN + 1) * WIDTH
        assert len(svg) < 40_000 * (models + 1)
        sizes[minutes] = len(render_html(h, {}, player=PlayerSources("video.mp4", 480, 270)).encode())
    per_10_minutes = PAGE_BYTES_PER_MODEL_10_MINUTES * models
    assert sizes[20] - sizes[10] <= per_10_minutes, sizes             # linear, within its slope
    assert sizes[10] <= PAGE_BYTES_FIXED + per_10_minutes, sizes      # (no figures here)
    assert page_budget(models, 18_000) == PAGE_BYTES_FIXED + models * (PAGE_BYTES_FIGURES_PER_MODEL
                                                                      + PAGE_BYTES_PER_MODEL_10_MINUTES)


# ---------------------------------------------------------------------------------------------------
# two faults that pass every other fast test


def _two_runs(gap: int):
    """Windows whose attention makes two runs of hot cells (density ≥ 1.2) separated by two cold
    cells: cells {1, 2} and {5, 6} of 16 frames, over a 192-frame video (4 windows of 48, T = 3)."""
    weights = [[0.1, 0.45, 0.45], [0.25, 0.25, 0.5], [0.5, 0.25, 0.25], [1 / 3, 1 / 3, 1 / 3]]
    readings = [Reading("c3d_fc6", "vgg_obj_fc8", 48, 3, 1)]
    windows = [WindowResult(s, np.array([0.7, 0.1, 0.1, 0.1]), [(s + 16 * np.arange(3), np.tile(w, (3, 1)))])
               for s, w in zip(plan_windows(192, 48).tolist(), weights, strict=True)]
    return summarize(windows, readings, CLASSES, np.arange(192) / 24.0, 192,
                     video=HighlightedVideo("v", 24.0), models=[one_model()],
                     settings=HighlightSettings(threshold=1.2, merge_gap_cells=gap))


@pytest.mark.parametrize("gap", [0, 1, 2, 3])
def test_merge_gap_merges_moments_closer_than_the_gap(gap):
    h = _two_runs(gap)
    spans = sorted((m.start_frame, m.end_frame) for m in h.moments)
    assert h.to_json()["settings"]["merge_gap_cells"] == gap
    if gap < 2:
        assert spans == [(16, 48), (80, 112)]
    else:                                   # two cold cells apart: one moment over both runs
        assert spans == [(16, 112)]
        (moment,) = h.moments
        assert moment.peak_density == pytest.approx(1.5) and moment.start_time == pytest.approx(16 / 24)


def test_each_models_curve_is_its_own_in_an_ensemble(made):
    """A vanilla LSTM first, then two attention models (T = 3 every 16 frames, T = 6 every 8): each
    curve of the ensemble names its model and equals that model's curve highlighted alone, and the
    report labels and colours it as that model."""
    h, alone = made["h"], made["alone"]
    data = h.to_json()
    assert [c["model"] for c in data["frames"]] == [1, 2]
    for curve in data["frames"]:
        m = curve["model"]
        single = alone[m].to_json()["frames"][0]
        assert curve["cell_frames"] == single["cell_frames"] == (16 if m == 1 else 8)
        assert curve["frames"] == single["frames"]
        np.testing.assert_allclose(curve["weights"], single["weights"], atol=1e-6)
        # and the per-window weights it averages are that model's
        per_frame: dict[int, list[float]] = {}
        for window in data["windows"]:
            assert window["attention"][0] is None
            item = window["attention"][m]
            assert item["model"] == m
            for f, w in zip(item["frames"], item["frame_weights"], strict=True):
                per_frame.setdefault(f, []).append(w)
        np.testing.assert_allclose(curve["weights"], [np.mean(per_frame[f]) for f in curve["frames"]],
                                   atol=1e-6)
    a, b = (np.asarray(c["weights"]) for c in data["frames"])
    assert not np.allclose(a[: len(a)], b[::2][: len(a)], atol=1e-3)      # the two models differ
    labels = [row.label for row in figure2_selection(h)]
    assert labels == [h.models[1].label, h.models[2].label] == [model_label("c3d_fc6", "vgg_obj_fc8")] * 2
    svg = timeline_svg(h)
    assert re.findall(r"<path class='density' data-model='(\d)'", svg) == ["1", "2"]


def test_merge_gap_reaches_the_moments_end_to_end(made):
    """Through highlight_video: the gap between the two closest runs of hot cells (density ≥ the
    threshold on the ensemble's timeline) joins them into one moment."""
    hot = np.flatnonzero(np.nan_to_num(made["h"].timeline.density, nan=-1.0) >= 1.0)
    runs = lambda g: len(np.split(hot, np.flatnonzero(np.diff(hot) > g + 1) + 1))  # noqa: E731
    gaps = np.diff(hot) - 1
    assert np.any(gaps > 0), "the video has at least two runs of hot cells"
    gap = int(gaps[gaps > 0].min())                      # cold cells between the two closest runs
    assert runs(gap) < runs(gap - 1) <= runs(0)
    with pytest.MonkeyPatch.context() as patch:
        use_small_networks(patch, SMALL_C3D, SMALL_VGG)
        merged = run_highlight(made["root"] / "match.mp4", made["checkpoints"], threshold=1.0, moments=100,
                               merge_gap_cells=gap)
    assert merged.settings.merge_gap_cells == gap and len(merged.moments) == runs(gap)
