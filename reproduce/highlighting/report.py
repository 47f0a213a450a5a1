"""The highlight report: ``report.html`` with its player, its PNG figures and the video it plays.

The page, from the top (docs/paper.md §7):
- the player (`reproduce.highlighting.player`): the video (a browser copy, `browser_video`) with, under
  it, a timeline the page draws as inline SVG (`timeline_svg`: each model's attention density, the top
  classes' scores per window, the moments shaded and numbered, a playhead that follows the video) and,
  beside it, the window under the playhead: per model, its attended frames, their brightness and bar
  following their weights (the paper's Figure 3 for that window). A click on the timeline, on a moment
  or on any thumbnail seeks there; space plays and pauses, the arrow keys step one attended frame. With
  a highlight clip (``alstm highlight --clip``) the player offers it as a second source;
- the top classes; the timeline PNG with the moments' table;
- the paper's Figures 2 and 3 (`reproduce.highlighting.figures`).

The folder is self-contained and opens from disk: the figures are PNG data URIs (also written beside
the page as files), the style and the script are inline, and nothing is fetched (no CDN, no font, no
URL); the only other files the page reads are the video copy (``video.mp4``) and the clip beside it.
It reads without scripts too: the figures, the SVG timeline and the moments' table are plain HTML, and
the video plays with the browser's own controls. The data the script needs is `Highlights.to_json()`
itself (highlights.json's schema), embedded in a ``<script type="application/json">`` element.

Highlights without their video (`reproduce.highlighting.pipeline.highlight_features`, from stored
features) give a page without a player or script, that says so; a video the copy cannot be made of
gives the same page with a visible line saying why.

Size budget, bounded for long videos: the page grows linearly with the video's frames and the copy with
its duration; nothing else grows with the video (`page_budget`).
- page: at most ``PAGE_BYTES_FIXED`` (200 kB: style, script, the timeline PNG, and the timeline SVG,
  whose curves are thinned to at most 4 points per column of its 1000), plus per model with attention
  ``PAGE_BYTES_FIGURES_PER_MODEL`` (600 kB: its rows of Figures 2 and 3, PNGs of a fixed pixel size,
  inlined) and ``PAGE_BYTES_PER_MODEL_10_MINUTES`` (500 kB) per 10 minutes of video at 30 frames/s
  (18,000 frames: the embedded JSON, ~2.6 kB per window of the paper's F = 192, N = 12, T = 24).
  One model: ≤ 0.8 MB + 0.5 MB per 10 minutes; measured (benchmarks/bench_report.py): 0.9 MB for 10
  minutes, 1.9 MB for 30;
- copy: H.264 at most 480 pixels wide, capped at 500 kbit/s: at most 38 MB per 10 minutes.

"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np

from alstm_core.atomic import write_bytes
from reproduce.errors import ReproduceError, python_warning
from reproduce.highlighting.browser_video import CLIP_NAME, COPY_NAME, write_browser_copy
from reproduce.highlighting.figures import (
    BRIGHTNESS_FLOOR,
    HotArea,
    figure2_selection,
    figure3_selection,
    render_figure2,
    render_figure3,
    render_timeline,
)
from reproduce.highlighting.player import PLAYER_CSS, embedded_json, player_html, player_script
from reproduce.highlighting.results import Highlights
from reproduce.highlighting.timeline_svg import CSS as TIMELINE_CSS
from reproduce.highlighting.timeline_svg import WIDTH as SVG_WIDTH
from reproduce.highlighting.timeline_svg import timeline_legend, timeline_svg

# The page's size budget (see the module docstring): a fixed part, the figures of each model with
# attention, and per such model the growth per 10 minutes of video at 30 frames/s (18,000 frames; the
# paper's windows: F = 192, N = 12, T = 24).
PAGE_BYTES_FIXED = 200_000
PAGE_BYTES_FIGURES_PER_MODEL = 600_000
PAGE_BYTES_PER_MODEL_10_MINUTES = 500_000


def page_budget(models: int, frames: int) -> int:
    """The most bytes report.html may take for ``models`` models with attention and ``frames`` frames."""
    return int(PAGE_BYTES_FIXED + models * (PAGE_BYTES_FIGURES_PER_MODEL
                                            + PAGE_BYTES_PER_MODEL_10_MINUTES * frames / 18_000))




def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


STYLE = """
body { font-family: sans-serif; margin: 24px auto; max-width: 1180px; color: #222; background: #fff;
  padding: 0 12px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; }
.meta { color: #555; font-size: 13px; }
.warn { background: #fff3cd; border: 1px solid #e0c060; padding: 8px 12px; font-size: 14px; }
table { border-collapse: collapse; font-size: 14px; }
td, th { padding: 4px 10px; text-align: left; border-bottom: 1px solid #e4e4e4; }
.bar { display: inline-block; height: 12px; background: #3b6fb6; vertical-align: middle; }
img.figure { max-width: 100%; border: 1px solid #e4e4e4; }
p.note, div.note { font-size: 13px; color: #555; max-width: 900px; }
"""


class PlayerSources(NamedTuple):
    """What the player plays, relative to the page: the browser copy (its size) and the clip (or None)."""

    video: str
    width: int
    height: int
    clip: str | None = None


def _figure(name: str, alt: str, png: bytes, areas: Sequence[HotArea], player: PlayerSources | None) -> str:
    """A figure PNG, inlined; with a player, each thumbnail is a link that seeks there."""
    image = f"<img class='figure' alt='{alt}' src='{_data_uri(png)}'>"
    if player is None or not areas:
        return image
    links = "".join(
        f"<a class='hot' data-seek='{a.time:.6f}' href='{html.escape(player.video, quote=True)}"
        f"#t={a.time:.3f}' "
        f"title='frame {a.frame} · {a.time:.2f} s' style='left:{a.left:.2f}%;top:{a.top:.2f}%;"
        f"width:{a.width:.2f}%;height:{a.height:.2f}%'></a>" for a in areas)
    return f"<div class='figure-box' data-figure='{name}'>{image}{links}</div>"


def render_html(highlights: Highlights, images: Mapping[str, bytes], *, player: PlayerSources | None = None,
                areas: Mapping[str, Sequence[HotArea]] | None = None, no_player: str | None = None,
                no_player_warns: bool = False) -> str:
    """The page: ``images`` maps figure names (figure2, figure3, timeline) to PNG bytes, inlined.

    ``player``: the page plays the video (see `reproduce.highlighting.player`); ``areas``: the
    figures' thumbnails ({figure name: [HotArea]}) that seek. Without a player, ``no_player`` says why
    (a visible line; ``no_player_warns``: in the warning style) and the page has no script."""
    esc = html.escape
    areas = areas or {}
    video = highlights.video
    name = esc(os.path.basename(video.path))
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             "<meta name='viewport' content='width=device-width, initial-scale=1'>"
             "<link rel='icon' href='data:,'>"
             f"<title>Highlights: {name}</title><style>{STYLE}{TIMELINE_CSS}{PLAYER_CSS if player else ''}"
             "</style>"
             "</head><body>",
             f"<h1>{name}</h1>",
             f"<div class='meta'>{highlights.num_frames} frames, {video.fps:.3g} frames/s, "
             f"{highlights.duration:.2f} s; {len(highlights.windows)} windows of "
             f"{highlights.window_frames} frames; models: "
             + ", ".join(esc(m.label) for m in highlights.models) + "</div>"]
    if highlights.random_weights:
        parts.append(f"<p class='warn'>The features of {esc(', '.join(highlights.random_weights))} were "
                     "computed with random weights: classes and attention are not meaningful.</p>")
    if player is not None:
        parts.append(player_html(highlights, player.video, player.width, player.height, player.clip))
    elif no_player:
        style = "warn" if no_player_warns else "note"
        parts.append(f"<p class='{style}' id='no-player'>{esc(no_player)}</p>")
    parts.append(f"<div class='timeline-box'>{timeline_svg(highlights, interactive=player is not None)}</div>"
                 + timeline_legend(highlights))
    parts.append("<h2>Top classes</h2><table><tr><th>class</th><th>score</th><th></th></tr>")
    for item in highlights.top_classes:
        width = max(1, round(300 * item.score))
        parts.append(f"<tr><td>{esc(item.name)}</td><td>{item.score:.3f}</td>"
                     f"<td><span class='bar' style='width:{width}px'></span></td></tr>")
    parts.append("</table>")
    if "timeline" in images:
        parts.append("<h2>Attention over the video</h2>"
                     f"<img class='figure' alt='attention timeline' src='{_data_uri(images['timeline'])}'>"
                     "<p class='note'>Attention density: an attended frame's weight times the number T of "
                     "frames a window attends to, averaged over the steps and windows reading it (1 is "
                     "uniform attention). Shaded: the highlighted moments.</p>")
        parts.append(_moments_table(highlights, player))
    if "figure2" in images:
        parts.append("<h2>Frames of highest and lowest attention</h2>"
                     + _figure("figure2", "highest and lowest attention", images["figure2"],
                               areas.get("figure2", ()), player))
    if "figure3" in images:
        parts.append("<h2>Attention on the frames of one window</h2>"
                     + _figure("figure3", "attention strip", images["figure3"], areas.get("figure3", ()),
                               player)
                     + "<p class='note'>Brightness follows the attention weight (relative to the row's "
                     f"largest; a weight of 0 keeps {BRIGHTNESS_FLOOR:.0%} of the brightness); the "
                     "number under each frame is its weight averaged over the window's steps.</p>")
    if "timeline" not in images:
        parts.append("<p class='note'>These models have no attention (vanilla LSTM): no frame is "
                     "highlighted.</p>")
    if player is not None:
        parts.append(embedded_json(highlights))
        parts.append(player_script(BRIGHTNESS_FLOOR, SVG_WIDTH))
    parts.append("</body></html>")
    return "\n".join(parts)


def _moments_table(highlights: Highlights, player: PlayerSources | None = None) -> str:
    if not highlights.moments:
        return (f"<p class='note'>No frame reached {highlights.settings.threshold:g} times the uniform "
                "attention: no moment is highlighted.</p>")
    rows = ["<table class='moments'><tr><th>#</th><th>from (s)</th><th>to (s)</th><th>frames</th>"
            "<th>peak (×T)</th></tr>"]
    for m in highlights.moments:
        rank, row = str(m.rank), "<tr>"
        if player is not None:
            href = html.escape(player.video, quote=True) + f"#t={m.start_time:.3f},{m.end_time:.3f}"
            rank = f"<a href='{href}' data-seek='{m.start_time:.6f}'>{m.rank}</a>"
            row = f"<tr data-moment='{m.rank}' data-seek='{m.start_time:.6f}'>"
        rows.append(f"{row}<td>{rank}</td><td>{m.start_time:.2f}</td><td>{m.end_time:.2f}</td>"
                    f"<td>{m.start_frame}–{m.end_frame - 1}</td><td>{m.peak_density:.2f}</td></tr>")
    rows.append("</table>")
    return "".join(rows)


NO_VIDEO = ("No player: these highlights come without their video (e.g. from stored features), so the "
            "page shows the figures only.")


def _inside(path: str, folder: str) -> str | None:
    """``path`` relative to ``folder`` when it lies inside it, else None."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(folder))
    return None if rel == os.pardir or rel.startswith(os.pardir + os.sep) else rel.replace(os.sep, "/")


def write_report(out_dir: str, highlights: Highlights, thumbnails: Mapping[int, np.ndarray], *, k: int = 4,
                 columns: int = 12, video: str | None = None, clip: str | None = None,
                 warn: Callable[[str], None] | None = None, progress: bool = False) -> list[str]:
    """Write report.html and figure2.png, figure3.png, timeline.png (those that apply) into ``out_dir``,
    each atomically; return their paths. ``thumbnails``: {frame: (h, w, 3) uint8} for ``report_frames``.

    ``video``: the highlighted video's file: its browser copy (`COPY_NAME`) is written too and the page
    plays it; when the copy cannot be made the page says why (``warn`` hears it too; default:
    `warnings.warn`) and has no player. ``clip``: the highlight clip (``alstm highlight --clip``), the
    player's second source: used in place when it is an .mp4 inside ``out_dir``, else copied there
    (`CLIP_NAME`) as the video is. No ``video``: a page without a player, that says so."""
    warn = warn or python_warning
    os.makedirs(out_dir, exist_ok=True)
    written, player, no_player, warns = [], None, NO_VIDEO, False
    if video is not None:
        copy_path = os.path.join(out_dir, COPY_NAME)
        if clip is not None and os.path.abspath(clip) == os.path.abspath(copy_path):
            raise ReproduceError(f"the clip {clip} would be overwritten by the report's video copy: write it "
                                 f"elsewhere than {COPY_NAME} in the report's folder")
        try:
            copy = write_browser_copy(video, copy_path, progress=progress)
            written.append(copy.path)
            player = PlayerSources(COPY_NAME, copy.width, copy.height)
        except ReproduceError as exc:
            no_player, warns = (f"The video could not be made playable in a browser ({exc}), so this report "
                                "has no player; the figures below do not need it."), True
            warn(f"no player in the report: {exc}")
    if player is not None and clip is not None:
        inside = _inside(clip, out_dir)
        if inside is not None and clip.lower().endswith(".mp4"):
            player = player._replace(clip=inside)
        else:
            try:
                clip_copy = write_browser_copy(clip, os.path.join(out_dir, CLIP_NAME), progress=progress)
                written.append(clip_copy.path)
                player = player._replace(clip=CLIP_NAME)
            except ReproduceError as exc:
                warn(f"the report plays no highlight clip: {exc}")
    images: dict[str, bytes] = {}
    areas: dict[str, list[HotArea]] = {"figure2": [], "figure3": []}
    if highlights.frames:
        images["timeline"] = render_timeline(highlights)
        images["figure2"] = render_figure2(figure2_selection(highlights, k), thumbnails, areas["figure2"])
        images["figure3"] = render_figure3(figure3_selection(highlights, columns), thumbnails,
                                           areas["figure3"])
    for name, png in images.items():
        written.append(write_bytes(os.path.join(out_dir, f"{name}.png"), png))
    page = render_html(highlights, images, player=player, areas=areas, no_player=no_player,
                       no_player_warns=warns).encode("utf-8")
    written.append(write_bytes(os.path.join(out_dir, "report.html"), page))
    return written
