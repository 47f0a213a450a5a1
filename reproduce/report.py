"""The highlight report: ``report.html`` and its PNG figures, from a `Highlights` and thumbnails.

Three views, as in the paper (SPEC §7):
- Figure 2: per model, the attended frames of highest (green) and lowest (red) attention over the video;
- Figure 3: one window's attended frames (the window where the video's top class scores highest), one
  row per model (attended family), each frame's brightness following its weight normalised by the row's
  largest (``BRIGHTNESS_FLOOR`` + the rest in proportion), the weight printed under it;
- a timeline of the attention density (weight × T, 1 = uniform) over the whole video, the highlighted
  moments shaded and numbered.

The page is self-contained: the figures are PNG data URIs (also written beside it as files), the style
is inline, no script, font or URL is fetched. Figures use matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import base64
import html
import io
import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from alstm_core.storage import parse_source
from reproduce.atomic import write_bytes
from reproduce.highlights import Highlights
from reproduce.moments import extreme_frames, strip_columns

FAMILY_NAMES = {"vgg_obj": "Object", "vgg_sce": "Scene", "vgg_act": "Action", "c3d": "C3D"}
HIGH, LOW = "#1a9c3a", "#d62a2a"          # the paper's green and red frames
PLACEHOLDER = (96, 96, 96)
THUMBNAIL_WIDTH = 160                       # pixels; the report shows frames at most this wide
# Fig. 3 brightness = FLOOR + (1 − FLOOR) · weight / the row's largest weight: linear in the weight, with a
# floor that keeps frames of near-zero weight recognisable (the paper's darkest frames are still visible).
BRIGHTNESS_FLOOR = 0.15


def model_label(input_source: str, attended_source: str | None) -> str:
    """The paper's row names: "aLSTM-VGG_obj (fc8)", "aLSTM-C3D (fc8)", "LSTM-C3D (fc6)" (vanilla)."""
    if attended_source is None:
        return f"LSTM-{_network_name(input_source)}"
    return f"aLSTM-{_network_name(attended_source)}"


def _network_name(source: str) -> str:
    parsed = parse_source(source)
    if parsed is None:                                     # not an extractor's source: its own name
        return source
    return f"{'C3D' if parsed.family is None else 'VGG_' + parsed.family} ({parsed.layer})"


def family_label(attended_source: str | None) -> str:
    """The row label of Figure 3: Object / Scene / Action / C3D (or the source name)."""
    source = attended_source or ""
    return FAMILY_NAMES.get(source.rpartition("_")[0], source)


class ShownFrame(NamedTuple):
    """A frame a figure shows: its index, time (s) and attention weight."""

    frame: int
    time: float
    weight: float


class Figure2Row(NamedTuple):
    """One model's frames of highest (descending) and lowest (ascending) attention over the video."""

    label: str
    high: list[ShownFrame]
    low: list[ShownFrame]


class StripRow(NamedTuple):
    """One model's row of the Figure 3 strip: its weight on each column's frame (None: not attended)."""

    label: str                   # Object / Scene / Action / C3D
    model: str                   # the model's row name
    weights: list[float | None]


class Figure3Strip(NamedTuple):
    """The Figure 3 strip: window ``window`` (where ``class_name`` scores ``score``), its frames and their
    times, one row per model."""

    window: int
    class_name: str
    score: float
    frames: list[int]
    times: list[float]
    rows: list[StripRow]


def figure2_selection(highlights: Highlights, k: int = 4) -> list[Figure2Row]:
    """Per model with attention, its k frames of highest and of lowest attention weight (Fig. 2)."""
    rows = []
    for curve in highlights.frames:
        high, low = extreme_frames(curve.frames, curve.weights, k)
        picked = [[ShownFrame(int(curve.frames[i]), float(curve.times[i]), float(curve.weights[i]))
                   for i in idx] for idx in (high, low)]
        rows.append(Figure2Row(highlights.models[curve.model].label, picked[0], picked[1]))
    return rows


def figure3_selection(highlights: Highlights, columns: int = 12) -> Figure3Strip | None:
    """The Figure 3 strip: the window where the top class scores highest (first such window), at most
    ``columns`` of its attended frames, and per model the window's step-averaged weight of each (None
    where a model does not attend to that frame). None when no model has attention."""
    top = highlights.top_classes[0].name
    candidates = [w for w in highlights.windows if any(a is not None for a in w.attention)]
    if not candidates:
        return None
    window = max(candidates, key=lambda w: (w.class_scores[top], -w.index))
    items = [a for a in window.attention if a is not None]
    frames = strip_columns([f for a in items for f in a.frames.tolist()], columns)
    times: dict[int, float] = {}
    rows = []
    for item in items:
        weight_of = dict(zip(item.frames.tolist(), item.frame_weights.tolist(), strict=True))
        times.update(zip(item.frames.tolist(), item.times.tolist(), strict=True))
        model = highlights.models[item.model]
        rows.append(StripRow(family_label(model.attended_source), model.label,
                             [weight_of.get(f) for f in frames]))
    return Figure3Strip(window.index, top, window.class_scores[top], frames, [times[f] for f in frames], rows)


def report_frames(highlights: Highlights, k: int = 4, columns: int = 12) -> set[int]:
    """Every frame whose thumbnail the report shows."""
    frames = {shown.frame for row in figure2_selection(highlights, k) for shown in row.high + row.low}
    strip = figure3_selection(highlights, columns)
    return frames | set(strip.frames if strip else [])


def darken(image: np.ndarray, factor: float) -> np.ndarray:
    """(H, W, 3) uint8 with every channel scaled by ``factor`` in [0, 1] (brightness ∝ weight, Fig. 3)."""
    factor = min(max(float(factor), 0.0), 1.0)
    return np.rint(image.astype(np.float64) * factor).astype(np.uint8)


def _thumb(thumbnails: Mapping[int, np.ndarray], frame: int) -> np.ndarray:
    image = thumbnails.get(frame)
    if image is None:
        image = np.empty((90, 160, 3), np.uint8)
        image[:] = PLACEHOLDER
    return image


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buffer.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def render_figure2(selection: Sequence[Figure2Row], thumbnails: Mapping[int, np.ndarray]) -> bytes:
    """PNG: per model, a row of its k highest-attention frames (green) above a row of its k lowest (red)."""
    plt = _pyplot()
    k = max(1, *(len(row.high) for row in selection))
    rows = [(row.label, kind, getattr(row, kind)) for row in selection for kind in ("high", "low")]
    fig, axes = plt.subplots(len(rows), k, figsize=(2.0 * k + 1.0, 1.75 * len(rows) + 0.4), squeeze=False,
                             layout="constrained")
    for r, (label, kind, items) in enumerate(rows):
        colour = HIGH if kind == "high" else LOW
        for c in range(k):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(items):
                ax.set_axis_off()
                continue
            frame, time, weight = items[c]
            ax.imshow(_thumb(thumbnails, frame))
            for spine in ax.spines.values():
                spine.set_color(colour)
                spine.set_linewidth(4)
            ax.set_xlabel(f"frame {frame} · {time:.2f} s · {weight:.3f}", fontsize=8)
        axes[r][0].set_ylabel(f"{label}\n{'highest' if kind == 'high' else 'lowest'}", fontsize=8,
                              color=colour)
    fig.suptitle("Frames of highest (green) and lowest (red) attention weight", fontsize=10)
    return _png(fig)


def brightness(weight: float, peak: float, floor: float = BRIGHTNESS_FLOOR) -> float:
    """Fig. 3's brightness factor of a frame: ``floor`` at weight 0, 1 at the row's largest ``peak``."""
    return floor + (1.0 - floor) * (weight / peak if peak > 0 else 1.0)


def render_figure3(strip: Figure3Strip, thumbnails: Mapping[int, np.ndarray]) -> bytes:
    """PNG: the strip of Figure 3, one row per model; brightness follows weight / the row's largest."""
    plt = _pyplot()
    frames, rows = strip.frames, strip.rows
    size = (1.45 * len(frames) + 1.0, 1.5 * len(rows) + 0.5)
    fig, axes = plt.subplots(len(rows), len(frames), figsize=size, squeeze=False, layout="constrained")
    for r, row in enumerate(rows):
        known = [w for w in row.weights if w is not None]
        peak = max(known) if known and max(known) > 0 else 1.0
        for c, (frame, weight) in enumerate(zip(frames, row.weights, strict=True)):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if weight is None:
                ax.set_xlabel("–", fontsize=9)
                continue
            ax.imshow(darken(_thumb(thumbnails, frame), brightness(weight, peak)))
            ax.set_xlabel(f"{weight:.3f}", fontsize=9)
            if r == 0:
                ax.set_title(f"{frame}", fontsize=8)
        axes[r][0].set_ylabel(row.label, fontsize=9)
    fig.suptitle(f"Frames of window {strip.window} (top class {strip.class_name}); "
                 "brighter = higher attention", fontsize=10)
    return _png(fig)


def render_timeline(highlights: Highlights) -> bytes:
    """PNG: attention density over the video per model (and their mean for ensembles), the threshold,
    and the moments shaded with their rank."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(11, 3.2))
    threshold = highlights.settings.threshold
    for curve in highlights.frames:
        times = np.append(curve.times, curve.end_time)                  # the last cell's end
        ax.step(times, np.append(curve.density, curve.density[-1]), where="post", linewidth=1.2,
                label=highlights.models[curve.model].label, alpha=0.85)
    timeline = highlights.timeline
    if timeline is not None and len(highlights.frames) > 1:
        times = np.append(timeline.times, timeline.end_time)
        ax.step(times, np.append(timeline.density, timeline.density[-1]), where="post", color="black",
                linewidth=2, label="mean")
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle=":", label="uniform (1/T)")
    ax.axhline(threshold, color="grey", linewidth=0.8, linestyle="--", label="threshold")
    for moment in highlights.moments:
        ax.axvspan(moment.start_time, moment.end_time, color="#f2b705", alpha=0.3, linewidth=0)
        ax.annotate(str(moment.rank), (moment.peak_time, moment.peak_density), fontsize=9,
                    ha="center", va="bottom", xytext=(0, 3), textcoords="offset points")
    if len(highlights.windows) <= 40:                         # window boundaries, while they stay legible
        for window in highlights.windows[1:]:
            ax.axvline(window.start_time, color="#cccccc", linewidth=0.6, zorder=0)
    ax.set_xlim(0, max(highlights.duration, 1e-6))
    ax.set_ylim(0, 1.15 * max([threshold] + [float(np.max(curve.density)) for curve in highlights.frames]))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("attention × T")
    ax.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0, 1.01), ncol=4, frameon=False)
    fig.tight_layout()
    return _png(fig)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


STYLE = """
body { font-family: sans-serif; margin: 24px auto; max-width: 1180px; color: #222; background: #fff; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; }
.meta { color: #555; font-size: 13px; }
.warn { background: #fff3cd; border: 1px solid #e0c060; padding: 8px 12px; font-size: 14px; }
table { border-collapse: collapse; font-size: 14px; }
td, th { padding: 4px 10px; text-align: left; border-bottom: 1px solid #e4e4e4; }
.bar { display: inline-block; height: 12px; background: #3b6fb6; vertical-align: middle; }
img.figure { max-width: 100%; border: 1px solid #e4e4e4; }
p.note { font-size: 13px; color: #555; max-width: 900px; }
"""


def render_html(highlights: Highlights, images: Mapping[str, bytes]) -> str:
    """The page: ``images`` maps figure names (figure2, figure3, timeline) to PNG bytes, inlined."""
    esc = html.escape
    video = highlights.video
    name = esc(os.path.basename(video.path))
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<title>Highlights: {name}</title><style>{STYLE}</style>"
             "</head><body>",
             f"<h1>{name}</h1>",
             f"<div class='meta'>{highlights.num_frames} frames, {video.fps:.3g} frames/s, "
             f"{highlights.duration:.2f} s; {len(highlights.windows)} windows of "
             f"{highlights.window_frames} frames; models: "
             + ", ".join(esc(m.label) for m in highlights.models) + "</div>"]
    if highlights.random_weights:
        parts.append(f"<p class='warn'>The features of {esc(', '.join(highlights.random_weights))} were "
                     "computed with random weights: classes and attention are not meaningful.</p>")
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
        parts.append(_moments_table(highlights))
    if "figure2" in images:
        parts.append("<h2>Frames of highest and lowest attention</h2>"
                     f"<img class='figure' alt='highest and lowest attention' "
                     f"src='{_data_uri(images['figure2'])}'>")
    if "figure3" in images:
        parts.append("<h2>Attention on the frames of one window</h2>"
                     f"<img class='figure' alt='attention strip' src='{_data_uri(images['figure3'])}'>"
                     "<p class='note'>Brightness follows the attention weight (relative to the row's "
                     f"largest; a weight of 0 keeps {BRIGHTNESS_FLOOR:.0%} of the brightness); the "
                     "number under each frame is its weight averaged over the window's steps.</p>")
    if "timeline" not in images:
        parts.append("<p class='note'>These models have no attention (vanilla LSTM): no frame is "
                     "highlighted.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _moments_table(highlights: Highlights) -> str:
    if not highlights.moments:
        return (f"<p class='note'>No frame reached {highlights.settings.threshold:g} times the uniform "
                "attention: no moment is highlighted.</p>")
    rows = ["<table><tr><th>#</th><th>from (s)</th><th>to (s)</th><th>frames</th><th>peak (×T)</th></tr>"]
    for m in highlights.moments:
        rows.append(f"<tr><td>{m.rank}</td><td>{m.start_time:.2f}</td><td>{m.end_time:.2f}</td>"
                    f"<td>{m.start_frame}–{m.end_frame - 1}</td><td>{m.peak_density:.2f}</td></tr>")
    rows.append("</table>")
    return "".join(rows)


def write_report(out_dir: str, highlights: Highlights, thumbnails: Mapping[int, np.ndarray], *, k: int = 4,
                 columns: int = 12) -> list[str]:
    """Write report.html and figure2.png, figure3.png, timeline.png (those that apply) into ``out_dir``,
    each atomically; return their paths. ``thumbnails``: {frame: (h, w, 3) uint8} for ``report_frames``."""
    images: dict[str, bytes] = {}
    if highlights.frames:
        images["timeline"] = render_timeline(highlights)
        images["figure2"] = render_figure2(figure2_selection(highlights, k), thumbnails)
        images["figure3"] = render_figure3(figure3_selection(highlights, columns), thumbnails)
    written = []
    for name, png in images.items():
        written.append(write_bytes(os.path.join(out_dir, f"{name}.png"), png))
    page = render_html(highlights, images).encode("utf-8")
    written.append(write_bytes(os.path.join(out_dir, "report.html"), page))
    return written


class ThumbnailStore:
    """JPEG thumbnails of the attended frames in an anonymous temporary file (deleted when closed), so
    that memory holds only their offsets."""

    def __init__(self, folder: str):
        self.file = tempfile.TemporaryFile(dir=folder)
        self.where: dict[int, tuple[int, int]] = {}

    def add(self, frame: int, data: bytes) -> None:
        self.file.seek(0, os.SEEK_END)
        self.where[frame] = (self.file.tell(), len(data))
        self.file.write(data)

    def load(self, frames) -> dict[int, np.ndarray]:
        from PIL import Image

        out = {}
        for frame in sorted(frames):
            if frame in self.where:
                offset, size = self.where[frame]
                self.file.seek(offset)
                out[frame] = np.asarray(Image.open(io.BytesIO(self.file.read(size))).convert("RGB"))
        return out

    def close(self) -> None:
        self.file.close()


def jpeg_thumbnail(frame: np.ndarray, width: int = THUMBNAIL_WIDTH) -> bytes:
    """(H, W, 3) uint8 → JPEG bytes ``width`` pixels wide."""
    from PIL import Image

    image = Image.fromarray(frame)
    height = max(1, round(width * frame.shape[0] / frame.shape[1]))
    buffer = io.BytesIO()
    image.resize((width, height), Image.BILINEAR).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


