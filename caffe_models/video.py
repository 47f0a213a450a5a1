"""Video decoding with PyAV and the frame sampling of the feature extractors.

Frames are streamed: ``VideoReader.chunks(L)`` yields ``FrameChunk``s of at most L frames, each a fresh
``(L, H, W, 3)`` uint8 RGB array, so at most one chunk of decoded pixels is alive per reader.
`caffe_models.prefetch` runs readers ahead of the networks; `caffe_models.sampling` says which frames
the extractors read.

Decisions:
- Frame k is the k-th frame the decoder outputs (presentation order), whatever its timestamp: a
  variable-frame-rate file keeps every frame once, and its timestamps are reported beside the pixels.
- Rotation metadata (the display matrix) is applied, so frames come out as a player shows them; the
  rotation of the first frame holds for the whole video.
- A damaged stream is decoded as far as it is readable: packets the decoder rejects are skipped and
  listed in ``VideoReader.problems``; a stream that ends before the frame count in its container header
  is reported as truncated. Only a file that cannot be opened, has no video stream or yields no frame at
  all raises ``VideoError``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import NamedTuple

import av
import numpy as np

from alstm_core.storage import CHUNK_FRAMES
from caffe_models.errors import VideoError

# Consecutive packets the decoder may reject before the rest of the stream is given up as unreadable.
MAX_CONSECUTIVE_ERRORS = 32


class ContainerInfo(NamedTuple):
    """What the container says about a video, before decoding it all.

    ``frames`` is the header's frame count, or ``round(duration * fps)`` where the container has none
    (WebM, some AVI), 0 if neither is known; the number actually decoded is ``VideoReader.frames_decoded``.
    ``fps`` is the stream's average rate (frames per second); ``duration`` in seconds; ``width`` and
    ``height`` in pixels as displayed (after rotation); ``rotation`` in degrees counter-clockwise, one of
    0, 90, 180, 270.
    """

    frames: int
    fps: float
    duration: float
    width: int
    height: int
    rotation: int


class FrameChunk(NamedTuple):
    """``frames`` (T, H, W, 3) uint8 RGB, T ≤ the chunk length (only the last chunk is shorter);
    ``start``: index of its first frame in decoding order; ``timestamps`` (T,) float64 presentation
    times in seconds (index / fps where the stream has no timestamps)."""

    start: int
    frames: np.ndarray
    timestamps: np.ndarray


def rotate_frame(frame: np.ndarray, rotation: int) -> np.ndarray:
    """Turn a decoded (H, W, 3) frame ``rotation`` degrees counter-clockwise, as the display matrix asks.

    Returns a contiguous (H, W, 3) or (W, H, 3) array; ``rotation`` is rounded to a multiple of 90.
    """
    k = int(round(rotation / 90.0)) % 4
    if k == 0:
        return frame
    return np.ascontiguousarray(np.rot90(frame, k=k, axes=(0, 1)))


class VideoReader:
    """One video file, decoded in order; a context manager (closes the container).

    ``info`` is known once the reader is open (the first frame is decoded to learn the rotation and the
    displayed size). ``chunks(L)`` may be iterated once; afterwards ``frames_decoded`` is the number of
    frames it produced and ``problems`` lists, in words, what could not be read. ``threads``: FFmpeg's
    decoding threads for this file (0: FFmpeg chooses).
    """

    def __init__(self, path: str | os.PathLike, threads: int = 0):
        self.path = os.fspath(path)
        self.problems: list[str] = []
        self.frames_decoded = 0
        self._started = False
        try:
            self._container = av.open(self.path)
        except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
            raise VideoError(f"{self.path}: cannot open as a video ({reason(exc)})") from exc
        try:
            if not self._container.streams.video:
                kinds = sorted({s.type for s in self._container.streams}) or ["none"]
                raise VideoError(f"{self.path}: no video stream (streams: {', '.join(kinds)})")
            self._stream = self._container.streams.video[0]
            self._stream.thread_type = "AUTO"  # frame + slice threads inside FFmpeg
            self._stream.codec_context.thread_count = threads
            self._frames = self._decoded_frames()
            self._first = next(self._frames, None)
            if self._first is None:
                why = "; ".join(self.problems) or "the stream holds no frame"
                raise VideoError(f"{self.path}: no decodable video frame ({why})")
            self.info = self._read_info(self._first)
        except BaseException:
            self._container.close()
            raise

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if hasattr(self, "_frames"):
            self._frames.close()
        self._container.close()

    def _read_info(self, first: av.VideoFrame) -> ContainerInfo:
        stream = self._stream
        fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif self._container.duration is not None:
            duration = self._container.duration / av.time_base
        else:
            duration = 0.0
        frames = int(stream.frames) if stream.frames else int(round(duration * fps))
        rotation = int(round((first.rotation or 0) / 90.0)) % 4 * 90
        width, height = (first.height, first.width) if rotation in (90, 270) else (first.width, first.height)
        self._coded_size = (first.width, first.height)
        return ContainerInfo(frames, fps, duration, width, height, rotation)

    def _decoded_frames(self) -> Iterator[av.VideoFrame]:
        """Frames in output order; rejected packets are skipped and recorded in ``problems``."""
        stream, consecutive, skipped = self._stream, 0, 0
        packets = self._container.demux(stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except (av.FFmpegError, OSError) as exc:  # the file ends mid-packet, or reading fails
                self.problems.append(f"reading stopped after frame {self.frames_decoded}: {reason(exc)}")
                break
            try:
                frames = stream.decode(packet)  # packet of size 0 (the last): flushes the decoder
            except av.FFmpegError as exc:
                skipped, consecutive = skipped + 1, consecutive + 1
                if skipped == 1:
                    where = f"undecodable data after frame {self.frames_decoded}"
                    self.problems.append(f"{where}: {reason(exc)}")
                if consecutive >= MAX_CONSECUTIVE_ERRORS:
                    self.problems.append(f"gave up after {consecutive} undecodable packets in a row")
                    break
                continue
            consecutive = 0
            yield from frames
        if skipped > 1:
            self.problems.append(f"{skipped} packets skipped in all")
        try:  # frames still buffered in the decoder (when the loop stopped early)
            yield from stream.decode(None)
        except av.FFmpegError:
            pass

    def chunks(self, chunk_length: int = CHUNK_FRAMES) -> Iterator[FrameChunk]:
        """Consecutive chunks of ``chunk_length`` frames (the last may be shorter); see ``FrameChunk``."""
        if self._started:
            raise RuntimeError("VideoReader.chunks can be iterated only once")
        self._started = True
        width, height = self._coded_size
        rotation, fps = self.info.rotation, self.info.fps
        corrupt = resized = 0
        frames = self._prepend(self._first, self._frames)
        self._first = None  # the reader keeps no decoded frame once streaming starts
        buf = times = None
        filled = 0
        for frame in frames:
            if frame.is_corrupt:
                corrupt += 1
            if (frame.width, frame.height) != (width, height):
                resized += 1  # a mid-stream resolution change: scaled back to the first frame's size
            rgb = frame.to_ndarray(format="rgb24", width=width, height=height)  # (h, w, 3) uint8
            rgb = rotate_frame(rgb, rotation)  # (H, W, 3) as displayed
            if buf is None:
                buf = np.empty((chunk_length, *rgb.shape), dtype=np.uint8)  # (L, H, W, 3)
                times = np.empty(chunk_length, dtype=np.float64)
            buf[filled] = rgb
            times[filled] = frame.time if frame.time is not None else self.frames_decoded / (fps or 1.0)
            filled += 1
            self.frames_decoded += 1
            if filled == chunk_length:
                yield FrameChunk(self.frames_decoded - filled, buf, times)
                buf, times, filled = None, None, 0
        if filled:
            yield FrameChunk(self.frames_decoded - filled, buf[:filled], times[:filled])
        if corrupt:
            self.problems.append(f"{corrupt} frames flagged corrupt by the decoder (kept)")
        if resized:
            self.problems.append(f"{resized} frames changed size mid-stream; scaled to {width}x{height}")
        self._check_length()

    def _check_length(self) -> None:
        expected, got = self.info.frames, self.frames_decoded
        exact = bool(self._stream.frames)  # a header count, not an estimate from the duration
        if expected and got < expected and (exact or expected - got > max(2, 0.05 * expected)):
            about = "" if exact else "about "
            self.problems.append(f"truncated: decoded {got} of {about}{expected} frames")

    @staticmethod
    def _prepend(first: av.VideoFrame, rest: Iterator[av.VideoFrame]) -> Iterator[av.VideoFrame]:
        yield first
        yield from rest


def probe(path: str | os.PathLike) -> ContainerInfo:
    """``ContainerInfo`` of a file (decodes its first frame only)."""
    with VideoReader(path) as reader:
        return reader.info


def reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text.strip()


