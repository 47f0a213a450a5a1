"""Small test videos encoded with PyAV, returned with the frames that went in.

``write_video(path, frames, codec)`` encodes ``frames`` (T, H, W, 3) uint8 RGB and returns the largest
per-pixel difference that decoding may show for that codec (0 for the lossless ones), so a test can
compare decoded pixels with the truth; ``make_video`` also makes the frames and returns them.
``moving_frames`` makes content that every codec here keeps recognisable (smooth gradients and a moving
square, plus a frame-number stripe), and whose frames all differ, so frame order is checkable. Usable
from any test module: ``from helpers.videos import ...``.
"""

from __future__ import annotations

import os
from fractions import Fraction

import av
import numpy as np

# codec name -> (PyAV encoder, container extension, pixel format, encoder options, max |error| per pixel)
CODECS: dict[str, tuple[str, str, str, dict[str, str], int]] = {
    "h264": ("libx264rgb", ".mp4", "rgb24", {"qp": "0", "preset": "ultrafast"}, 0),  # lossless H.264
    "ffv1": ("ffv1", ".mkv", "bgr0", {}, 0),  # lossless
    "vp9": ("libvpx-vp9", ".webm", "yuv444p", {"lossless": "1", "deadline": "realtime", "cpu-used": "8"}, 3),
    "mjpeg": ("mjpeg", ".avi", "yuvj444p", {"qmin": "1", "qmax": "1"}, 24),  # lossy: check by closeness
    # 4:2:0 halves the colour resolution, so single pixels at colour edges may be far off: no max bound
    "h264_420": ("libx264", ".mp4", "yuv420p", {"crf": "10", "preset": "ultrafast"}, 255),  # even sizes
}


def moving_frames(num_frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB: a per-video random colour gradient, a bright square moving one pixel per
    frame and a dark band whose width encodes the frame number (so neighbouring frames differ)."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0.0, 1.0, height)[:, None, None]
    x = np.linspace(0.0, 1.0, width)[None, :, None]
    c0, cy, cx = rng.uniform(30, 120, 3), rng.uniform(-60, 60, 3), rng.uniform(-60, 60, 3)
    base = c0 + cy * y + cx * x  # (H, W, 3)
    side = max(2, min(height, width) // 4)
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        img = base.copy()
        top = (t * 3) % max(1, height - side)
        left = t % max(1, width - side)
        img[top : top + side, left : left + side] = (230, 220, 40)
        img[:, : 1 + (t % width)] *= 0.35  # band: width t + 1 pixels
        frames[t] = np.clip(img, 0, 255).astype(np.uint8)
    return frames


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    codec: str = "h264",
    fps: int = 25,
    pts: list[int] | None = None,
    time_base: Fraction | None = None,
    rotation: int = 0,
) -> int:
    """Encode ``frames`` (T, H, W, 3) uint8 RGB to ``path``; return the codec's max pixel error.

    ``pts`` (with ``time_base``) sets each frame's presentation time by hand (variable frame rate);
    ``rotation`` writes a display matrix (degrees counter-clockwise, as ``VideoFrame.rotation`` reads).
    MP4 files are written with ``faststart`` (index first) so that a truncated copy stays openable.
    """
    encoder, _, pix_fmt, options, max_error = CODECS[codec]
    container_options = {"movflags": "faststart"} if os.fspath(path).endswith(".mp4") else {}
    with av.open(os.fspath(path), "w", options=container_options) as container:
        stream = container.add_stream(encoder, rate=None if pts is not None else fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = pix_fmt
        stream.options = dict(options)
        tb = time_base or Fraction(1, 1000)
        if pts is not None:
            stream.time_base = tb
            stream.codec_context.time_base = tb
        if rotation:
            stream.set_display_rotation(rotation)
        for t, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = t if pts is None else int(pts[t])
            if pts is not None:
                frame.time_base = tb  # not stream.time_base: the muxer changes it once writing starts
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return max_error


def make_video(path: str | os.PathLike, num_frames: int, height: int, width: int, codec: str = "h264",
               seed: int = 0, **options) -> tuple[np.ndarray, int]:
    """Encode ``moving_frames(num_frames, height, width, seed)`` to ``path`` (``options`` as in
    ``write_video``); return (the true frames (T, H, W, 3) uint8, the codec's max pixel error)."""
    frames = moving_frames(num_frames, height, width, seed)
    return frames, write_video(path, frames, codec, **options)


def write_audio_only(path: str | os.PathLike, seconds: float = 0.5, rate: int = 16000) -> None:
    """An AAC file with one audio stream and no video stream."""
    with av.open(os.fspath(path), "w") as container:
        stream = container.add_stream("aac", rate=rate)
        samples = np.sin(np.linspace(0, 440 * 2 * np.pi * seconds, int(rate * seconds))).astype(np.float32)
        for start in range(0, len(samples) - 1024 + 1, 1024):
            block = samples[None, start : start + 1024]  # (1 channel, 1024 samples)
            frame = av.AudioFrame.from_ndarray(block, format="fltp", layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def truncate(src: str | os.PathLike, dst: str | os.PathLike, fraction: float) -> None:
    """Copy the first ``fraction`` of the bytes of ``src`` to ``dst`` (a download cut short)."""
    data = open(src, "rb").read()
    with open(dst, "wb") as f:
        f.write(data[: int(len(data) * fraction)])


def decode_all(path: str | os.PathLike) -> np.ndarray:
    """Every frame of the first video stream, (T, H, W, 3) uint8 RGB, by PyAV alone (no rotation)."""
    with av.open(os.fspath(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
