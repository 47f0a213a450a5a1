"""Feature files of known rows, for the layout (reader) and writer tests: video v's rows are seeded by v,
so a test rebuilds what it wrote and compares."""

from __future__ import annotations

import numpy as np

from fuel_datasets import FeatureWriter

CLASSES = ["Archery", "Bowling", "Curling"]
SPLIT_OF = ("train", "valid", "test")


def make_video(v: int, dv: int = 6, da: int = 5, frames: int | None = None) -> dict:
    """Video v: C3D-like rows every 16 frames, VGG-like rows every 8, flips of both; seeded by v."""
    rng = np.random.default_rng(v)
    F = frames if frames is not None else 200 + 24 * v
    R1, R2 = F // 16, F // 8
    return dict(
        features={"c3d": rng.standard_normal((R1, dv)), "c3d_flip": rng.standard_normal((R1, dv)),
                  "vgg": rng.standard_normal((R2, da)), "vgg_flip": rng.standard_normal((R2, da))},
        frame_index={"c3d": 16 * np.arange(R1), "vgg": 8 * np.arange(R2)},
        num_frames=F, fps=25.0 + v, targets=v % len(CLASSES), split=SPLIT_OF[v % 3])


def write_file(path, count: int, **kwargs) -> None:
    with FeatureWriter(path, class_names=CLASSES, attrs={"generator": "test"}) as writer:
        writer.set_source_info("c3d", network="C3D", layer="fc6-1", chunk_length=16, stride=16)
        for v in range(count):
            writer.add_video(f"v{v:03d}", **make_video(v, **kwargs))


def assert_video_equal(ds, v: int, **kwargs) -> None:
    video, vid = make_video(v, **kwargs), f"v{v:03d}"
    for source, rows in video["features"].items():
        np.testing.assert_array_equal(ds.read(source, vid), rows.astype(np.float32))
    assert ds.read("targets", vid) == video["targets"]
    assert ds.num_frames(vid) == video["num_frames"] and ds.fps(vid) == video["fps"]
    assert vid in ds.splits[video["split"]]
