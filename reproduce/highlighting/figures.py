"""The report's static figures, as in the paper (docs/paper.md §7), rendered as PNG bytes:

- Figure 2: per model, the attended frames of highest (green) and lowest (red) attention over the video;
- Figure 3: one window's attended frames (the window where the video's top class scores highest), one
  row per model (attended family), each frame's brightness following its weight normalised by the row's
  largest (``BRIGHTNESS_FLOOR`` + the rest in proportion), the weight printed under it;
- the timeline of the attention density (weight × T, 1 = uniform), the moments shaded and numbered.

Each renderer also returns, where the page links frames to times, the pixel areas of its frames
(`HotArea`). matplotlib's Agg backend: no display needed.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from alstm_core.storage import parse_source
from reproduce.highlighting.moments import extreme_frames, strip_columns
from reproduce.highlighting.results import Highlights

HIGH, LOW = "#1a9c3a", "#d62a2a"          # the paper's green and red frames
FAMILY_NAMES = {"vgg_obj": "Object", "vgg_sce": "Scene", "vgg_act": "Action", "c3d": "C3D"}



PLACEHOLDER = (96, 96, 96)



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



class HotArea(NamedTuple):
    """A thumbnail of a figure PNG: its frame and time, and its box in percent of the image (from the
    left and the top), for the page's seek links laid over the image."""

    frame: int
    time: float
    left: float
    top: float
    width: float
    height: float



def _png(fig, hot=(), areas: list[HotArea] | None = None) -> bytes:
    """The figure as PNG bytes; ``hot`` (frame, time, axes) become `HotArea`s appended to ``areas``
    (the axes' places once the layout is done, at drawing)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    if areas is not None:
        for frame, time, ax in hot:
            box = ax.get_position()
            areas.append(HotArea(int(frame), float(time), 100 * box.x0, 100 * (1 - box.y1), 100 * box.width,
                                 100 * box.height))
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buffer.getvalue()



def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt



def render_figure2(selection: Sequence[Figure2Row], thumbnails: Mapping[int, np.ndarray],
                   areas: list[HotArea] | None = None) -> bytes:
    """PNG: per model, a row of its k highest-attention frames (green) above a row of its k lowest (red).
    ``areas``: a list that receives each thumbnail's `HotArea`."""
    plt = _pyplot()
    hot = []
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
            hot.append((frame, time, ax))
            ax.imshow(_thumb(thumbnails, frame))
            for spine in ax.spines.values():
                spine.set_color(colour)
                spine.set_linewidth(4)
            ax.set_xlabel(f"frame {frame} · {time:.2f} s · {weight:.3f}", fontsize=8)
        axes[r][0].set_ylabel(f"{label}\n{'highest' if kind == 'high' else 'lowest'}", fontsize=8,
                              color=colour)
    fig.suptitle("Frames of highest (green) and lowest (red) attention weight", fontsize=10)
    return _png(fig, hot, areas)



def brightness(weight: float, peak: float, floor: float = BRIGHTNESS_FLOOR) -> float:
    """Fig. 3's brightness factor of a frame: ``floor`` at weight 0, 1 at the row's largest ``peak``."""
    return floor + (1.0 - floor) * (weight / peak if peak > 0 else 1.0)



def render_figure3(strip: Figure3Strip, thumbnails: Mapping[int, np.ndarray],
                   areas: list[HotArea] | None = None) -> bytes:
    """PNG: the strip of Figure 3, one row per model; brightness follows weight / the row's largest.
    ``areas``: a list that receives each thumbnail's `HotArea`."""
    plt = _pyplot()
    hot = []
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
            hot.append((frame, strip.times[c], ax))
            ax.imshow(darken(_thumb(thumbnails, frame), brightness(weight, peak)))
            ax.set_xlabel(f"{weight:.3f}", fontsize=9)
            if r == 0:
                ax.set_title(f"{frame}", fontsize=8)
        axes[r][0].set_ylabel(row.label, fontsize=9)
    fig.suptitle(f"Frames of window {strip.window} (top class {strip.class_name}); "
                 "brighter = higher attention", fontsize=10)
    return _png(fig, hot, areas)



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
