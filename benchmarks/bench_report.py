"""The highlight report of a long video: its size against the budget, and its load time in a browser.

A 30-minute video (its real length) is generated at low resolution (64×48, ``--fps`` frames/s, 30 by
default, H.264); its highlights come from ``reproduce.highlighting.results.summarize`` with the paper's
windows (F = 192, N = 12, T = 24 attended frames every 8 frames, 101 classes) and random attention and
scores (the networks are not what is measured), for one model and for an ensemble of three; the
thumbnails of the figures are the video's own frames. Then, per ensemble size:

1. ``write_report`` with the video: the browser copy (``video.mp4``) and the page, timed;
2. bytes: the page against its budget (``reproduce.highlighting.report.page_budget``: a fixed part,
   the figures of each model, and 500 kB per model per 18,000 frames) and the copy against its own
   (MAX_KBITS × duration + the 2 s VBV buffer, + 20 bytes a frame of MP4 index);
3. load time in headless Chromium (selenium, from disk, network off): seconds from the navigation to
   a ready player (the page loaded, the video's metadata read, the window panel drawn), first load and
   median of ``--loads`` reloads, and the browser's own load-event time. Target: < 2 s.

Usage: ``python benchmarks/bench_report.py [--quick] [--minutes M] [--fps F] [--loads K] [--out FILE]
[--workdir DIR]``; writes ``benchmarks/results/report.json`` and prints a table. ``--quick``: a 3-minute
video, one model. Numbers from a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

from reproduce.highlighting.browser_video import BUFFER_SECONDS, MAX_KBITS  # noqa: E402
from reproduce.highlighting.figures import model_label, report_frames  # noqa: E402
from reproduce.highlighting.report import page_budget, write_report  # noqa: E402
from reproduce.highlighting.results import HighlightedVideo, ModelInfo, summarize  # noqa: E402
from reproduce.highlighting.windows import Reading, WindowResult, plan_windows  # noqa: E402

LOAD_TARGET_S = 2.0
WIDTH, HEIGHT = 64, 48
F, N, PER_STEP, STRIDE = 192, 12, 2, 8          # the paper's windows: T = 24 frames every 8
CLASSES = 101


def write_video(path: Path, frames: int, fps: int) -> float:
    """A moving square over a slowly changing gradient, H.264; returns the seconds it took."""
    import av

    start = time.perf_counter()
    y = np.linspace(0, 1, HEIGHT)[:, None, None]
    x = np.linspace(0, 1, WIDTH)[None, :, None]
    with av.open(str(path), "w", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"crf": "26", "preset": "ultrafast"}
        for t in range(frames):
            phase = t / (fps * 60.0)
            colour = 0.5 + 0.5 * np.sin(2 * np.pi * (phase + np.array([0.0, 0.33, 0.66])))
            image = 60 + 120 * colour * (y + x) / 2
            image = np.broadcast_to(image, (HEIGHT, WIDTH, 3)).copy()
            top, left = (t * 2) % (HEIGHT - 12), t % (WIDTH - 12)
            image[top:top + 12, left:left + 12] = (230, 220, 40)
            frame = av.VideoFrame.from_ndarray(image.astype(np.uint8), format="rgb24")
            frame.pts = t
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return time.perf_counter() - start


def highlights_of(path: Path, frames: int, fps: int, models: int, seed: int = 0):
    """`summarize` of the video read by ``models`` paper-sized models, random attention and scores."""
    rng = np.random.default_rng(seed)
    readings = [Reading("c3d_fc6", "vgg_obj_fc8", F, N, PER_STEP)] * models
    windows = []
    for s in plan_windows(frames, F).tolist():
        attention = [(s + STRIDE * np.arange(N * PER_STEP), rng.dirichlet(np.full(N * PER_STEP, 0.5), size=N))
                     for _ in range(models)]
        windows.append(WindowResult(s, rng.dirichlet(np.ones(CLASSES)), attention))
    info = [ModelInfo(f"model{m}.pt", model_label("c3d_fc6", "vgg_obj_fc8"), "c3d_fc6", "vgg_obj_fc8", F, N,
                      PER_STEP, "a") for m in range(models)]
    video = HighlightedVideo(str(path), float(fps), WIDTH, HEIGHT, 0)
    return summarize(windows, readings, [f"class {c}" for c in range(CLASSES)], np.arange(frames) / fps,
                     frames, video=video, models=info)


def thumbnails(path: Path, frames: set[int]) -> dict[int, np.ndarray]:
    """The video's own frames for the figures, as the pipeline keeps them (JPEG thumbnails)."""
    import io

    from PIL import Image

    from caffe_models.video import VideoReader
    from reproduce.highlighting.thumbnails import jpeg_thumbnail

    out = {}
    with VideoReader(path) as reader:
        for chunk in reader.chunks():
            for i, frame in enumerate(chunk.frames):
                if chunk.start + i in frames:
                    data = jpeg_thumbnail(frame)
                    out[chunk.start + i] = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return out


def browser():
    """Headless Chromium through selenium (network off), or the reason it cannot run."""
    names = ("chromium", "chromium-browser", "google-chrome")
    chromium = next((shutil.which(n) for n in names if shutil.which(n)), None)
    driver_path = shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None, "selenium is not installed (pip install -e '.[test]')"
    if chromium is None or driver_path is None:
        return None, "no chromium / chromedriver"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000",
                 "--host-resolver-rules=MAP * ~NOTFOUND", "--disable-background-networking", "--mute-audio"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(driver_path)), None


READY = ("var v = document.querySelector('video[data-player]');"
         "var p = document.getElementById('window-panel');"
         "return !!(v && v.readyState >= 1 && p && p.getAttribute('data-window') !== null && "
         "p.querySelectorAll('a.cell').length > 0);")


def load_times(driver, page: Path, loads: int) -> dict:
    """Seconds from navigation to a ready player, per load (the first one, then reloads)."""
    ready, load_event = [], []
    for _ in range(loads):
        driver.get("about:blank")
        start = time.perf_counter()
        driver.get(page.as_uri())                                   # returns at the load event
        while not driver.execute_script(READY):
            if time.perf_counter() - start > 60:
                raise RuntimeError(f"{page}: the player was not ready after 60 s")
            time.sleep(0.01)
        ready.append(time.perf_counter() - start)
        load_event.append(driver.execute_script(
            "var n = performance.getEntriesByType('navigation')[0]; return n.loadEventEnd / 1000;"))
    errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    return {"ready_s": ready, "first_ready_s": ready[0], "median_ready_s": _common.median(ready),
            "load_event_s": load_event, "console_errors": errors}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 3-minute video, one model (a smoke run)")
    parser.add_argument("--minutes", type=float, default=None, help="video length (default 30; --quick 3)")
    parser.add_argument("--fps", type=int, default=30, help="frames per second of the video (default 30)")
    parser.add_argument("--loads", type=int, default=5, help="page loads timed per report (default 5)")
    parser.add_argument("--out", type=Path, default=_common.RESULTS_DIR / "report.json")
    parser.add_argument("--workdir", type=Path, default=None, help="where the video and reports go "
                        "(default: a temporary folder, removed)")
    args = parser.parse_args(argv)
    minutes = args.minutes or (3.0 if args.quick else 30.0)
    ensembles = (1,) if args.quick else (1, 3)
    frames = int(round(minutes * 60 * args.fps))
    tmp = None if args.workdir else tempfile.TemporaryDirectory(prefix="bench_report_")
    work = args.workdir or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    driver, why = browser()
    rows = []
    try:
        video = work / "long.mp4"
        print(f"writing a {minutes:g}-minute video ({frames} frames of {WIDTH}x{HEIGHT}) ...",
              file=sys.stderr, flush=True)
        generate_s = write_video(video, frames, args.fps)
        video_bytes = video.stat().st_size
        duration = frames / args.fps
        for models in ensembles:
            h = highlights_of(video, frames, args.fps, models)
            thumbs = thumbnails(video, report_frames(h))
            out = work / f"report_{models}"
            print(f"report of {models} model(s) ...", file=sys.stderr, flush=True)
            start = time.perf_counter()
            written = write_report(str(out), h, thumbs, video=str(video))
            report_s = time.perf_counter() - start
            page_bytes = (out / "report.html").stat().st_size
            copy_bytes = (out / "video.mp4").stat().st_size
            copy_budget = MAX_KBITS * 1000 / 8 * (duration + BUFFER_SECONDS) + 20 * frames
            loads = load_times(driver, out / "report.html", args.loads) if driver else None
            rows.append({
                "models": models, "report_s": report_s, "files": sorted(Path(p).name for p in written),
                "page_bytes": page_bytes, "page_budget_bytes": page_budget(models, frames),
                "page_bytes_per_10_minutes": page_bytes / (duration / 600),
                "copy_bytes": copy_bytes, "copy_budget_bytes": int(copy_budget),
                "copy_kbit_per_s": copy_bytes * 8 / 1000 / duration,
                "load": loads,
            })
    finally:
        if driver is not None:
            driver.quit()
        if tmp is not None:
            tmp.cleanup()
    loads_ok = None if driver is None else all(r["load"]["median_ready_s"] < LOAD_TARGET_S for r in rows)
    sizes_ok = all(r["page_bytes"] <= r["page_budget_bytes"] and r["copy_bytes"] <= r["copy_budget_bytes"]
                   for r in rows)
    payload = {
        "benchmark": "report", "quick": args.quick, "machine": _common.machine_description(),
        "video": {"minutes": minutes, "fps": args.fps, "frames": frames, "width": WIDTH, "height": HEIGHT,
                  "bytes": video_bytes, "generate_s": generate_s},
        "windows": {"frames": F, "steps": N, "attended": N * PER_STEP, "attended_every": STRIDE,
                    "classes": CLASSES},
        "reports": rows,
        "browser": why or "headless Chromium through selenium, from disk, network off",
        "targets": {"load_ready_max_s": LOAD_TARGET_S, "page_and_copy_within_budget": True,
                    "met": bool(sizes_ok and (loads_ok is not False))},
        "note": "load: seconds from navigation to a ready player (page loaded, video metadata read, window "
                "panel drawn), first load and median of reloads; budgets: reproduce.highlighting.report's "
                "docstring; shared machine, noisy",
        "peak_rss": _common.peak_rss(),
    }
    _common.write_json(args.out, payload)
    table = [{"models": r["models"], "page_kb": r["page_bytes"] / 1e3,
              "page_budget_kb": r["page_budget_bytes"] / 1e3,
              "copy_mb": r["copy_bytes"] / 1e6, "copy_budget_mb": r["copy_budget_bytes"] / 1e6,
              "report_s": r["report_s"],
              "first_s": r["load"]["first_ready_s"] if r["load"] else None,
              "median_s": r["load"]["median_ready_s"] if r["load"] else None} for r in rows]
    print(_common.format_table(table, [
        ("models", "models", "d"), ("page_kb", "page kB", ".0f"), ("page_budget_kb", "budget kB", ".0f"),
        ("copy_mb", "copy MB", ".2f"), ("copy_budget_mb", "budget MB", ".1f"), ("report_s", "write s", ".1f"),
        ("first_s", "1st load s", ".2f"), ("median_s", "median load s", ".2f")]))
    verdict = "met" if payload["targets"]["met"] else "NOT met"
    print(f"{minutes:g}-minute video at {args.fps} frames/s; targets (load < {LOAD_TARGET_S:g} s, page and "
          f"copy within budget): {verdict}" + (f" ({why})" if why else "") + f"; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
