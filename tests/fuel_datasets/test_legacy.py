"""Legacy Fuel H5PYDataset files, written by the reference writer of docs/framework.md §4.1: the reader
returns the arrays written, and `convert` maps them into our layout."""

import h5py
import numpy as np
import pytest

from fuel_datasets import DatasetError, FeatureDataset, open_dataset
from fuel_datasets.legacy import LegacyFuelDataset, convert_legacy


def split_array(split_dict):             # == H5PYDataset.create_split_array (docs/framework.md §4.1)
    srcs = sorted({s for d in split_dict.values() for s in d})
    clen = max([1] + [len(v[3]) for d in split_dict.values() for v in d.values() if len(v) == 4])
    dt = np.dtype([('split', f'S{max(map(len, split_dict))}'), ('source', f'S{max(map(len, srcs))}'),
                   ('start', '<i8'), ('stop', '<i8'), ('indices', h5py.ref_dtype),
                   ('available', np.bool_), ('comment', f'S{clen}')])
    rows = []
    for sp in split_dict:
        for so in srcs:
            v = split_dict[sp].get(so)
            if v is None:
                rows.append((sp.encode(), so.encode(), 0, 0, h5py.Reference(), False, b'.'))
            else:
                ref = v[2] if len(v) > 2 and v[2] is not None else h5py.Reference()
                rows.append((sp.encode(), so.encode(), v[0], v[1], ref, True,
                             (v[3] if len(v) > 3 and v[3] else '.').encode()))
    return np.array(rows, dtype=dt)


def add_vlen(f, name, seqs, labels=(b"time", b"feature")):
    """A variable-length source with its `shapes` and `shape_labels` scales (the reference writer)."""
    x = f.create_dataset(name, (len(seqs),), dtype=h5py.vlen_dtype(np.float32))
    x[...] = [a.ravel() for a in seqs]
    x.dims[0].label = 'batch'
    s = f.create_dataset(f'{name}_shapes', data=np.array([a.shape for a in seqs], 'int32'))
    s.make_scale('shapes')
    x.dims[0].attach_scale(s)
    lab = f.create_dataset(f'{name}_shape_labels', data=np.array(list(labels), 'S7'))
    lab.make_scale('shape_labels')
    x.dims[0].attach_scale(lab)


def write_vlen_file(path, N=7, n_tr=4, D=5, seed=0):
    rng = np.random.default_rng(seed)
    seqs = [rng.standard_normal((int(T), D)).astype(np.float32) for T in rng.integers(0, 30, N)]
    vgg = [rng.standard_normal((2 * len(a), 3)).astype(np.float32) for a in seqs]
    labels = rng.integers(0, 4, N)
    labels[0] = 3                                       # so the class count is 4
    with h5py.File(path, 'w') as f:
        add_vlen(f, 'features', seqs)
        add_vlen(f, 'vgg', vgg)
        y = f.create_dataset('targets', data=labels.reshape(-1, 1).astype('uint8'))
        y.dims[0].label, y.dims[1].label = 'batch', 'index'
        everything = {'features': (0, n_tr), 'vgg': (0, n_tr), 'targets': (0, n_tr)}
        f.attrs['split'] = split_array({'train': everything,
                                        'test': {k: (n_tr, N) for k in everything}})
        f.attrs['h5py_interface_version'] = b'0.3'
    return seqs, vgg, labels


def test_reader_returns_the_variable_length_examples_written(tmp_path):
    path = tmp_path / "legacy.hdf5"
    seqs, vgg, labels = write_vlen_file(path)
    with open_dataset(path) as ds:
        assert isinstance(ds, LegacyFuelDataset)
        assert ds.sources == ("features", "vgg", "targets")
        assert ds.splits == {"train": ["000000", "000001", "000002", "000003"],
                             "test": ["000004", "000005", "000006"]}
        assert ds.class_names == ["class_0", "class_1", "class_2", "class_3"] and not ds.multilabel
        assert (ds.dim("features"), ds.dim("vgg"), ds.dim("targets")) == (5, 3, 1)
        for e, video_id in enumerate(ds.video_ids):
            np.testing.assert_array_equal(ds.read("features", video_id), seqs[e])
            np.testing.assert_array_equal(ds.read("vgg", video_id), vgg[e])
            assert ds.read("targets", video_id) == labels[e]
            np.testing.assert_array_equal(ds.frame_index("features", video_id), 16 * np.arange(len(seqs[e])))
            assert ds.num_frames(video_id) == max(16 * len(seqs[e]), 16 * len(vgg[e]), 1)
        longest = max(range(len(seqs)), key=lambda e: len(seqs[e]))
        np.testing.assert_array_equal(ds.read_rows("features", ds.video_ids[longest], 2, 9, 3),
                                      seqs[longest][2:9:3])
        assert ds.source_info("features")["axis_labels"] == ["batch", "time", "feature"]
        with pytest.raises(DatasetError, match="no source 'c3d_fc6'; available: features, vgg, targets"):
            ds.read("c3d_fc6", "000000")


def test_fixed_sources_index_splits_and_numpy1_subarray_fields(tmp_path):
    """(E, T, D) features, (E, C) multi-hot targets, a split given by an `indices` reference, and the
    `('start', int64, 1)` spelling, which NumPy 2 reads as a (1,)-subarray."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 4, 3)).astype(np.float32)
    hot = rng.integers(0, 2, (6, 5)).astype(np.uint8)
    path = tmp_path / "fixed.hdf5"
    with h5py.File(path, 'w') as f:
        f.create_dataset('frames', data=x)
        f.create_dataset('targets', data=hot)
        test_ids = f.create_dataset('test_ids', data=np.array([5, 1, 3, 3]))
        dt = np.dtype([('split', 'S5'), ('source', 'S7'), ('start', '<i8', (1,)), ('stop', '<i8', (1,)),
                       ('indices', h5py.ref_dtype), ('available', np.bool_), ('comment', 'S1')])
        rows = [(b'train', s, [0], [3], h5py.Reference(), True, b'.') for s in (b'frames', b'targets')]
        rows += [(b'test', s, [-1], [-1], test_ids.ref, True, b'.') for s in (b'frames', b'targets')]
        f.attrs['split'] = np.array(rows, dtype=dt)
    with LegacyFuelDataset(path, frame_stride={"frames": 8}, class_names="abcde") as ds:
        assert ds.splits == {"train": ["000000", "000001", "000002"], "test": ["000001", "000003", "000005"]}
        assert ds.multilabel and ds.class_names == list("abcde")
        for e in range(6):
            np.testing.assert_array_equal(ds.read("frames", f"{e:06d}"), x[e])
            np.testing.assert_array_equal(ds.read("targets", f"{e:06d}"), hot[e].astype(np.float32))
        np.testing.assert_array_equal(ds.frame_index("frames", "000002"), [0, 8, 16, 24])


def test_bad_legacy_files_are_refused(tmp_path):
    path = tmp_path / "bad.hdf5"
    with h5py.File(path, 'w') as f:
        f.create_dataset('features', data=np.zeros((3, 2)))
        f.attrs['split'] = split_array({'train': {'features': (0, 3), 'targets': (0, 3)}})
    with pytest.raises(DatasetError, match="names source 'targets', which is not a dataset"):
        open_dataset(path)
    with h5py.File(path, 'w') as f:
        add_vlen(f, 'features', [np.zeros((2, 3), np.float32), np.zeros((2, 4), np.float32)])
        f.attrs['split'] = split_array({'train': {'features': (0, 2)}})
    with pytest.raises(DatasetError, match="different feature sizes"):
        open_dataset(path)


def test_convert_maps_examples_to_videos_of_our_layout(tmp_path):
    legacy = tmp_path / "legacy.hdf5"
    seqs, vgg, labels = write_vlen_file(legacy, N=9, n_tr=6)
    out = tmp_path / "ours.h5"
    counts = convert_legacy(legacy, out, rename={"features": "c3d_fc6", "vgg": "vgg_obj_fc8"},
                            frame_stride={"vgg_obj_fc8": 8}, fps=30.0, class_names=list("wxyz"))
    assert counts == (9, 0, False) and counts.written == 9
    with open_dataset(out) as ds:
        assert isinstance(ds, FeatureDataset)
        assert ds.sources == ("c3d_fc6", "vgg_obj_fc8", "targets") and ds.class_names == list("wxyz")
        assert ds.splits == {"train": [f"{e:06d}" for e in range(6)], "valid": [],
                             "test": [f"{e:06d}" for e in range(6, 9)]}
        for e in range(9):
            video_id = f"{e:06d}"
            np.testing.assert_array_equal(ds.read("c3d_fc6", video_id), seqs[e])
            np.testing.assert_array_equal(ds.read("vgg_obj_fc8", video_id), vgg[e])
            np.testing.assert_array_equal(ds.frame_index("vgg_obj_fc8", video_id), 8 * np.arange(len(vgg[e])))
            assert ds.read("targets", video_id) == labels[e] and ds.fps(video_id) == 30.0
            assert ds.num_frames(video_id) == max(16 * len(seqs[e]), 1)
        assert ds.source_info("vgg_obj_fc8")["legacy_source"] == "vgg"
    again = convert_legacy(legacy, out, rename={"features": "c3d_fc6", "vgg": "vgg_obj_fc8"},
                           frame_stride={"vgg_obj_fc8": 8}, class_names=list("wxyz"))
    assert again.written == 0 and again.skipped == 9
    other = tmp_path / "other.hdf5"
    write_vlen_file(other, seed=3)
    with pytest.raises(DatasetError, match="was not converted from"):
        convert_legacy(other, out)
    with pytest.raises(DatasetError, match="no source 'nope'"):
        convert_legacy(legacy, tmp_path / "x.h5", rename={"nope": "a"})
    with pytest.raises(DatasetError, match="cannot become 'training'"):
        convert_legacy(legacy, tmp_path / "x.h5", split_names={"train": "training"})
    assert not (tmp_path / "x.h5").exists()


def test_train_and_evaluate_take_a_legacy_file_as_it_is(tmp_path, capsys):
    """The natural first call on a Fuel file works: it is converted once, beside it, and said so."""
    from reproduce.cli import main

    legacy = tmp_path / "legacy.hdf5"
    rng = np.random.default_rng(0)
    labels = np.arange(12) % 3
    seqs = [(rng.standard_normal((6, 4)) + labels[e]).astype(np.float32) for e in range(12)]
    with h5py.File(legacy, 'w') as f:
        add_vlen(f, 'c3d_fc6', seqs)
        y = f.create_dataset('targets', data=labels.reshape(-1, 1).astype('uint8'))
        y.dims[0].label, y.dims[1].label = 'batch', 'index'
        everything = {'c3d_fc6': (0, 8), 'targets': (0, 8)}
        f.attrs['split'] = split_array({'train': everything, 'test': {k: (8, 12) for k in everything}})
        f.attrs['h5py_interface_version'] = b'0.3'
    flags = ["--input", "c3d_fc6", "--frames", "48", "--steps", "3", "--batch-size", "4", "--iterations", "2",
             "--validate-every", "0", "--hidden-dim", "8", "--quiet"]
    assert main(["train", "--data", str(legacy), "--out", str(tmp_path / "run"), *flags]) == 0
    converted = tmp_path / "legacy.alstm.h5"
    notes = capsys.readouterr().err.strip().splitlines()
    assert notes[0] == (f"alstm train: note: {legacy} is a legacy Fuel file: converted to {converted} (this "
                        "project's layout, one row per 16 frames; `alstm dataset convert` offers other "
                        "settings), which is read instead")
    assert "no c3d_fc6_flip" in notes[1] and len(notes) == 2
    with open_dataset(converted) as ds:
        np.testing.assert_array_equal(ds.read("c3d_fc6", "000005"), seqs[5])
    assert main(["evaluate", "--data", str(legacy), "--checkpoint", str(tmp_path / "run"), "--crops", "2",
                 "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "already converted" in captured.err and "(4 videos" in captured.out
