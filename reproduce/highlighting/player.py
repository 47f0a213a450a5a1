"""The report's player: the video, the timeline under it and the window under the playhead beside it.

The page embeds the `Highlights`' own JSON (``to_json()``, the content of highlights.json, "<" written
as ``\\u003c`` so that no "</script>" or "<!--" inside a class name ends the element) in
``<script type="application/json" id="alstm-highlights">``; the script (``PLAYER_JS``, inline, no
library) reads everything from it and from these attributes:

- ``video[data-player]``: the browser copy (``src``), ``data-clip``: the highlight clip, if any, whose
  frames are the moments' frames in time order (played as a second source; the playhead then follows
  the clip's frames in the video's time);
- ``[data-timeline]`` (the SVG of `reproduce.highlighting.timeline_svg`): a click at fraction x of its
  width seeks to x · ``data-duration``;
- every element with ``data-seek`` (moments, thumbnails of the figures, frames of the window panel)
  seeks to that many seconds when clicked;
- keys: space plays and pauses; ← and → step to the previous and next attended frame (of any model).

The panel beside the video shows the window under the playhead (`window_at`): per model, its attended
frames (drawn from the copy by a hidden second video element), each frame's brightness following its
weight as in the paper's Figure 3 (``BRIGHTNESS_FLOOR`` + the rest ∝ weight / the row's largest), its
step-averaged weight and a bar; the attended frame under the playhead is outlined. Its attributes say
what it shows: ``data-window`` (the window's index), and per frame ``data-model``, ``data-frame``,
``data-weight``.
"""

from __future__ import annotations

import html
import json

from reproduce.highlighting.results import Highlights, Window

DATA_ID = "alstm-highlights"


def window_at(highlights: Highlights, t: float) -> Window:
    """The window under the playhead at ``t`` seconds: among the windows whose [start_time, end_time)
    holds t, the one whose middle is nearest (ties: the earlier index); when none holds t (before the
    first or after the last complete chunk), the nearest window."""
    def key(w: Window):
        inside = w.start_time <= t < w.end_time
        middle = abs(t - (w.start_time + w.end_time) / 2)
        outside = 0.0 if inside else min(abs(t - w.start_time), abs(t - w.end_time))
        return (not inside, outside, middle, w.index)

    return min(highlights.windows, key=key)


def embedded_json(highlights: Highlights) -> str:
    """The ``<script type="application/json">`` element holding ``highlights.to_json()``."""
    text = json.dumps(highlights.to_json(), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    text = text.replace("<", "\\u003c")
    return f"<script type='application/json' id='{DATA_ID}'>{text}</script>"


def clip_seconds(highlights: Highlights) -> float:
    """Length of the highlight clip: the moments' frames at the video's frame rate."""
    frames = sum(m.end_frame - m.start_frame for m in highlights.moments)
    return frames / (highlights.video.fps if highlights.video.fps > 0 else 25.0)


def player_html(highlights: Highlights, video: str, width: int, height: int, clip: str | None) -> str:
    """The player's HTML: the video, its clock and sources, the key help and the (empty) panel."""
    attr = lambda s: html.escape(s, quote=True)  # noqa: E731
    clip_attr = f" data-clip='{attr(clip)}'" if clip else ""
    sources = ""
    if clip:
        sources = (f"<span class='sources'>play: <a href='{attr(video)}' data-source='video' class='on'>the "
                   f"whole video</a> · <a href='{attr(clip)}' data-source='clip'>the highlight clip "
                   f"({clip_seconds(highlights):.1f} s)</a></span>")
    return (
        "<div class='player' id='player'><div class='stage'>"
        f"<video data-player src='{attr(video)}'{clip_attr} width='{width}' height='{height}' controls "
        "preload='auto' playsinline></video>"
        f"<div class='under'><span id='clock' class='clock'>0.00 / {highlights.duration:.2f} s</span>"
        f"{sources}"
        "<span class='keys'>space: play / pause · ← →: previous / next attended frame · click the "
        "timeline, a moment or a frame to go there</span></div></div>"
        "<aside class='panel' id='window-panel' aria-live='polite'><p class='note'>With scripts on, the "
        "window under the playhead shows here: its attended frames and their weights, per model.</p>"
        "</aside></div>")


PLAYER_CSS = """
.player { display: grid; grid-template-columns: minmax(0, 480px) minmax(0, 1fr); gap: 16px;
  align-items: start; }
.stage video { width: 100%; height: auto; background: #000; display: block; }
.under { font-size: 12px; color: #555; margin-top: 4px; display: flex; flex-wrap: wrap; gap: 4px 14px; }
.clock { font-variant-numeric: tabular-nums; color: #222; }
.sources a { color: #3b6fb6; } .sources a.on { font-weight: bold; color: #222; text-decoration: none; }
.panel { font-size: 12px; min-height: 120px; }
.panel h3 { font-size: 14px; margin: 0 0 6px 0; }
.panel .row { margin-bottom: 8px; } .panel .label { font-weight: bold; margin-bottom: 2px; }
.panel .cells { display: flex; flex-wrap: wrap; gap: 3px; }
.panel a.cell { display: block; width: 62px; color: #222; text-decoration: none; text-align: center;
  border: 2px solid transparent; }
.panel a.cell.now { border-color: #e0301e; }
.panel canvas { width: 58px; display: block; margin: 0 auto; background: #606060; }
.panel .bar { display: block; height: 3px; background: #1a9c3a; margin: 1px 2px; }
.timeline-box { cursor: pointer; }
svg.timeline .moment-span { pointer-events: none; }
svg.timeline .badge { cursor: pointer; }
.figure-box { position: relative; display: inline-block; max-width: 100%; }
.figure-box img.figure { display: block; }
.figure-box a.hot { position: absolute; display: block; }
.figure-box a.hot:hover { outline: 2px solid #e0301e; }
tr[data-seek] { cursor: pointer; } tr[data-seek]:hover { background: #f4f4f4; }
@media (max-width: 900px) { .player { grid-template-columns: minmax(0, 1fr); } }
"""


# The page's script. Plain ES2017, no library; reads the embedded JSON (see the module docstring).
PLAYER_JS = r"""
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("__DATA_ID__").textContent);
  var video = document.querySelector("video[data-player]");
  var timeline = document.querySelector("[data-timeline]");
  var panel = document.getElementById("window-panel");
  var playhead = document.getElementById("playhead");
  var clock = document.getElementById("clock");
  if (!video || !timeline || !panel) { return; }
  var FLOOR = __FLOOR__, WIDTH = __WIDTH__;
  var duration = parseFloat(timeline.getAttribute("data-duration")) || data.duration;
  var fps = data.video.fps > 0 ? data.video.fps : 25, period = 1 / fps;
  var fullSrc = video.getAttribute("src"), clipSrc = video.getAttribute("data-clip");
  var mode = "video", pending = null, shownWindow = null;

  var steps = [];                                    // attended frames of every model, for the arrows
  data.frames.forEach(function (curve) { steps = steps.concat(curve.times); });
  steps.sort(function (a, b) { return a - b; });
  steps = steps.filter(function (t, i) { return i === 0 || t - steps[i - 1] > 1e-6; });
  var names = data.models.map(function (model) {      // as timeline_svg.model_names
    var twins = data.models.filter(function (other) { return other.label === model.label; }).length;
    return twins > 1 ? model.label + " · " + model.checkpoint.split(/[\\/]/).pop() : model.label;
  });
  var cellFrames = {};                               // model → frames per attended frame
  data.frames.forEach(function (curve) { cellFrames[String(curve.model)] = curve.cell_frames; });
  var spans = data.moments.slice().sort(function (a, b) { return a.start_frame - b.start_frame; });

  function fmt(t) { return t.toFixed(2); }

  function windowAt(t) {                              // as reproduce.highlighting.player.window_at
    var best = null, bestKey = null;
    data.windows.forEach(function (w) {
      var inside = w.start_time <= t && t < w.end_time;
      var key = [inside ? 0 : 1,
                 inside ? 0 : Math.min(Math.abs(t - w.start_time), Math.abs(t - w.end_time)),
                 Math.abs(t - (w.start_time + w.end_time) / 2), w.index];
      var better = bestKey === null;
      for (var i = 0; !better && i < key.length; i++) {
        if (key[i] !== bestKey[i]) { better = key[i] < bestKey[i]; break; }
      }
      if (better) { best = w; bestKey = key; }
    });
    return best;
  }

  function videoTime() {                              // the playhead, in the whole video's seconds
    if (mode !== "clip") { return video.currentTime; }
    var k = Math.floor(video.currentTime * fps + 1e-3);
    for (var i = 0; i < spans.length; i++) {
      var n = spans[i].end_frame - spans[i].start_frame;
      if (k < n) { return spans[i].start_time + k * period; }
      k -= n;
    }
    return spans.length ? spans[spans.length - 1].end_time : 0;
  }

  // frames of the panel, drawn from the copy by a second, hidden video element
  var grabber = document.createElement("video");
  grabber.muted = true; grabber.preload = "auto"; grabber.src = fullSrc;
  var queue = [], busy = false, cache = {}, cached = [], broken = false;
  function paint(canvas, source) {
    canvas.getContext("2d").drawImage(source, 0, 0, canvas.width, canvas.height);
  }
  function grab(t, canvas) {
    var key = t.toFixed(6);
    if (cache[key]) { paint(canvas, cache[key]); return; }
    queue.push({t: t, key: key, canvas: canvas});
    pump();
  }
  function pump() {
    while (queue.length && !document.body.contains(queue[0].canvas)) { queue.shift(); }
    if (busy || broken || !queue.length || grabber.readyState < 1) { return; }
    busy = true;
    var end = isFinite(grabber.duration) ? grabber.duration : duration;
    grabber.currentTime = Math.max(0, Math.min(queue[0].t + period / 2, end - period / 4));
  }
  grabber.addEventListener("loadedmetadata", pump);
  grabber.addEventListener("error", function () { broken = true; queue = []; });
  grabber.addEventListener("seeked", function () {
    busy = false;
    var item = queue.shift();
    if (item) {
      var copy = document.createElement("canvas");
      copy.width = item.canvas.width; copy.height = item.canvas.height;
      paint(copy, grabber);
      cache[item.key] = copy; cached.push(item.key);
      if (cached.length > 400) { delete cache[cached.shift()]; }
      paint(item.canvas, copy);
      queue = queue.filter(function (other) {
        if (other.key !== item.key) { return true; }
        paint(other.canvas, copy); return false;
      });
    }
    pump();
  });

  function element(tag, cls, text) {
    var el = document.createElement(tag);
    if (cls) { el.className = cls; }
    if (text !== undefined) { el.textContent = text; }
    return el;
  }

  function buildPanel(w) {
    panel.textContent = "";
    panel.setAttribute("data-window", String(w.index));
    var title = element("h3", "", "Window " + w.index + ": " + fmt(w.start_time) + "–" + fmt(w.end_time) +
      " s (frames " + w.start_frame + "–" + (w.end_frame - 1) + ")");
    panel.appendChild(title);
    if (data.top_classes.length) {
      var top = data.top_classes[0]["class"];
      panel.appendChild(element("div", "note", "score of " + top + " in this window: " +
        (w.class_scores[top] !== undefined ? w.class_scores[top].toFixed(3) : "–")));
    }
    var ratio = (video.videoHeight && video.videoWidth) ? video.videoHeight / video.videoWidth
      : (parseFloat(video.getAttribute("height")) / parseFloat(video.getAttribute("width")) || 0.5625);
    data.models.forEach(function (model, m) {
      var row = element("div", "row");
      row.setAttribute("data-model", String(m));
      row.appendChild(element("div", "label", names[m]));
      var a = w.attention[m];
      if (!a) {
        row.appendChild(element("div", "note", "no attention (vanilla LSTM)"));
        panel.appendChild(row);
        return;
      }
      var peak = Math.max.apply(null, a.frame_weights);
      var cells = element("div", "cells");
      row.appendChild(cells);
      panel.appendChild(row);                         // in the page before its frames are asked for
      a.frames.forEach(function (frame, i) {
        var weight = a.frame_weights[i], t = a.times[i];
        var cell = element("a", "cell");
        cell.href = fullSrc + "#t=" + t.toFixed(3);
        cell.title = "frame " + frame + " · " + fmt(t) + " s · weight " + weight.toFixed(4);
        cell.setAttribute("data-seek", String(t));
        cell.setAttribute("data-model", String(m));
        cell.setAttribute("data-frame", String(frame));
        cell.setAttribute("data-weight", String(weight));
        var canvas = element("canvas");
        canvas.width = 96; canvas.height = Math.max(2, Math.round(96 * ratio));
        var level = FLOOR + (1 - FLOOR) * (peak > 0 ? weight / peak : 1);
        canvas.style.filter = "brightness(" + level.toFixed(3) + ")";
        cell.appendChild(canvas);
        cell.appendChild(element("span", "weight", weight.toFixed(3)));
        var bar = element("span", "bar");
        bar.style.width = (peak > 0 ? 100 * weight / peak : 0).toFixed(1) + "%";
        cell.appendChild(bar);
        cells.appendChild(cell);
        grab(t, canvas);
      });
    });
  }

  function show(t) {
    if (playhead) {
      var x = (WIDTH * Math.min(Math.max(t, 0), duration) / duration).toFixed(1);
      playhead.setAttribute("x1", x); playhead.setAttribute("x2", x);
    }
    if (clock) {
      clock.textContent = fmt(t) + " / " + fmt(duration) + " s" + (mode === "clip" ? " (clip)" : "");
    }
    var w = windowAt(t);
    if (w && w !== shownWindow) { shownWindow = w; buildPanel(w); }
    var cells = panel.querySelectorAll("a.cell");
    for (var i = 0; i < cells.length; i++) {
      var start = parseFloat(cells[i].getAttribute("data-seek"));
      var span = (cellFrames[cells[i].getAttribute("data-model")] || 1) * period;
      cells[i].classList.toggle("now", start <= t + 1e-6 && t + 1e-6 < start + span);
    }
  }

  function useSource(kind) {
    if (kind === mode || (kind === "clip" && !clipSrc)) { return; }
    mode = kind;
    video.src = kind === "clip" ? clipSrc : fullSrc;
    var links = document.querySelectorAll("[data-source]");
    for (var i = 0; i < links.length; i++) {
      links[i].classList.toggle("on", links[i].getAttribute("data-source") === kind);
    }
  }

  function seek(t) {
    if (!isFinite(t)) { return; }
    t = Math.min(Math.max(t, 0), Math.max(0, duration - period / 2));
    if (mode !== "video") { useSource("video"); }
    show(t);
    if (video.readyState >= 1) { video.currentTime = t; pending = null; } else { pending = t; }
  }

  function step(direction) {
    video.pause();
    var now = videoTime(), target = null;
    if (direction > 0) {
      for (var i = 0; i < steps.length; i++) { if (steps[i] > now + 1e-3) { target = steps[i]; break; } }
    } else {
      for (var j = steps.length - 1; j >= 0; j--) { if (steps[j] < now - 1e-3) { target = steps[j]; break; } }
    }
    if (target !== null) { seek(target); }
  }

  function toggle() {
    if (video.paused || video.ended) {
      var played = video.play();
      if (played && played.catch) { played.catch(function () {}); }
    } else {
      video.pause();
    }
  }

  function tick() {
    if (pending === null) { show(videoTime()); }
    if (!video.paused && !video.ended) { window.requestAnimationFrame(tick); }
  }

  video.addEventListener("loadedmetadata", function () {
    if (pending !== null) { var t = pending; pending = null; video.currentTime = t; }
    else if (mode === "clip") { video.play().catch(function () {}); }
    tick();
  });
  ["timeupdate", "seeked", "pause", "ended"].forEach(function (name) { video.addEventListener(name, tick); });
  video.addEventListener("play", function () { window.requestAnimationFrame(tick); });

  document.addEventListener("click", function (event) {
    var target = event.target;
    if (!target || !target.closest) { return; }
    var source = target.closest("[data-source]");
    if (source) { event.preventDefault(); useSource(source.getAttribute("data-source")); return; }
    var seeker = target.closest("[data-seek]");
    if (seeker) {
      event.preventDefault();
      seek(parseFloat(seeker.getAttribute("data-seek")));
      var box = video.getBoundingClientRect();                 // from a figure below: show the video
      if (box.bottom < 0 || box.top > window.innerHeight) { video.scrollIntoView({block: "start"}); }
      return;
    }
    var line = target.closest("[data-timeline]");
    if (line) {
      var box = line.getBoundingClientRect();
      seek((event.clientX - box.left) / box.width * duration);
    }
  });

  document.addEventListener("keydown", function (event) {
    if (event.altKey || event.ctrlKey || event.metaKey) { return; }
    var tag = event.target && event.target.tagName;
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") { return; }
    var handled = true;
    if (event.key === " " || event.key === "Spacebar") { toggle(); }
    else if (event.key === "ArrowRight") { step(1); }
    else if (event.key === "ArrowLeft") { step(-1); }
    else { handled = false; }
    if (handled) { event.preventDefault(); event.stopPropagation(); }
  }, true);

  show(0);
})();
"""


def player_script(floor: float, width: int) -> str:
    """The inline ``<script>`` of the player (``floor``: Figure 3's brightness floor; ``width``: the
    timeline's SVG width in units)."""
    code = (PLAYER_JS.replace("__DATA_ID__", DATA_ID).replace("__FLOOR__", repr(float(floor)))
            .replace("__WIDTH__", str(int(width))))
    return f"<script>{code}</script>"
