"""The report's interactive timeline, drawn server-side as inline SVG (readable without scripts).

One SVG ``WIDTH`` units wide whose whole width is the video, from 0 to its duration (so a click at
fraction x of the element's width is time x · duration), in three bands:

- the moments' numbered badges (``data-seek`` their start, ``data-moment`` their rank);
- the attention density (weight × T, 1 = uniform) of each model with attention, and their mean for an
  ensemble, with the uniform level and the threshold; the moments shaded across both bands;
- the scores of the video's top classes in each window (a window's score holds from its start to the
  next window's start);

and a playhead (``#playhead``) that the page's script moves. Curves are step functions thinned to at
most ``POINTS_PER_COLUMN`` points per column of the SVG (one column per unit, ``WIDTH`` columns): the
first, lowest, highest and last value of the steps a column overlaps, so a curve costs at most a few
tens of kB whatever the video's length.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Sequence

import numpy as np

from reproduce.highlighting.results import Highlights

WIDTH = 1000                          # SVG units; one column per unit
POINTS_PER_COLUMN = 4
MODEL_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
CLASS_COLOURS = ("#d62728", "#17becf", "#7f7f7f", "#bcbd22", "#e377c2", "#008b8b", "#b8860b", "#4b0082")
MOMENT_FILL = "#f2b705"
# bands (y, in SVG units, top down)
BADGES = (0.0, 20.0)
DENSITY = (22.0, 142.0)
SCORES = (152.0, 222.0)
AXIS = 238.0
HEIGHT = 246.0


CSS = """
.timeline-box { margin-top: 10px; border: 1px solid #e4e4e4; }
svg.timeline { width: 100%; height: auto; display: block; }
svg.timeline .tl-label { font-size: 10px; fill: #555; font-family: sans-serif; }
svg.timeline .tl-badge { font-size: 11px; font-weight: bold; fill: #222; font-family: sans-serif; }
.legend { font-size: 12px; color: #444; margin: 4px 0 0 0; display: flex; flex-wrap: wrap; gap: 4px 16px; }
.legend .key i { display: inline-block; width: 18px; height: 3px; margin-right: 5px; vertical-align: middle; }
"""


def model_colour(model: int) -> str:
    return MODEL_COLOURS[model % len(MODEL_COLOURS)]


def class_colour(rank: int) -> str:
    return CLASS_COLOURS[rank % len(CLASS_COLOURS)]


def step_segments(times: Sequence[float], values: Sequence[float], end_time: float):
    """A step function as segments: value i holds from times[i] to times[i + 1] (the last to
    ``end_time``); returns (starts, ends, values) float64 arrays, sorted by start."""
    starts = np.asarray(times, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(starts, kind="stable")
    starts, values = starts[order], values[order]
    ends = np.append(starts[1:], max(float(end_time), float(starts[-1]) if len(starts) else 0.0))
    return starts, ends, values


def thin_columns(starts: np.ndarray, ends: np.ndarray, values: np.ndarray, duration: float,
                 columns: int = WIDTH) -> list[tuple[int, float, float, float, float] | None]:
    """Per column c of ``columns`` spanning [0, duration): (c, first, lowest, highest, last) of the
    values of the segments [start, end) it overlaps, NaN values skipped; None where none is known."""
    out: list[tuple[int, float, float, float, float] | None] = []
    scale = columns / max(duration, 1e-9)
    x0, x1 = starts * scale, ends * scale
    for c in range(columns):
        a = int(np.searchsorted(x1, c, side="right"))        # first segment ending after the column's left
        b = int(np.searchsorted(x0, c + 1, side="left"))     # segments starting before its right
        picked = values[a:b]
        picked = picked[~np.isnan(picked)]
        if len(picked) == 0:
            out.append(None)
            continue
        out.append((c, float(picked[0]), float(picked.min()), float(picked.max()), float(picked[-1])))
    return out


def step_path(starts, ends, values, duration: float, y_of, columns: int = WIDTH) -> str:
    """SVG path data of a step function thinned to ``POINTS_PER_COLUMN`` points per column (see
    `thin_columns`); ``y_of`` maps a value to a y coordinate. Unknown columns break the path."""
    parts: list[str] = []
    pen_x = pen_y = None                 # where the pen is; the run at pen_y goes on to `reached`
    reached = 0
    for item in thin_columns(starts, ends, values, duration, columns):
        if item is None:
            if pen_y is not None and pen_x != reached:
                parts.append(f"H{reached}")
            pen_x = pen_y = None
            continue
        c, first, low, high, last = item
        ys = [y_of(first)]
        for v in ((low, high) if first - low <= high - first else (high, low)) + (last,):
            if y_of(v) != ys[-1]:
                ys.append(y_of(v))
        if pen_y is None:
            parts.append(f"M{c} {ys[0]}")
            pen_x, pen_y = c, ys[0]
        elif ys[0] != pen_y or len(ys) > 1:
            if pen_x != c:
                parts.append(f"H{c}")
                pen_x = c
            if ys[0] != pen_y:
                parts.append(f"V{ys[0]}")
                pen_y = ys[0]
        for y in ys[1:]:
            parts.append(f"V{y}")
            pen_y = y
        reached = c + 1
        if len(ys) > 1:
            parts.append(f"H{reached}")
            pen_x = reached
    if pen_y is not None and pen_x != reached:
        parts.append(f"H{reached}")
    return "".join(parts)


def _scale(band: tuple[float, float], top: float):
    y0, y1 = band
    return lambda v: round(y1 - (y1 - y0) * min(max(v, 0.0), top) / top, 1)


def _nice_step(duration: float, ticks: int = 10) -> float:
    """Seconds between the axis' ticks: a round number of seconds or minutes, about ``ticks`` ticks."""
    raw = max(duration, 1e-9) / ticks
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600):
        if raw <= step:
            return float(step)
    return 3600.0 * math.ceil(raw / 3600.0)


def _clock(seconds: float) -> str:
    if seconds >= 60:
        minutes, rest = divmod(seconds, 60)
        return f"{int(minutes)}:{rest:04.1f}" if rest % 1 else f"{int(minutes)}:{int(rest):02d}"
    return f"{seconds:g} s"


def timeline_svg(highlights: Highlights, *, interactive: bool = True) -> str:
    """The inline SVG (see the module docstring). ``interactive``: the timeline carries
    ``data-timeline`` and its duration, the moments ``data-seek`` (the page has a player)."""
    duration = max(float(highlights.duration), 1e-6)
    x_of = lambda t: round(WIDTH * float(t) / duration, 1)  # noqa: E731
    attrs = (f" data-timeline data-duration='{highlights.duration:.6f}'" if interactive else "")
    out = [f"<svg class='timeline' viewBox='0 0 {WIDTH} {HEIGHT:g}' role='img' "
           f"aria-label='attention and class scores over the video'{attrs} "
           "preserveAspectRatio='xMidYMid meet'>",
           f"<rect x='0' y='0' width='{WIDTH}' height='{HEIGHT:g}' fill='#fafafa'/>"]
    # moments shaded across the bands
    for m in highlights.moments:
        x0, x1 = x_of(m.start_time), x_of(m.end_time)
        out.append(f"<rect class='moment-span' x='{x0}' y='{BADGES[1]:g}' width='{max(x1 - x0, 0.5):.1f}' "
                   f"height='{SCORES[1] - BADGES[1]:g}' fill='{MOMENT_FILL}' fill-opacity='0.28'/>")
    # window boundaries, while they stay legible
    if 1 < len(highlights.windows) <= 120:
        for w in highlights.windows[1:]:
            out.append(f"<line x1='{x_of(w.start_time)}' x2='{x_of(w.start_time)}' y1='{DENSITY[0]:g}' "
                       f"y2='{SCORES[1]:g}' stroke='#dddddd' stroke-width='0.6'/>")
    # attention density
    threshold = highlights.settings.threshold
    top = 1.15 * max([threshold, 1.0] + [float(np.max(c.density)) for c in highlights.frames])
    y_density = _scale(DENSITY, top)
    above = threshold >= 1.0
    for level, dash, label, up in ((1.0, "2 3", "uniform", not above),
                                   (threshold, "6 4", f"threshold {threshold:g}", above)):
        y = y_density(level)
        out.append(f"<line x1='0' x2='{WIDTH}' y1='{y}' y2='{y}' stroke='#888' stroke-width='0.8' "
                   f"stroke-dasharray='{dash}'/><text x='{WIDTH - 4}' y='{round(y - 2 if up else y + 9, 1)}' "
                   f"text-anchor='end' class='tl-label'>{html.escape(label)}</text>")
    for curve in highlights.frames:
        seg = step_segments(curve.times, curve.density, curve.end_time)
        out.append(f"<path class='density' data-model='{curve.model}' "
                   f"d='{step_path(*seg, duration, y_density)}' fill='none' "
                   f"stroke='{model_colour(curve.model)}' stroke-width='1.3'/>")
    if highlights.timeline is not None and len(highlights.frames) > 1:
        tl = highlights.timeline
        seg = step_segments(tl.times, tl.density, tl.end_time)
        out.append(f"<path class='density-mean' d='{step_path(*seg, duration, y_density)}' fill='none' "
                   "stroke='#111' stroke-width='1.8'/>")
    out.append(f"<text x='4' y='{DENSITY[0] + 10:g}' class='tl-label'>attention × T</text>")
    # class scores per window, on a scale up to the largest (rounded up to a tenth)
    scores = [v for w in highlights.windows for v in w.class_scores.values() if not math.isnan(v)]
    largest = max([0.0] + scores)
    score_top = min(1.0, max(0.1, math.ceil(largest * 1.05 * 10) / 10))
    y_score = _scale(SCORES, score_top)
    out.append(f"<line x1='0' x2='{WIDTH}' y1='{SCORES[1]:g}' y2='{SCORES[1]:g}' stroke='#bbb' "
               "stroke-width='0.6'/>")
    windows = sorted(highlights.windows, key=lambda w: (w.start_time, w.index))
    if windows:
        starts = [w.start_time for w in windows]
        end = max(w.end_time for w in windows)
        for rank, item in enumerate(highlights.top_classes):
            seg = step_segments(starts, [w.class_scores.get(item.name, math.nan) for w in windows], end)
            out.append(f"<path class='score' data-class='{html.escape(item.name, quote=True)}' "
                       f"d='{step_path(*seg, duration, y_score)}' fill='none' stroke='{class_colour(rank)}' "
                       "stroke-width='1.1'/>")
    out.append(f"<line x1='0' x2='{WIDTH}' y1='{SCORES[0]:g}' y2='{SCORES[0]:g}' stroke='#e4e4e4' "
               f"stroke-width='0.6'/><text x='4' y='{SCORES[0] - 2:g}' class='tl-label'>class scores per "
               f"window (0 to {score_top:g})</text>")
    # time axis
    step = _nice_step(duration)
    ticks = np.arange(0.0, duration + 1e-9, step)
    for t in ticks.tolist():
        x = x_of(t)
        anchor = "start" if x < 20 else "end" if x > WIDTH - 20 else "middle"
        out.append(f"<line x1='{x}' x2='{x}' y1='{SCORES[1]:g}' y2='{SCORES[1] + 4:g}' stroke='#888'/>"
                   f"<text x='{x}' y='{AXIS:g}' text-anchor='{anchor}' class='tl-label'>{_clock(t)}</text>")
    # moment badges, on top
    for m in highlights.moments:
        x = x_of((m.start_time + m.end_time) / 2)
        seek = f" data-seek='{m.start_time:.6f}'" if interactive else ""
        out.append(f"<g class='badge' data-moment='{m.rank}'{seek}><title>moment {m.rank}: "
                   f"{m.start_time:.2f}–{m.end_time:.2f} s</title>"
                   f"<circle cx='{x}' cy='10' r='8.5' fill='{MOMENT_FILL}' stroke='#7a5c00' "
                   "stroke-width='0.8'/>"
                   f"<text x='{x}' y='13.5' text-anchor='middle' class='tl-badge'>{m.rank}</text></g>")
    if interactive:
        out.append(f"<line id='playhead' x1='0' x2='0' y1='0' y2='{SCORES[1]:g}' stroke='#e0301e' "
                   "stroke-width='1.6' pointer-events='none'/>")
    out.append("</svg>")
    return "".join(out)


def model_names(highlights: Highlights) -> list[str]:
    """Each model's name on the page: its label (the paper's row name), followed by its checkpoint's file
    name when another model has the same label."""
    labels = [m.label for m in highlights.models]
    return [m.label + (f" · {os.path.basename(m.checkpoint)}" if labels.count(m.label) > 1 else "")
            for m in highlights.models]


def timeline_legend(highlights: Highlights) -> str:
    """HTML legend of the SVG's colours (models, their mean, classes, moments)."""
    esc = html.escape
    names = model_names(highlights)
    items = [f"<span class='key'><i style='background:{model_colour(c.model)}'></i>"
             f"{esc(names[c.model])}</span>" for c in highlights.frames]
    if highlights.timeline is not None and len(highlights.frames) > 1:
        items.append("<span class='key'><i style='background:#111'></i>mean of the models</span>")
    items += [f"<span class='key'><i style='background:{class_colour(r)};height:2px'></i>{esc(c.name)}</span>"
              for r, c in enumerate(highlights.top_classes)]
    if highlights.moments:
        items.append(f"<span class='key'><i style='background:{MOMENT_FILL};opacity:.5;height:10px'></i>"
                     "highlighted moments</span>")
    return "<div class='legend'>" + "".join(items) + "</div>"
