"""The frames the feature extractors read: the sampling convention of the feature files.

C3D reads consecutive, non-overlapping 16-frame clips; VGG-19 reads one frame every 8 (the attended
stride), within the frames the clips cover (docs/paper.md §1; `alstm_core.storage` holds the numbers).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from alstm_core.storage import ATTENDED_STRIDE, CHUNK_FRAMES


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
    or s = L / 2 (T = 2N), exactly T attended frames, one at the start of every s frames (docs/paper.md §1).
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
