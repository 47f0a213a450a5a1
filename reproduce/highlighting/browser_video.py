"""The report's video: a browser-playable copy of the highlighted video (or of its clip), made with PyAV.

``write_browser_copy(source, out)`` re-decodes ``source`` (`caffe_models.video.VideoReader`: the frames
highlighting read, in the same order, rotation applied) and encodes every frame as H.264 (libx264,
yuv420p, so that any browser plays it) in an MP4 whose index comes first (``+faststart``):

- at most ``MAX_WIDTH`` pixels wide, both sizes even (4:2:0), the aspect ratio kept;
- every frame kept, with its presentation time from the first frame (the times of ``highlights.json``),
  so that a time in the JSON is the same time in the copy;
- a bounded bitrate: constant quality (CRF ``CRF``) capped by x264's VBV at ``MAX_KBITS`` kbit/s
  (buffer: 2 s of it), so the copy holds at most about MAX_KBITS × duration + the buffer, ≤ 38 MB per
  10 minutes whatever the source (plus the MP4 index, ~20 bytes a frame);
- no sound (the report is about frames);
- atomically: a temporary file in the target's folder, renamed once complete.

It raises `reproduce.errors.ReproduceError` (the reason in words) when the copy cannot be made: the
source unreadable, no H.264 encoder in this PyAV build, a full disk. Memory holds one chunk of frames.
"""

from __future__ import annotations

import os
from fractions import Fraction
from typing import NamedTuple

import numpy as np

from alstm_core.disk import is_disk_full
from alstm_core.progress import progress_bar
from reproduce.errors import ReproduceError

MAX_WIDTH = 480                  # pixels
MAX_KBITS = 500                  # kbit/s, the VBV cap
BUFFER_SECONDS = 2.0             # VBV buffer, in seconds of MAX_KBITS
CRF = 28                         # x264 constant quality below the cap (lower: better, larger)
TIME_BASE = Fraction(1, 90000)   # of the copy's timestamps (MPEG's clock: 11 µs)
COPY_NAME, CLIP_NAME = "video.mp4", "clip.mp4"       # in the report's folder


class BrowserCopy(NamedTuple):
    """A written copy: its path, size in pixels, frames, duration (s, the last frame's end) and bytes."""

    path: str
    width: int
    height: int
    frames: int
    duration: float
    bytes: int


def copy_size(width: int, height: int, max_width: int = MAX_WIDTH) -> tuple[int, int]:
    """The copy's (width, height): at most ``max_width`` wide, both even (≥ 2), the aspect ratio kept."""
    w = max(2, min(int(width), int(max_width)) // 2 * 2)
    h = max(2, int(round(height * w / width / 2.0)) * 2)
    return w, h


def write_browser_copy(source: str, out: str, *, max_width: int = MAX_WIDTH, max_kbits: int = MAX_KBITS,
                       crf: int = CRF, progress: bool = False) -> BrowserCopy:
    """Encode ``source`` into ``out`` (see the module docstring); returns what was written."""
    import av

    from caffe_models.errors import VideoError
    from caffe_models.video import VideoReader

    folder = os.path.dirname(os.path.abspath(out))
    tmp = os.path.join(folder, f".{os.path.basename(out)}.tmp{os.getpid()}.mp4")
    written, last = 0, 0
    try:
        with VideoReader(source) as reader:
            info = reader.info
            width, height = copy_size(info.width, info.height, max_width)
            fps = Fraction(info.fps if info.fps > 0 else 25.0).limit_denominator(1001)
            period = int(round(TIME_BASE.denominator / float(fps)))          # one frame, in TIME_BASE
            with av.open(tmp, "w", format="mp4", options={"movflags": "+faststart"}) as container:
                stream = container.add_stream("libx264", rate=fps)
                stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
                stream.codec_context.time_base = TIME_BASE
                stream.codec_context.gop_size = max(1, int(round(2 * float(fps))))   # a key frame every 2 s
                stream.options = {"crf": str(crf), "preset": "veryfast", "maxrate": f"{max_kbits}k",
                                  "bufsize": f"{int(max_kbits * BUFFER_SECONDS)}k", "profile": "main"}
                first = None
                with progress_bar(total=info.frames or None, unit="frame", desc="video copy",
                                  enabled=progress) as bar:
                    for chunk in reader.chunks():
                        for rgb, stamp in zip(chunk.frames, chunk.timestamps.tolist(), strict=True):
                            first = stamp if first is None else first
                            pts = max(int(round((stamp - first) / TIME_BASE)), last + 1 if written else 0)
                            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                            frame = frame.reformat(width=width, height=height, format="yuv420p",
                                                   interpolation="AREA")
                            frame.pts, frame.time_base = pts, TIME_BASE
                            container.mux(stream.encode(frame))
                            written, last = written + 1, pts
                        bar.update(len(chunk.frames))
                container.mux(stream.encode())
        os.replace(tmp, out)
    except ReproduceError:
        raise
    except VideoError as exc:
        raise ReproduceError(str(exc)) from None
    except OSError as exc:
        if is_disk_full(exc):
            raise ReproduceError(f"{out}: the disk is full") from None
        raise ReproduceError(f"{out}: {exc.strerror or exc}") from None
    except (av.FFmpegError, ValueError) as exc:   # e.g. no libx264 in this PyAV build
        raise ReproduceError(f"cannot encode H.264 with PyAV: {exc}") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return BrowserCopy(os.fspath(out), width, height, written, (last + period) * float(TIME_BASE),
                       os.path.getsize(out))
