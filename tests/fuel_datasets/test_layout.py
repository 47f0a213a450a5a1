"""The HDF5 layout and its reader (fuel_datasets.layout): round trips against the arrays written, Fuel's
split attribute, the reader's errors on bad files (the writer: test_writer.py)."""

import h5py
import numpy as np
import pytest
from helpers.feature_files import CLASSES, SPLIT_OF, assert_video_equal, make_video, write_file

from fuel_datasets import DatasetError, FeatureWriter, open_dataset


def test_round_trip_matches_the_arrays_written(tmp_path):
    path = tmp_path / "f.h5"
    write_file(path, 7)
    with open_dataset(path) as ds:
        assert ds.sources == ("c3d", "c3d_flip", "vgg", "vgg_flip", "targets")
        assert ds.class_names == CLASSES and ds.num_classes == 3 and not ds.multilabel
        assert (ds.dim("c3d"), ds.dim("vgg"), ds.dim("targets")) == (6, 5, 1)
        assert ds.splits == {s: [f"v{v:03d}" for v in range(7) if SPLIT_OF[v % 3] == s] for s in SPLIT_OF}
        for v in range(7):
            assert_video_equal(ds, v)
        vgg = make_video(4)["features"]["vgg"].astype(np.float32)
        np.testing.assert_array_equal(ds.read_rows("vgg", "v004", 3, 17, 2), vgg[3:17:2])
        np.testing.assert_array_equal(ds.frame_index("vgg", "v004"), 8 * np.arange(len(vgg)))
        np.testing.assert_array_equal(ds.frame_index("c3d_flip", "v004"), 16 * np.arange((200 + 96) // 16))
        info = {"network": "C3D", "layer": "fc6-1", "chunk_length": 16, "stride": 16}
        assert ds.source_info("c3d") == info and ds.source_info("c3d_flip") == info   # flip inherits
        assert ds.attrs == {"generator": "test"}
        with pytest.raises(DatasetError, match="rows 0:99"):
            ds.read_rows("c3d", "v000", 0, 99)


def test_multilabel_targets_and_unlabeled_videos(tmp_path):
    path = tmp_path / "m.h5"
    hot = np.array([1, 0, 1])
    with FeatureWriter(path, class_names=CLASSES, multilabel=True) as writer:
        writer.add_video("a", **dict(make_video(0), targets=hot))
        writer.add_video("b", **dict(make_video(1), targets=None))
    with open_dataset(path) as ds:
        assert ds.multilabel and ds.dim("targets") == 3
        np.testing.assert_array_equal(ds.read("targets", "a"), hot.astype(np.float32))
        assert ds.read("targets", "b") is None


def fuel_splits(h5file) -> dict:
    """An independent port of H5PYDataset's split parsing (docs/framework.md §4.1)."""
    out = {}
    for row in h5file.attrs["split"]:
        if not row["available"]:
            continue
        split, source = row["split"].decode(), row["source"].decode()
        ref = row["indices"]
        subset = sorted(set(h5file[ref][()].tolist())) if ref else list(range(row["start"], row["stop"]))
        out.setdefault(split, {})[source] = subset
    return out


def test_split_attribute_is_fuels_structured_array(tmp_path):
    path = tmp_path / "f.h5"
    write_file(path, 5)
    with h5py.File(path, "r") as f:
        array = f.attrs["split"]
        assert array.dtype.names == ("split", "source", "start", "stop", "indices", "available", "comment")
        assert array.dtype["start"] == np.dtype("<i8") and array.dtype["start"].shape == ()
        offsets = [array.dtype.fields[n][1] for n in array.dtype.names]
        assert offsets == [0, 5, 15, 23, 31, 39, 40] and array.dtype.itemsize == 41      # packed: S5, S10
        splits = fuel_splits(f)
        assert set(splits) == set(SPLIT_OF)
        for split in SPLIT_OF:
            expected = [v for v in range(5) if SPLIT_OF[v % 3] == split]
            assert splits[split] == dict.fromkeys(("fps", "num_frames", "targets", "video_id"), expected)
            for source in ("video_id", "targets", "num_frames", "fps"):     # Fuel's rule: sources at root
                assert f[source].shape[0] == 5


def test_reader_names_the_available_sources_and_the_video_with_nan(tmp_path):
    path = tmp_path / "f.h5"
    write_file(path, 3)
    with h5py.File(path, "r+") as f:                    # damage one row after the fact
        first = f["rows/vgg"][1, 0]
        f["features/vgg"][first + 4, 0] = np.inf
    with open_dataset(path) as ds:
        with pytest.raises(DatasetError, match="no source 'vgg_obj_fc8'; available: c3d, c3d_flip, vgg"):
            ds.read("vgg_obj_fc8", "v000")
        with pytest.raises(DatasetError, match="'v001', source 'vgg': NaN or infinite values in rows .4. "):
            ds.read("vgg", "v001")
        ds.read_rows("vgg", "v001", 0, 4)               # rows before the bad one are fine


def test_not_hdf5_and_truncated_files_give_one_line_errors(tmp_path):
    text = tmp_path / "notes.h5"
    text.write_text("not an hdf5 file\n")
    good = tmp_path / "f.h5"
    write_file(good, 4)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    for path, message in ((text, "is not an HDF5 file"), (truncated, "is truncated or damaged"),
                          (tmp_path / "missing.h5", "no such file")):
        with pytest.raises(DatasetError, match=message) as info:
            open_dataset(path)
        assert "\n" not in str(info.value)
