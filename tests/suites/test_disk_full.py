"""A disk that fills up: one line naming the full disk and the file, exit 2, no crash, what was committed
kept, and the same command finishing the job once there is room again.

The disk is made full by reporting little free space (``os.statvfs``), by a write that fails the way
h5py and torch report ENOSPC, or, for a manual check, by a small tmpfs (see the README's notes)."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
import torch
from helpers.activitynet import RELEASE_DATABASE, index_rows, write_annotations, write_release
from helpers.videos import moving_frames, write_video

import fuel_datasets.writer as writer_module
from fuel_datasets import FeatureWriter, open_dataset
from fuel_datasets.writer import DiskFullError
from reproduce.cli import main
from reproduce.runs.checkpoint import load_checkpoint

pytestmark = pytest.mark.filterwarnings("ignore::caffe_models.RandomWeightsWarning")


class _Disk:
    """``os.statvfs`` that reports ``free`` bytes once ``full`` is set."""

    def __init__(self, monkeypatch, free=100_000):
        self.full, self.free, real = False, free, os.statvfs

        def statvfs(path):
            stats = real(path)
            if not self.full:
                return stats
            return os.statvfs_result((stats.f_bsize, 1, stats.f_blocks, 0, self.free, stats.f_files,
                                      stats.f_ffree, stats.f_favail, stats.f_flag, stats.f_namemax))

        monkeypatch.setattr(writer_module.os, "statvfs", statvfs)


def _one_line_error(capsys, code) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    err = "\n".join(line for line in lines if "RANDOM weights" not in line)   # extract's own warning
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def _add(writer, k):
    rows = np.full((30, 64), k, np.float32)
    writer.add_video(f"v{k}", {"c3d_fc6": rows}, {"c3d_fc6": 16 * np.arange(30)}, 480, 30.0, split=None)


def test_writer_refuses_a_video_the_disk_cannot_take_and_keeps_the_rest(tmp_path, monkeypatch):
    disk = _Disk(monkeypatch)
    path = tmp_path / "f.h5"
    with pytest.raises(DiskFullError, match=r"f\.h5: the disk is full .* the 2 videos written before stay"):
        with FeatureWriter(path) as writer:
            for k in range(5):
                disk.full = k == 2
                _add(writer, k)
    with open_dataset(path) as ds:
        assert ds.video_ids == ["v0", "v1"]
        np.testing.assert_array_equal(ds.read("c3d_fc6", "v1"), np.full((30, 64), 1, np.float32))
    disk.full = False
    with FeatureWriter(path) as writer:
        for k in range(5):
            if not writer.has_video(f"v{k}"):
                _add(writer, k)
    with open_dataset(path) as ds:
        assert ds.video_ids == [f"v{k}" for k in range(5)]


def test_a_write_that_fails_for_want_of_space_keeps_what_was_committed(tmp_path, monkeypatch):
    """The check above can be outrun (another process fills the disk): HDF5's own failure then gives
    the same error, and the next writer trims the half-written video."""
    path = tmp_path / "f.h5"
    real = FeatureWriter._write_video

    def failing(self, V, *args):
        if V == 2:
            raise OSError(errno.ENOSPC, "Can't write data (file write failed: errno = 28, error message = "
                                        "'No space left on device')")
        return real(self, V, *args)

    monkeypatch.setattr(FeatureWriter, "_write_video", failing)
    with pytest.raises(DiskFullError) as caught:
        with FeatureWriter(path) as writer:
            for k in range(4):
                _add(writer, k)
    assert caught.value.abandoned_hdf5 and "HDF5 could not write video 'v2'" in str(caught.value)
    monkeypatch.setattr(FeatureWriter, "_write_video", real)
    with open_dataset(path) as ds:
        assert ds.video_ids == ["v0", "v1"]
    with FeatureWriter(path) as writer:
        _add(writer, 2)
    with open_dataset(path) as ds:
        assert ds.video_ids == ["v0", "v1", "v2"]


def test_extract_into_a_full_disk_says_so_in_one_line(tmp_path, small_networks, monkeypatch, capsys):
    folder = tmp_path / "videos"
    folder.mkdir()
    for k in range(3):
        write_video(folder / f"clip{k}.mp4", moving_frames(48, 24, 32, seed=k), "h264", fps=25)
    out = tmp_path / "f.h5"
    disk = _Disk(monkeypatch)
    real_add, added = writer_module.FeatureWriter.add_video, []

    def add_then_fill(self, *args, **kwargs):
        disk.full = len(added) == 1                  # the second video finds the disk full
        real_add(self, *args, **kwargs)
        added.append(1)

    monkeypatch.setattr(writer_module.FeatureWriter, "add_video", add_then_fill)
    err = _one_line_error(capsys, main(["extract", str(folder), "--out", str(out), "--allow-random-weights",
                                        "--quiet"]))
    assert err.startswith(f"alstm extract: error: {out}: the disk is full") and "1 videos written" in err
    with open_dataset(out) as ds:
        assert ds.video_ids == ["clip0"]
    monkeypatch.setattr(writer_module.FeatureWriter, "add_video", real_add)
    disk.full = False
    assert main(["extract", str(folder), "--out", str(out), "--allow-random-weights", "--quiet"]) == 0
    assert "skipped 1 already present" in capsys.readouterr().out
    with open_dataset(out) as ds:
        assert ds.video_ids == ["clip0", "clip1", "clip2"]


def test_build_into_a_full_disk_leaves_no_output_and_resumes(tmp_path, monkeypatch, capsys):
    release = write_release(tmp_path / "release.hdf5", {f"v_r{k}": index_rows(100, 50) for k in range(1, 5)})
    annotations = write_annotations(tmp_path / "a.json", RELEASE_DATABASE)
    out = tmp_path / "activitynet.h5"
    argv = ["dataset", "build", "activitynet", "--annotations", str(annotations), "--features", str(release),
            "--out", str(out), "--quiet"]
    disk = _Disk(monkeypatch)
    disk.full = True
    err = _one_line_error(capsys, main(argv))
    assert "the disk is full" in err and "activitynet.h5.part" in err
    assert not out.exists() and not (tmp_path / "activitynet.h5.lock").exists()
    disk.full = False
    assert main(argv) == 0
    with open_dataset(out) as ds:
        assert ds.num_videos == 5


def test_train_whose_checkpoint_no_longer_fits(tmp_path, monkeypatch, capsys):
    from fuel_datasets.synthetic import SynthConfig, write_synthetic

    data = tmp_path / "synth.h5"
    write_synthetic(str(data), SynthConfig(num_classes=4, num_videos=30, seed=0))
    run = tmp_path / "run"
    argv = ["train", "--data", str(data), "--input", "c3d_fc6", "--attend", "vgg_obj_fc8", "--out", str(run),
            "--iterations", "6", "--batch-size", "8", "--validate-every", "0", "--checkpoint-every", "2",
            "--hidden-dim", "8", "--match-dim", "8", "--quiet"]
    real_save, saves = torch.save, []

    def save(obj, f, *args, **kwargs):
        if len(saves) == 2:                          # torch's own words for a write that failed
            raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed "
                               "writing file data/3: file write failed")
        saves.append(1)
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    err = _one_line_error(capsys, main(argv))
    assert err.startswith("alstm train: error: the disk is full") and str(run / "last.pt") in err
    assert load_checkpoint(run / "last.pt")["iteration"] == 4
    assert not [name for name in os.listdir(run) if ".tmp" in name]
    monkeypatch.setattr(torch, "save", real_save)
    assert main([*argv, "--resume"]) == 0
    assert load_checkpoint(run / "last.pt")["iteration"] == 6


def test_a_disk_too_full_to_create_the_file(tmp_path, monkeypatch, capsys):
    disk = _Disk(monkeypatch, free=4096)
    disk.full = True
    with pytest.raises(DiskFullError, match="creating it needs"):
        FeatureWriter(tmp_path / "new.h5")
    assert os.listdir(tmp_path) == []                # no temporary file left behind


def test_convert_copy_into_a_full_disk_names_the_output(tmp_path, monkeypatch, capsys):
    import shutil

    from helpers.builders import write_ours

    source = write_ours(tmp_path / "ours.h5")

    def full(src, dst):
        with open(dst, "wb") as f:
            f.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device", str(src))

    monkeypatch.setattr(shutil, "copyfile", full)
    err = _one_line_error(capsys, main(["dataset", "convert", str(source), str(tmp_path / "copy.h5")]))
    assert err == (f"alstm dataset: error: {tmp_path / 'copy.h5'} could not be written (No space left on "
                   "device); nothing was written")
    assert sorted(os.listdir(tmp_path)) == ["ours.h5"]
