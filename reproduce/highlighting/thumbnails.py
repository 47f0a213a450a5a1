"""Thumbnails of the attended frames, kept on disk while a video is decoded, for the report."""

from __future__ import annotations

import io
import os
import tempfile

import numpy as np

THUMBNAIL_WIDTH = 160                       # pixels; the report shows frames at most this wide


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
