"""Decoding ahead of the networks: ``decode_in_background`` runs `VideoReader`s in worker threads that
feed bounded queues, so decoding (FFmpeg and swscale release the GIL) overlaps the network's compute,
and memory stays bounded by a per-worker allowance of items and bytes."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

from alstm_core.storage import CHUNK_FRAMES
from caffe_models.errors import VideoError
from caffe_models.video import ContainerInfo, FrameChunk, VideoReader


class DecodedVideo(NamedTuple):
    """One video from ``decode_in_background``.

    ``info`` is None and ``error`` says why when the file could not be opened. Otherwise ``items``
    yields ``transform(chunk)`` for each ``FrameChunk``; once it is exhausted, ``report`` holds
    ``frames_decoded`` and ``problems`` (a dict filled by the worker).
    """

    index: int
    path: str
    info: ContainerInfo | None
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
