"""The summary video (``alstm highlight --clip``): the highlighted moments' frames, in time order, as
H.264."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from alstm_core.progress import progress_bar
from alstm_core.storage import CHUNK_FRAMES
from caffe_models.video import VideoReader


def write_summary_video(video_path: str, spans: Sequence[tuple[int, int]], out: str, *,
                        progress: bool = False) -> int:
    """Re-decode ``video_path`` and encode the frames of ``spans`` ([start, end) frame ranges) in time
    order into ``out`` (atomically: a temporary file renamed); returns the frames written. Odd sizes lose
    their last row/column (4:2:0 needs even sizes)."""
    import av

    spans = sorted((int(a), int(b)) for a, b in spans)
    keep = lambda f: any(a <= f < b for a, b in spans)  # noqa: E731
    folder = os.path.dirname(os.path.abspath(out))
    fd, tmp = tempfile.mkstemp(suffix=os.path.splitext(out)[1] or ".mp4", dir=folder)
    os.close(fd)
    written = 0
    try:
        with VideoReader(video_path) as reader, av.open(tmp, "w") as container:
            fps = Fraction(reader.info.fps if reader.info.fps > 0 else 25.0).limit_denominator(1001)
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height = reader.info.width // 2 * 2, reader.info.height // 2 * 2
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": "20", "preset": "veryfast"}
            with progress_bar(total=sum(b - a for a, b in spans), unit="frame", desc="clip",
                              enabled=progress) as bar:
                for chunk in reader.chunks(CHUNK_FRAMES):
                    if chunk.start >= spans[-1][1]:
                        break
                    for i, rgb in enumerate(chunk.frames):
                        if keep(chunk.start + i):
                            image = np.ascontiguousarray(rgb[:stream.height, :stream.width])
                            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                            frame.pts = written
                            container.mux(stream.encode(frame))
                            written += 1
                            bar.update(1)
            container.mux(stream.encode())
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return written
