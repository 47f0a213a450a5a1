"""FeatureWriter (fuel_datasets.writer): split changes, bad input, and the commit protocol (atomic
creation, killed writers, recovery)."""

import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
from helpers import ROOT, TESTS
from helpers.feature_files import CLASSES, assert_video_equal, make_video, write_file

from fuel_datasets import DatasetError, FeatureWriter, open_dataset
from fuel_datasets.superblock import write_flags


def test_set_splits_moves_named_videos_only(tmp_path):
    path = tmp_path / "f.h5"
    write_file(path, 6)                  # train v0 v3, valid v1 v4, test v2 v5
    with FeatureWriter(path) as writer:
        assert write_flags(path) == 0b101              # a clean file is reopened straight into SWMR mode
        writer.set_splits({"valid": ["v000", "v004"]})
        with pytest.raises(DatasetError, match="both"):
            writer.set_splits({"train": ["v001"], "test": ["v001"]})
        with pytest.raises(DatasetError, match="no video 'nope'"):
            writer.set_splits({"train": ["nope"]})
    with open_dataset(path) as ds:
        assert ds.splits == {"train": ["v003"], "valid": ["v000", "v004"], "test": ["v002", "v005"]}
        assert ds.describe()["splits"]["none"] == 1                          # v001 left valid


@pytest.mark.parametrize("change, message", [
    (lambda v: v["features"].pop("vgg_flip"), "every video must provide the same sources"),
    (lambda v: v["features"].update(c3d=np.zeros((len(v["features"]["c3d"]), 7))), "D = 7"),
    (lambda v: v["features"]["vgg"].__setitem__((2, 1), np.nan), "'vgg': NaN or infinite values in rows .2"),
    (lambda v: v["frame_index"]["vgg"].__setitem__(1, 3), "evenly spaced"),
    (lambda v: v["features"].update(c3d_flip=v["features"]["c3d_flip"][:-1]), "rows and frames of 'c3d'"),
    (lambda v: v.update(split="validation"), "not one of train, valid, test"),
    (lambda v: v.update(targets=3), "class index in \\[0, 3\\)"),
    (lambda v: v.update(num_frames=16), "outside the video's 16 frames"),
])
def test_bad_videos_are_refused_with_a_reason(tmp_path, change, message):
    path = tmp_path / "f.h5"
    with FeatureWriter(path, class_names=CLASSES) as writer:
        writer.add_video("v000", **make_video(0))
        video = make_video(1)
        change(video)
        with pytest.raises(DatasetError, match=message):
            writer.add_video("v001", **video)
        with pytest.raises(DatasetError, match="already in"):
            writer.add_video("v000", **make_video(0))
    with open_dataset(path) as ds:
        assert ds.video_ids == ["v000"]


def test_existing_file_checks_classes_and_reserved_attributes(tmp_path):
    path = tmp_path / "f.h5"
    write_file(path, 1)
    with pytest.raises(DatasetError, match="classes"):
        FeatureWriter(path, class_names=["x"])
    with pytest.raises(DatasetError, match="reserved"):
        FeatureWriter(path, attrs={"split": "no"})
    with pytest.raises(DatasetError, match="multi-label file needs its class names"):
        FeatureWriter(tmp_path / "new.h5", multilabel=True)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:                  # an HDF5 file of the oldest format, not ours
        f["x"] = np.zeros(3)
    with pytest.raises(DatasetError, match="not a feature dataset"):
        FeatureWriter(other)


def test_new_file_gets_its_name_only_at_the_first_commit(tmp_path):
    path = tmp_path / "f.h5"
    with FeatureWriter(path, class_names=CLASSES) as writer:
        assert not path.exists() and (tmp_path / "f.h5.tmp").exists()
        writer.add_video("v000", **make_video(0))
        assert path.exists() and not (tmp_path / "f.h5.tmp").exists()
        with open_dataset(path) as ds:                  # readable while the writer appends
            assert ds.video_ids == ["v000"]
        with pytest.raises(DatasetError, match="being written by another process"):
            FeatureWriter(path)
        writer.add_video("v001", **make_video(1))
    with pytest.raises(RuntimeError):
        with FeatureWriter(tmp_path / "g.h5", class_names=CLASSES):
            raise RuntimeError("extraction failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.h5"]


CHILD = textwrap.dedent("""
    import os, signal, sys
    import h5py
    sys.path[:0] = [{root!r}, {tests!r}]      # the packages first, then the test folders' helpers
    from helpers.feature_files import CLASSES, make_video
    from fuel_datasets import FeatureWriter
    path, mode = sys.argv[1], sys.argv[2]
    with FeatureWriter(path, class_names=CLASSES) as writer:
        for v in range(3):
            writer.add_video(f"v{{v:03d}}", **make_video(v))
        if mode == "after-rows":       # die once the 4th video's rows are flushed, before its commit
            flush = h5py.File.flush
            def flush_then_die(self):
                flush(self)
                os.kill(os.getpid(), signal.SIGKILL)
            h5py.File.flush = flush_then_die
        for v in range(3, 10**6):
            writer.add_video(f"v{{v:03d}}", **make_video(v % 50, frames=4000))
            print(v, flush=True)
""")


def run_child(tmp_path, mode: str):
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(root=str(ROOT), tests=str(TESTS)))
    path = tmp_path / "k.h5"
    proc = subprocess.Popen([sys.executable, str(script), str(path), mode], stdout=subprocess.PIPE, text=True)
    if mode == "running":
        for _ in range(2):             # two more commits, then kill it in the middle of the next video
            proc.stdout.readline()
        proc.kill()
    proc.wait()
    assert proc.returncode == -9
    return path


@pytest.mark.parametrize("mode", ["after-rows", "running"])
def test_killed_writer_leaves_its_committed_videos_readable_and_appendable(tmp_path, mode):
    path = run_child(tmp_path, mode)
    assert write_flags(path) != 0                       # HDF5 still marks it open for writing
    with open_dataset(path) as ds:
        committed = ds.num_videos
        assert committed == 3 if mode == "after-rows" else committed >= 5
        assert ds.video_ids == [f"v{v:03d}" for v in range(committed)]
        for v in range(3):
            assert_video_equal(ds, v)
        if mode == "after-rows":
            assert ds.describe()["uncommitted_videos"] == 1
    with FeatureWriter(path) as writer:
        assert writer.recovered and writer.num_videos == committed
        assert write_flags(path) == 0b101              # appending in SWMR-write mode
        for v in range(committed, committed + 2):
            writer.add_video(f"v{v:03d}", **make_video(v))
    assert write_flags(path) == 0
    with open_dataset(path) as ds:
        assert ds.num_videos == committed + 2 and ds.describe()["uncommitted_videos"] == 0
        for v in (0, 1, 2, committed, committed + 1):
            assert_video_equal(ds, v)
        assert sorted(sum(ds.splits.values(), [])) == ds.video_ids     # no stale split entry
        rows = ds.row_table("c3d")
        assert (rows[1:, 0] == rows[:-1, 0] + rows[:-1, 1]).all()       # rows packed, tail trimmed


def test_a_file_without_classes_holds_unlabelled_videos(tmp_path):
    """Features of whole videos need no labels: no class list, every target -1, read back as None."""
    path = tmp_path / "videos.h5"
    rows = np.arange(6, dtype=np.float32).reshape(3, 2)
    with FeatureWriter(path) as writer:
        writer.add_video("a", {"c3d": rows}, {"c3d": 16 * np.arange(3)}, 50, 29.97, split=None)
    with FeatureWriter(path) as writer:                # appending keeps the file's (empty) classes
        writer.add_video("b", {"c3d": rows + 1}, {"c3d": 16 * np.arange(3)}, 48, 25.0, split=None)
    with open_dataset(path) as ds:
        assert ds.class_names == [] and ds.num_classes == 0 and not ds.multilabel
        assert ds.video_ids == ["a", "b"]
        assert ds.read("targets", "a") is None and ds.read("targets", "b") is None
        np.testing.assert_array_equal(ds.read("c3d", "b"), rows + 1)
        assert ds.fps("a") == 29.97 and ds.num_frames("b") == 48
        assert ds.splits == {"train": [], "valid": [], "test": []}
    with pytest.raises(DatasetError, match="has 0 classes"):
        FeatureWriter(path, class_names=["x"])
