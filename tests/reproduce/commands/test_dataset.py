"""`alstm dataset info | convert | repair`: output checked against the files written, one-line errors."""

import json
import subprocess
import sys

import h5py
import numpy as np
from helpers.builders import write_ours

from fuel_datasets import open_dataset
from fuel_datasets.superblock import write_flags
from reproduce.cli import main


def test_info_prints_sources_splits_and_counts(tmp_path, capsys):
    path = write_ours(tmp_path / "f.h5")
    assert main(["dataset", "info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "videos: 4   classes: 2 (single-label)" in out
    assert "splits: train 3, valid 0, test 1, none 0" in out
    assert [line.split() for line in out.splitlines() if line.startswith("c3d_fc6")] == \
        [["c3d_fc6", "3", str(12 + 13 + 14 + 15), "16", "C3D", "fc6-1"]]
    assert "generator: cli-test" in out
    assert main(["dataset", "info", str(path), "--json"]) == 0
    described = json.loads(capsys.readouterr().out)
    with open_dataset(path) as ds:
        assert described == json.loads(json.dumps(ds.describe()))
    assert described["size_bytes"] == path.stat().st_size and described["num_videos"] == 4


def write_legacy(path):
    """A fixed-size Fuel file: (E, T, D) features, (E, 1) targets, train/test by slices."""
    features = np.arange(5 * 13 * 2, dtype=np.float32).reshape(5, 13, 2)
    dt = np.dtype([("split", "S5"), ("source", "S8"), ("start", "<i8"), ("stop", "<i8"),
                   ("indices", h5py.ref_dtype), ("available", np.bool_), ("comment", "S1")])
    rows = [(split, source, a, b, h5py.Reference(), True, b".")
            for split, a, b in ((b"train", 0, 3), (b"test", 3, 5)) for source in (b"features", b"targets")]
    with h5py.File(path, "w") as f:
        f.create_dataset("features", data=features)
        f.create_dataset("targets", data=np.array([[0], [1], [1], [0], [1]], np.uint8))
        f.attrs["split"] = np.array(rows, dtype=dt)
    return features


def test_convert_then_info(tmp_path, capsys):
    legacy, out = tmp_path / "legacy.hdf5", tmp_path / "ours.h5"
    features = write_legacy(legacy)
    names = tmp_path / "classes.txt"
    names.write_text("walk\nwave\n")
    assert main(["dataset", "convert", str(legacy), str(out), "--source", "features=c3d_fc6",
                 "--split", "test=valid", "--class-names", str(names)]) == 0
    assert "5 videos written, 0 already there" in capsys.readouterr().out
    with open_dataset(out) as ds:
        assert ds.class_names == ["walk", "wave"]
        assert ds.splits == {"train": ["000000", "000001", "000002"], "valid": ["000003", "000004"],
                             "test": []}                                      # test mapped onto valid
        for e in range(5):
            np.testing.assert_array_equal(ds.read("c3d_fc6", f"{e:06d}"), features[e])
            np.testing.assert_array_equal(ds.frame_index("c3d_fc6", f"{e:06d}"), 16 * np.arange(13))
    assert main(["dataset", "info", str(legacy)]) == 0
    assert "Fuel H5PYDataset (legacy)" in capsys.readouterr().out


def test_user_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    legacy = tmp_path / "legacy.hdf5"
    write_legacy(legacy)
    for argv, message in ((["info", str(text)], "is not an HDF5 file"),
                          (["convert", str(legacy), str(tmp_path / "o.h5"), "--source", "features"],
                           "must look like NAME=VALUE"),
                          (["convert", str(legacy), str(tmp_path / "o.h5"), "--stride", "c3d=8"],
                           "frame strides given for ['c3d']"),
                          (["repair", str(tmp_path / "missing.h5")], "no such file")):
        assert main(["dataset", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("alstm dataset: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "o.h5").exists()


def test_repair_after_a_writer_killed_during_a_structural_change(tmp_path, capsys):
    path = write_ours(tmp_path / "f.h5")
    # A writer killed outside SWMR mode (flags: open for write, not SWMR): readers refuse the file.
    code = ("import h5py, os, signal, sys; f = h5py.File(sys.argv[1], 'r+', libver=('v110', 'v110'));"
            "f.flush(); os.kill(os.getpid(), signal.SIGKILL)")
    assert subprocess.run([sys.executable, "-c", code, str(path)]).returncode == -9
    assert write_flags(path) == 1
    assert main(["dataset", "info", str(path)]) == 2
    assert f"run `alstm dataset repair {path}`" in capsys.readouterr().err
    assert main(["dataset", "repair", str(path)]) == 0
    assert "repaired; 4 complete videos" in capsys.readouterr().out
    assert write_flags(path) == 0
    with open_dataset(path) as ds:
        np.testing.assert_array_equal(ds.read("c3d_fc6", "clip3"), np.full((15, 3), 3, np.float32))


def test_convert_of_a_file_already_in_our_layout_copies_it_faithfully(tmp_path, capsys):
    path = write_ours(tmp_path / "ours.h5")
    out = tmp_path / "out.h5"
    assert main(["dataset", "convert", str(path), str(out)]) == 0
    assert "needs no conversion: copied as it is" in capsys.readouterr().out
    with open_dataset(path) as a, open_dataset(out) as b:
        assert (a.video_ids, a.splits, a.class_names, a.feature_sources) == \
            (b.video_ids, b.splits, b.class_names, b.feature_sources)
        for vid in a.video_ids:
            np.testing.assert_array_equal(a.read("c3d_fc6", vid), b.read("c3d_fc6", vid))
            assert a.read("targets", vid) == b.read("targets", vid) and a.fps(vid) == b.fps(vid)
        assert b.source_info("c3d_fc6") == a.source_info("c3d_fc6")
    assert main(["dataset", "convert", str(path), str(tmp_path / "x.h5"), "--source", "c3d_fc6=c3d"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs no conversion" in err and "--source" in err
    assert not (tmp_path / "x.h5").exists()
