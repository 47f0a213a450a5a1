"""Video decoding with PyAV and the frame sampling of the feature extractors.

Frames are streamed: ``VideoReader.chunks(L)`` yields ``FrameChunk``s of at most L frames, each a fresh
``(L, H, W, 3)`` uint8 RGB array, so at most one chunk of decoded pixels is alive per reader.
``decode_in_background`` runs readers in worker threads that feed bounded queues, so decoding (FFmpeg and
swscale release the GIL) overlaps the network's compute.

Decisions:
- Frame k is the k-th frame the decoder outputs (presentation order), whatever its timestamp: a
  variable-frame-rate file keeps every frame once, and its timestamps are reported beside the pixels.
- Rotation metadata (the display matrix) is applied, so frames come out as a player shows them; the
  rotation of the first frame holds for the whole video.
- A damaged stream is decoded as far as it is readable: packets the decoder rejects are skipped and
  listed in ``VideoReader.problems``; a stream that ends before the frame count in its container header
  is reported as truncated. Only a file that cannot be opened, has no video stream or yields no frame at
  all raises ``VideoError``.

The C3D / VGG-19 sampling (SPEC §1, storage convention of the feature files) is the pure function
``sample_frames``.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import av
import numpy as np

from alstm_core.storage import ATTENDED_STRIDE, CHUNK_FRAMES
from caffe_models.errors import VideoError

# Consecutive packets the decoder may reject before the rest of the stream is given up as unreadable.
MAX_CONSECUTIVE_ERRORS = 32


class VideoInfo(NamedTuple):
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


class FrameSampling(NamedTuple):
    """Which frames feed which network (indices into decoding order, int64).

    ``chunk_starts`` (R1,): first frame of each consecutive, non-overlapping C3D clip: 0, L, 2L, …
    (only complete clips). ``attended`` (R2,): frames whose VGG-19 features are taken: 0, s, 2s, …
    within the frames the clips cover, so R2 = R1 · L / s.
    """

    chunk_starts: np.ndarray
    attended: np.ndarray


def sample_frames(num_frames: int, chunk_length: int = CHUNK_FRAMES,
                  attended_stride: int = ATTENDED_STRIDE) -> FrameSampling:
    """The frames of a ``num_frames`` video that the extractors read.

    A window of F = N · L frames starting at a clip boundary then holds N clips and, with s = L (T = N)
    or s = L / 2 (T = 2N), exactly T attended frames, one at the start of every s frames (SPEC §1).
    The stored files use s = 8, from which s = 16 is every other row. Frames after the last complete clip
    are not used.
    """
    if chunk_length < 1 or attended_stride < 1 or chunk_length % attended_stride:
        raise ValueError(
            f"attended_stride ({attended_stride}) must divide chunk_length ({chunk_length}), both ≥ 1"
        )
    if num_frames < 0:
        raise ValueError(f"num_frames must be ≥ 0, got {num_frames}")
    covered = (num_frames // chunk_length) * chunk_length
    return FrameSampling(
        chunk_starts=np.arange(0, covered, chunk_length, dtype=np.int64),
        attended=np.arange(0, covered, attended_stride, dtype=np.int64),
    )


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
            raise VideoError(f"{self.path}: cannot open as a video ({_reason(exc)})") from exc
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

    def _read_info(self, first: av.VideoFrame) -> VideoInfo:
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
        return VideoInfo(frames, fps, duration, width, height, rotation)

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
                self.problems.append(f"reading stopped after frame {self.frames_decoded}: {_reason(exc)}")
                break
            try:
                frames = stream.decode(packet)  # packet of size 0 (the last): flushes the decoder
            except av.FFmpegError as exc:
                skipped, consecutive = skipped + 1, consecutive + 1
                if skipped == 1:
                    where = f"undecodable data after frame {self.frames_decoded}"
                    self.problems.append(f"{where}: {_reason(exc)}")
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


def probe(path: str | os.PathLike) -> VideoInfo:
    """``VideoInfo`` of a file (decodes its first frame only)."""
    with VideoReader(path) as reader:
        return reader.info


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text.strip()


# ----------------------------------------------------------------------------------------------------
# Background decoding
# ----------------------------------------------------------------------------------------------------


class DecodedVideo(NamedTuple):
    """One video from ``decode_in_background``.

    ``info`` is None and ``error`` says why when the file could not be opened. Otherwise ``items``
    yields ``transform(chunk)`` for each ``FrameChunk``; once it is exhausted, ``report`` holds
    ``frames_decoded`` and ``problems`` (a dict filled by the worker).
    """

    index: int
    path: str
    info: VideoInfo | None
    error: str | None
    items: Iterator[Any]
    report: dict


_END = object()


class _Allowance:
    """How much one decode worker may hold ready: at least ``count`` items, and more while the bytes of
    frames it holds stay within ``limit``."""

    def __init__(self, count: int, limit: int):
        self.count, self.limit = count, limit
        self.items = self.bytes = 0
        self.changed = threading.Condition()

    def take(self, size: int, stop: threading.Event) -> bool:
        """Wait for room for an item of ``size`` bytes; False once ``stop`` is set."""
        with self.changed:
            while not stop.is_set():
                if self.items < self.count or self.bytes + size <= self.limit:
                    self.items += 1
                    self.bytes += size
                    return True
                self.changed.wait(0.1)
            return False

    def give_back(self, size: int) -> None:
        with self.changed:
            self.items -= 1
            self.bytes -= size
            self.changed.notify()


def decode_in_background(
    paths: Iterable[str | os.PathLike],
    transform: Callable[[FrameChunk], Any] = lambda chunk: chunk,
    chunk_length: int = CHUNK_FRAMES,
    workers: int = 1,
    queue_size: int = 4,
    threads: int = 0,
    buffer_bytes: int = 0,
) -> Iterator[DecodedVideo]:
    """Decode ``paths`` in ``workers`` threads and yield them in order as ``DecodedVideo``s.

    Video i goes to worker i mod ``workers``, which decodes its videos one after the other and runs
    ``transform`` (e.g. resizing, which releases the GIL) on each chunk before handing it over. Each
    worker holds at least ``queue_size`` items ready, and more while the decoded frames it holds
    stay within ``buffer_bytes / workers`` bytes (counted before ``transform``). The consumer takes
    videos in order, so a worker whose video is not the current one can only decode what its
    allowance holds: with W workers, decoding runs W-wide only when a worker may hold about a whole
    video ahead; with ``buffer_bytes`` 0 memory stays bounded by ``workers · (queue_size + 2)``
    chunks and decoding runs about one worker wide. Each video's ``items`` must be consumed (or
    abandoned) before the next video is requested: asking for the next one drains what is left.
    Exceptions other than ``VideoError`` raised in a worker are re-raised here.
    """
    paths = [os.fspath(p) for p in paths]
    if workers < 1 or queue_size < 1 or buffer_bytes < 0:
        raise ValueError(f"workers and queue_size must be ≥ 1 and buffer_bytes ≥ 0, got {workers}, "
                         f"{queue_size} and {buffer_bytes}")
    stop = threading.Event()
    queues = [queue.Queue() for _ in range(workers)]
    allowances = [_Allowance(queue_size, buffer_bytes // workers) for _ in range(workers)]

    def put(w: int, item: tuple, size: int = 0) -> bool:
        if not allowances[w].take(size, stop):
            return False
        queues[w].put((*item, size))
        return True

    def work(w: int) -> None:
        for index in range(w, len(paths), workers):
            try:
                reader = VideoReader(paths[index], threads=threads)
            except VideoError as exc:
                if not put(w, ("open", None, str(exc))):
                    return
                continue
            except BaseException as exc:  # a bug: hand it to the consumer
                put(w, ("crash", exc, None))
                return
            with reader:
                if not put(w, ("open", reader.info, None)):
                    return
                try:
                    for chunk in reader.chunks(chunk_length):
                        if not put(w, ("chunk", transform(chunk), None), chunk.frames.nbytes):
                            return
                except BaseException as exc:
                    put(w, ("crash", exc, None))
                    return
                if not put(w, ("end", reader.frames_decoded, list(reader.problems))):
                    return

    threads_ = [
        threading.Thread(target=work, args=(w,), daemon=True, name=f"decode-{w}") for w in range(workers)
    ]
    for t in threads_:
        t.start()

    def get(w: int) -> tuple:
        kind, value, extra, size = queues[w].get()
        allowances[w].give_back(size)
        if kind == "crash":
            raise value
        return kind, value, extra

    def items(w: int, report: dict) -> Iterator[Any]:
        while True:
            kind, value, extra = get(w)
            if kind == "end":
                report.update(frames_decoded=value, problems=extra)
                report["done"] = True
                return
            yield value

    try:
        for index, path in enumerate(paths):
            w = index % workers
            _, info, error = get(w)
            report: dict = {"done": info is None}
            video_items = items(w, report) if info is not None else iter(())
            yield DecodedVideo(index, path, info, error, video_items, report)
            if not report["done"]:
                for _ in video_items:  # the consumer skipped the rest of this video
                    pass
    finally:
        stop.set()
        for t in threads_:
            t.join()
