"""From the real datasets' files to the paper's tables: label-free extraction, `alstm dataset build`
(ActivityNet annotation JSON, Hollywood2 ClipSets, the ActivityNet C3D release, folders of per-video
arrays), then training, evaluation and `experiments/tableK.py --data DIR`.

Every input is written here in its official layout: videos encoded with PyAV, the annotation JSON in
the release's shape (taxonomy, database, subsets, segments in seconds), ClipSets text files, the C3D
release's ``v_<id>/c3d_features`` groups, ``<id>.npy`` / ``.npz`` arrays. Built rows are compared with
the extracted (or written) rows at frame ranges worked out by hand in the comments.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from helpers import ROOT
from helpers.activitynet import (
    RELEASE_DATABASE,
    anet_video,
    index_rows,
    write_annotations,
    write_release,
)
from helpers.networks import use_small_networks
from helpers.videos import moving_frames, write_video

import fuel_datasets.build as build_module
from fuel_datasets import DatasetError, open_dataset
from fuel_datasets.build import build_activitynet, build_hollywood2
from fuel_datasets.feature_inputs import SourceRows, cut_rows
from fuel_datasets.streams import TestWindows, WindowSpec
from reproduce.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::caffe_models.RandomWeightsWarning")

def _contents(path) -> dict:
    """Everything a reader sees of a feature file, for comparing two builds."""
    with open_dataset(path) as ds:
        out = {"ids": ds.video_ids, "classes": ds.class_names, "splits": ds.splits,
               "targets": ds.targets_array().tolist(), "frames": ds.num_frames_array().tolist(),
               "fps": [ds.fps(v) for v in ds.video_ids], "multilabel": ds.multilabel}
        for source in ds.feature_sources:
            out[source] = ([ds.read(source, v).tolist() for v in ds.video_ids],
                           [ds.frame_index(source, v).tolist() for v in ds.video_ids],
                           json.dumps(ds.source_info(source), sort_keys=True))
    return out


def _cli(*argv) -> int:
    return main([str(a) for a in argv])


# ---------------------------------------------------------------------------------------------------
# ActivityNet: videos → alstm extract (no labels) → alstm dataset build → table1.py --data DIR
# ---------------------------------------------------------------------------------------------------

# id (file name) -> frames, at 30 fps
ANET_VIDEOS = {"v_aaa": 900, "v_bbb": 300, "ccc": 600, "v_fff": 420}
ANET_DATABASE = {
    # 30 s, four segments of 7 s (210 frames) and one of 1 s (30 frames: too short for F = 192)
    "aaa": anet_video("training", 30.0, ((1.0, 8.0), "Surfing"), ((8.0, 15.0), "Skiing"),
                  ((15.0, 22.0), "Surfing"), ((22.0, 29.0), "Skiing"), ((29.0, 30.0), "Surfing")),
    # the annotation says 12 s, the file has 10 s (300 frames): [2, 20] is clipped to [2, 10], 240 frames
    "bbb": anet_video("validation", 12.0, ((2.0, 20.0), "Skiing")),
    # the file has no v_ prefix: still matched; two segments of 8 s (240 frames)
    "ccc": anet_video("training", 20.0, ((0.0, 8.0), "Skiing"), ((10.0, 18.0), "Surfing")),
    "ddd": anet_video("training", 50.0, ((0.0, 40.0), "Surfing")),           # no file: listed as missing
    "eee": anet_video("testing", 50.0),                                      # no labels: counted only
    "fff": anet_video("validation", 14.0, ((0.5, 13.5), "Surfing")),         # 390 frames from frame 15
}


@pytest.fixture(scope="module")
def anet_videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("anet_videos")
    for k, (name, frames) in enumerate(ANET_VIDEOS.items()):
        write_video(folder / f"{name}.mp4", moving_frames(frames, 32, 40, seed=k), "h264", fps=30)
    return folder


@pytest.fixture(scope="module")
def anet_extracted(anet_videos, tmp_path_factory):
    """`alstm extract VIDEOS --out videos.h5`: no labels, no classes."""
    out = tmp_path_factory.mktemp("anet") / "videos.h5"
    with pytest.MonkeyPatch.context() as patch:
        use_small_networks(patch)
        assert _cli("extract", anet_videos, "--out", out, "--allow-random-weights", "--quiet") == 0
    return out


def test_extraction_needs_no_labels(anet_extracted):
    with open_dataset(anet_extracted) as ds:
        assert ds.class_names == []
        assert sorted(ds.video_ids) == sorted(ANET_VIDEOS)
        assert all(ds.read("targets", v) is None for v in ds.video_ids)
        for vid, frames in ANET_VIDEOS.items():
            assert ds.num_frames(vid) == frames and ds.fps(vid) == pytest.approx(30.0)
            np.testing.assert_array_equal(ds.frame_index("c3d_fc6", vid), 16 * np.arange(frames // 16))
            # attended rows: frames 0 and 8 of every complete 16-frame clip
            np.testing.assert_array_equal(ds.frame_index("vgg_obj_fc8", vid),
                                          8 * np.arange(2 * (frames // 16)))


def test_a_command_that_needs_labels_says_how_to_add_them(anet_extracted, tmp_path, capsys):
    code = _cli("train", "--data", anet_extracted, "--input", "c3d_fc6", "--out", tmp_path / "run",
                "--validate-every", "0", "--quiet")
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "no label" in err and "--labels" in err and "alstm dataset build" in err


@pytest.fixture(scope="module")
def anet_built(anet_extracted):
    folder = anet_extracted.parent
    annotations = write_annotations(folder / "activity_net.v1-3.min.json", ANET_DATABASE)
    out = folder / "data" / "activitynet.h5"
    out.parent.mkdir()
    summary = build_activitynet(annotations, [str(anet_extracted)], out)
    return annotations, out, summary


def test_activitynet_build_cuts_the_segments_frames(anet_extracted, anet_built):
    _, out, summary = anet_built
    # kept: aaa's four 7 s segments, ccc's two, bbb's clipped one, fff's one
    assert summary.samples == 8
    assert summary.dropped_short == 1 and summary.clipped == 1
    assert summary.missing == {"ddd": "no features"}
    assert Path(summary.missing_file).read_text() == "ddd\tno features\n"
    # six training samples: round(6 · 2500 / 25124) = 1 moves to valid
    assert summary.split_sizes == {"train": 5, "valid": 1, "test": 2}
    with open_dataset(anet_extracted) as videos, open_dataset(out) as built:
        assert built.class_names == ["Skiing", "Surfing"] and not built.multilabel
        assert sorted(built.splits["test"]) == ["v_bbb_0", "v_fff_0"]
        assert built.read("targets", "v_aaa_1") == 0 and built.read("targets", "v_aaa_0") == 1
        # v_aaa_0 is [1, 8] s at 30 fps: frames [30, 240). C3D rows start every 16 frames, so rows 2..14
        # (frames 32 ... 224), counted from frame 30: 2, 18, ..., 194. VGG rows every 8: rows 4..29.
        np.testing.assert_array_equal(built.read("c3d_fc6", "v_aaa_0"), videos.read("c3d_fc6", "v_aaa")[2:15])
        np.testing.assert_array_equal(built.frame_index("c3d_fc6", "v_aaa_0"), 16 * np.arange(2, 15) - 30)
        np.testing.assert_array_equal(built.read("vgg_obj_fc8_flip", "v_aaa_0"),
                                      videos.read("vgg_obj_fc8_flip", "v_aaa")[4:30])
        np.testing.assert_array_equal(built.frame_index("vgg_obj_fc6", "v_aaa_0"), 8 * np.arange(4, 30) - 30)
        assert built.num_frames("v_aaa_0") == 210
        # v_bbb_0: [2, 10] s → frames [60, 300): C3D rows 4..17 (64 ... 272), VGG rows 8..35 (64 ... 280,
        # the last complete clip's)
        np.testing.assert_array_equal(built.read("c3d_fc8", "v_bbb_0"), videos.read("c3d_fc8", "v_bbb")[4:18])
        np.testing.assert_array_equal(built.read("vgg_obj_fc6", "v_bbb_0"),
                                      videos.read("vgg_obj_fc6", "v_bbb")[8:36])
        assert built.num_frames("v_bbb_0") == 240
        # ccc (file without v_): [10, 18] s → frames [300, 540): C3D rows 19..33 (304 ... 528)
        np.testing.assert_array_equal(built.read("c3d_fc6", "v_ccc_1"), videos.read("c3d_fc6", "ccc")[19:34])
        # fff: [0.5, 13.5] s → frames [15, 405): C3D rows 1..25 (16 ... 400), first at 1 frame in
        np.testing.assert_array_equal(built.frame_index("c3d_fc6", "v_fff_0"), 16 * np.arange(1, 26) - 15)
        assert built.fps("v_fff_0") == pytest.approx(30.0)
        assert built.source_info("c3d_fc6") == videos.source_info("c3d_fc6")


def test_the_same_inputs_and_seed_give_the_same_file(anet_extracted, anet_built, tmp_path):
    annotations, out, _ = anet_built
    again = build_activitynet(annotations, [str(anet_extracted)], tmp_path / "again.h5")
    assert again.split_sizes == {"train": 5, "valid": 1, "test": 2}
    assert _contents(tmp_path / "again.h5") == _contents(out)


def test_a_killed_build_leaves_no_output_and_resumes(anet_extracted, anet_built, tmp_path, monkeypatch):
    annotations, out, _ = anet_built
    target = tmp_path / "activitynet.h5"
    real, calls = build_module._add_sample, []

    def dying(*args):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(1)
        real(*args)

    monkeypatch.setattr(build_module, "_add_sample", dying)
    with pytest.raises(KeyboardInterrupt):
        build_activitynet(annotations, [str(anet_extracted)], target)
    assert not target.exists() and (tmp_path / "activitynet.h5.part").exists()
    monkeypatch.setattr(build_module, "_add_sample", real)
    summary = build_activitynet(annotations, [str(anet_extracted)], target)
    assert summary.resumed == 3 and not (tmp_path / "activitynet.h5.part").exists()
    assert _contents(target) == _contents(out)


def test_activitynet_build_command_prints_one_summary_line(anet_extracted, anet_built, tmp_path, capsys):
    annotations, _, _ = anet_built
    out = tmp_path / "a.h5"
    assert _cli("dataset", "build", "activitynet", "--annotations", annotations, "--features", anet_extracted,
                "--out", out, "--quiet") == 0
    printed = capsys.readouterr().out.strip()
    assert printed == (f"{out}: 8 samples kept (train 5, valid 1, test 2); 1 dropped as too short; "
                       f"1 annotated videos without features (listed in {out}.missing.txt); "
                       "1 segments clipped to the video")


def _table(number: int, data: Path, results: Path) -> subprocess.CompletedProcess:
    script = ROOT / "experiments" / f"table{number}.py"
    proc = subprocess.run([sys.executable, str(script), "--data", str(data), "--quick", "--quiet",
                           "--results", str(results)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


@pytest.mark.slow
def test_tables_1_and_4_run_on_the_built_files(anet_built, h2_inputs, tmp_path):
    """The rows whose sources the files hold are trained and evaluated; the others say what is missing.
    Table 4's Hollywood2 models start from Table 1's ActivityNet models (the same results folder)."""
    _, out, _ = anet_built
    data = tmp_path / "data"
    data.mkdir()
    os.link(out, data / "activitynet.h5")
    sets, clips = h2_inputs
    build_hollywood2(sets, [str(clips)], data / "hollywood2.h5")
    results = tmp_path / "results"
    proc = _table(1, data, results)
    table = json.loads((results / "table1.json").read_text())
    rows = {row["name"]: row for row in table["rows"]}
    for name in ("LSTM-C3D (fc6)", "aLSTM-C3D (fc8)", "aLSTM-VGG_obj (fc6)", "aLSTM-VGG_obj (fc8)"):
        assert "not_run" not in rows[name]
        assert 0.0 <= rows[name]["measured"]["accuracy"] <= 100.0
    for name in ("aLSTM-VGG_sce (fc6)", "aLSTM-VGG_act (fc8)"):
        assert rows[name]["measured"] == {"accuracy": None, "mAP": None}
        assert "has no vgg_" in rows[name]["not_run"]
        assert f"{name}: not run" in proc.stderr
    # the small C3D's fc8 has 5 scores, not one per class (2): the baseline cannot be read from it
    assert "not one per class" in rows["C3D (fc8)"]["not_run"]
    assert "not run" in proc.stdout                          # the printed table says so too
    proc = _table(4, data, results)
    table = json.loads((results / "table4.json").read_text())
    rows = {row["name"]: row for row in table["rows"]}
    assert 0.0 <= rows["aLSTM-VGG_obj (fc8)(b)"]["measured"]["mAP"] <= 100.0
    assert "has no vgg_act_fc6" in rows["aLSTM-VGG_act (fc6)"]["not_run"]
    run = results / "runs" / "data" / "hollywood2" / "alstm-obj-fc8"
    config = json.loads((run / "config.json").read_text())
    assert config["init_from"].endswith("activitynet/alstm-obj-fc8/best.pt") and config["multilabel"]


# ---------------------------------------------------------------------------------------------------
# Hollywood2: ClipSets + clips → alstm extract → alstm dataset build hollywood2
# ---------------------------------------------------------------------------------------------------

H2_ACTIONS = ("Kiss", "Run")          # written in this order; the classes come out sorted
H2_TRAIN = {"actioncliptrain00001": (1, 0), "actioncliptrain00002": (1, 1), "actioncliptrain00003": (0, 1),
            "actioncliptrain00004": (0, 1)}
H2_TEST = {"actioncliptest00001": (0, 1), "actioncliptest00002": (1, 0), "actioncliptest00003": (1, 1)}


@pytest.fixture(scope="module")
def h2_inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hollywood2")
    clips, sets = folder / "AVIClips", folder / "ClipSets"
    clips.mkdir()
    sets.mkdir()
    for subset, truth in (("train", H2_TRAIN), ("test", H2_TEST)):
        for a, action in enumerate(H2_ACTIONS):
            (sets / f"{action}_{subset}.txt").write_text(
                "".join(f"{clip}  {1 if labels[a] else -1}\n" for clip, labels in truth.items()))
    (sets / "Kiss_autotrain.txt").write_text("actioncliptrainauto00001  1\n")
    missing = "actioncliptest00003"                      # listed in ClipSets, no clip file
    for k, clip in enumerate(c for c in [*H2_TRAIN, *H2_TEST] if c != missing):
        write_video(clips / f"{clip}.mp4", moving_frames(200 + 16 * k, 32, 40, seed=k), "h264", fps=25)
    write_video(clips / "actioncliptrainauto00001.mp4", moving_frames(40, 32, 40), "h264", fps=25)
    out = folder / "clips.h5"
    with pytest.MonkeyPatch.context() as patch:
        use_small_networks(patch)
        assert _cli("extract", clips, "--out", out, "--allow-random-weights", "--quiet") == 0
    return sets, out


def test_hollywood2_build_multi_hot_targets_split_and_whole_clips(h2_inputs, tmp_path, capsys):
    sets, clips = h2_inputs
    out = tmp_path / "hollywood2.h5"
    assert _cli("dataset", "build", "hollywood2", "--clipsets", sets, "--features", clips, "--out", out,
                "--quiet") == 0
    assert capsys.readouterr().out.strip() == (
        f"{out}: 6 samples kept (train 4, valid 0, test 2); 1 annotated videos without features "
        f"(listed in {out}.missing.txt)")
    with open_dataset(clips) as videos, open_dataset(out) as built:
        assert built.multilabel and built.class_names == ["Kiss", "Run"]
        assert built.splits == {"train": sorted(H2_TRAIN), "valid": [], "test": sorted(H2_TEST)[:2]}
        assert "actioncliptrainauto00001" not in built.video_ids            # autotrain left out
        for clip, labels in {**H2_TRAIN, **H2_TEST}.items():
            if clip == "actioncliptest00003":
                continue
            np.testing.assert_array_equal(built.read("targets", clip), np.array(labels, np.float32))
            for source in ("c3d_fc6", "vgg_obj_fc8_flip"):
                np.testing.assert_array_equal(built.read(source, clip), videos.read(source, clip))
                np.testing.assert_array_equal(built.frame_index(source, clip),
                                              videos.frame_index(source, clip))
            assert built.num_frames(clip) == videos.num_frames(clip)
    assert (tmp_path / "hollywood2.h5.missing.txt").read_text() == "actioncliptest00003\tno features\n"


# ---------------------------------------------------------------------------------------------------
# The ActivityNet C3D release and folders of per-video arrays
# ---------------------------------------------------------------------------------------------------


# the ActivityNet release's videos r1..r4 (helpers.activitynet.RELEASE_DATABASE): 100 rows of the release
# cover 8 · 99 + 16 = 808 frames; over 808 / 30 s that is 30 fps


def test_c3d_release_builds_trains_and_evaluates(tmp_path, capsys):
    release = write_release(tmp_path / "sub_activitynet_v1-3.c3d.hdf5",
                            {f"v_r{k}": index_rows(100, 500, 1000 * k) for k in range(1, 5)})
    annotations = write_annotations(tmp_path / "anet.json", RELEASE_DATABASE)
    out = tmp_path / "data" / "activitynet.h5"
    summary = build_activitynet(annotations, [str(release)], out)
    assert summary.sources == ("c3d_fc7pca",) and summary.samples == 5 and summary.dropped_short == 0
    with open_dataset(out) as built, h5py.File(release) as f:
        # r1 [2, 20] s at 30 fps: frames [60, 600); rows start at 8 r: rows 8..74 (64 ... 592)
        np.testing.assert_array_equal(built.read("c3d_fc7pca", "v_r1_0"), f["v_r1/c3d_features"][8:75])
        np.testing.assert_array_equal(built.frame_index("c3d_fc7pca", "v_r1_0"), 8 * np.arange(8, 75) - 60)
        assert built.fps("v_r1_0") == pytest.approx(30.0) and built.num_frames("v_r1_0") == 540
        assert built.source_info("c3d_fc7pca")["layer"] == "fc7"
    # T = 2N attends every release row of a window, and the input reads every other one (16 frames apart)
    windows = TestWindows(out, split="test", input_source="c3d_fc7pca", attended_source="c3d_fc7pca",
                          spec=WindowSpec(192, 12, attended_per_step=2), crops=3, seed=0, flip=False)
    for _, batch in windows:
        first = batch.attended[:, 0, 0]                        # (B,) row numbers
        np.testing.assert_array_equal(batch.attended[:, :, 0], first[:, None] + torch.arange(24))
        np.testing.assert_array_equal(batch.inputs[:, :, 0], first[:, None] + 2 * torch.arange(12))
    windows.close()
    run = tmp_path / "run"
    assert _cli("train", "--data", out, "--input", "c3d_fc7pca", "--attend", "c3d_fc7pca",
                "--attended-per-step", "2", "--out", run, "--iterations", "4", "--batch-size", "8",
                "--validate-every", "0", "--hidden-dim", "16", "--match-dim", "16", "--quiet") == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"alstm train: note: {out} has no c3d_fc7pca_flip (features of flipped frames): training "
                   "without them (--no-flip says so explicitly)"]
    assert json.loads((run / "config.json").read_text())["flip"] is False
    assert _cli("evaluate", "--data", out, "--checkpoint", run, "--crops", "2", "--json", tmp_path / "e.json",
                "--quiet") == 0
    captured = capsys.readouterr()
    assert "evaluating without them" in captured.err and "2 windows each" in captured.out
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["flip"] is False and report["num_videos"] == 2


def test_fps_comes_from_our_extraction_when_the_release_has_the_same_video(tmp_path):
    """Our file measured 25 fps for v_r1: the release's rows are then cut at 25 fps, not at the 30
    the annotated duration would give."""
    from fuel_datasets.writer import FeatureWriter

    release = write_release(tmp_path / "release.hdf5",
                            {"v_r1": index_rows(100, 500), "v_r3": index_rows(100, 500)})
    ours = tmp_path / "ours.h5"
    with FeatureWriter(ours) as writer:
        for vid in ("v_r1", "v_r3"):
            writer.add_video(vid, {"c3d_fc6": index_rows(50, 4)}, {"c3d_fc6": 16 * np.arange(50)}, 808, 25.0,
                             split=None)
    database = {k: RELEASE_DATABASE[k] for k in ("r1", "r3")}
    summary = build_activitynet(write_annotations(tmp_path / "a.json", database),
                                [str(ours), f"pca={release}"], tmp_path / "out.h5", min_frames=16)
    assert summary.sources == ("c3d_fc6", "pca")
    with open_dataset(tmp_path / "out.h5") as built:
        # [2, 20] s at 25 fps: frames [50, 500): release rows 7..62 (56 ... 496); C3D rows 4..31 (64 ... 496)
        np.testing.assert_array_equal(built.read("pca", "v_r1_0")[:, 0], np.arange(7, 63))
        np.testing.assert_array_equal(built.read("c3d_fc6", "v_r1_0")[:, 0], np.arange(4, 32))
        assert built.fps("v_r1_0") == 25.0 and built.num_frames("v_r1_0") == 450


def test_per_video_arrays_build_train_and_evaluate(tmp_path, capsys):
    folder = tmp_path / "i3d"
    folder.mkdir()
    for k in range(1, 5):                      # 60 rows of 16 frames = 960 frames = 32 s at 30 fps
        if k % 2:
            np.save(folder / f"v_r{k}.npy", index_rows(60, 7, 100 * k))
        else:
            np.savez(folder / f"r{k}.npz", features=index_rows(60, 7, 100 * k), extra=np.zeros(2))
    database = {k: {**v, "duration": 32.0} for k, v in RELEASE_DATABASE.items()}
    annotations = write_annotations(tmp_path / "anet.json", database)
    out = tmp_path / "activitynet.h5"
    assert _cli("dataset", "build", "activitynet", "--annotations", annotations, "--features", folder,
                "--stride", "16", "--out", out, "--quiet") == 0
    capsys.readouterr()
    with open_dataset(out) as built:
        assert built.feature_sources == ("i3d",)
        # r1 [2, 20] s at 960 / 32 = 30 fps: frames [60, 600): rows 4..37 (64 ... 592)
        np.testing.assert_array_equal(built.read("i3d", "v_r1_0")[:, 0], 100 + np.arange(4, 38))
        np.testing.assert_array_equal(built.read("i3d", "v_r4_0")[:, 0], 400 + np.arange(6, 49))   # [90, 780)
    run = tmp_path / "run"
    assert _cli("train", "--data", out, "--input", "i3d", "--attend", "i3d", "--out", run,
                "--iterations", "3", "--batch-size", "4", "--validate-every", "0", "--hidden-dim", "8",
                "--match-dim", "8", "--quiet") == 0
    assert _cli("evaluate", "--data", out, "--checkpoint", run, "--crops", "2", "--quiet") == 0
    assert "2 windows each" in capsys.readouterr().out


def test_cut_rows_keeps_rows_starting_inside_the_segment():
    rows = SourceRows(np.arange(10, dtype=np.float32)[:, None], first_frame=4, stride=8)   # 4, 12, ..., 76
    kept, index = cut_rows(rows, 12, 25)                      # frames [12, 37): rows at 12, 20, 28, 36
    np.testing.assert_array_equal(kept[:, 0], [1, 2, 3, 4])
    np.testing.assert_array_equal(index, [0, 8, 16, 24])
    single = SourceRows(np.ones((1, 3), np.float32), first_frame=5, stride=0)
    assert len(cut_rows(single, 0, 5)[0]) == 0 and len(cut_rows(single, 0, 6)[0]) == 1


# ---------------------------------------------------------------------------------------------------
# Bad input: one line, exit 2, never a traceback
# ---------------------------------------------------------------------------------------------------


def _build_error(capsys, *argv) -> str:
    code = _cli("dataset", "build", *argv, "--quiet")
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    annotations = write_annotations(tmp_path / "a.json", RELEASE_DATABASE)
    out = tmp_path / "out.h5"
    folder = tmp_path / "arrays"
    folder.mkdir()
    np.save(folder / "r1.npy", index_rows(60, 7))
    np.save(folder / "r2.npy", index_rows(60, 6))
    arrays = ("activitynet", "--annotations", annotations, "--features", folder, "--out", out)
    err = _build_error(capsys, *arrays, "--stride", "16")
    assert "D = 6 in video 'r2' but D = 7 in video 'r1'" in err
    bad = index_rows(60, 7)
    bad[5, 3] = np.nan
    np.save(folder / "r2.npy", bad)
    err = _build_error(capsys, *arrays, "--stride", "16")
    assert "video 'r2'" in err and "NaN" in err
    assert "--stride" in _build_error(capsys, *arrays)
    other = write_release(tmp_path / "other.hdf5", {"v_zzz": index_rows(30, 5)})
    assert "no video of" in _build_error(capsys, "activitynet", "--annotations", annotations, "--features",
                                         other, "--out", out)
    assert "no such file" in _build_error(capsys, "activitynet", "--annotations", annotations, "--features",
                                          tmp_path / "nope.h5", "--out", out)
    assert "annotation file" in _build_error(capsys, "activitynet", "--annotations", tmp_path / "nope.json",
                                             "--features", other, "--out", out)
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    assert "not an HDF5 file" in _build_error(capsys, "activitynet", "--annotations", annotations,
                                              "--features", tmp_path / "junk.h5", "--out", out)
    assert "ClipSets" in _build_error(capsys, "hollywood2", "--clipsets", tmp_path / "nope", "--features",
                                      other, "--out", out)
    assert not out.exists()


def test_a_source_given_twice_for_a_video_is_an_error(tmp_path):
    a = write_release(tmp_path / "a.hdf5", {"v_r1": index_rows(100, 5)})
    b = write_release(tmp_path / "b.hdf5", {"v_r1": index_rows(100, 5)})
    with pytest.raises(DatasetError, match="source 'c3d_fc7pca' in both"):
        build_activitynet(write_annotations(tmp_path / "a.json", {"r1": RELEASE_DATABASE["r1"]}),
                          [str(a), str(b)], tmp_path / "out.h5")


def test_ids_match_with_the_crawler_prefix_even_when_the_id_itself_starts_with_v(tmp_path):
    """YouTube ids may begin with "v_": the release then names the group "v_v_…"."""
    database = {"v_r1": RELEASE_DATABASE["r1"], "r2": RELEASE_DATABASE["r2"]}
    release = write_release(tmp_path / "release.hdf5",
                            {"v_v_r1": index_rows(100, 5), "v_r2": index_rows(100, 5)})
    summary = build_activitynet(write_annotations(tmp_path / "a.json", database), [str(release)],
                                tmp_path / "o.h5", min_frames=16)
    assert summary.missing == {} and summary.samples == 3


def test_without_a_taxonomy_the_classes_are_those_of_the_whole_file(tmp_path):
    """A class whose only video has no features still has its index: partial downloads agree."""
    database = {"r1": RELEASE_DATABASE["r1"], "r3": {**RELEASE_DATABASE["r3"], "annotations": [
        {"segment": [1.0, 25.0], "label": "Archery"}]}}
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"version": "VERSION 1.3", "database": database}))
    release = write_release(tmp_path / "release.hdf5", {"v_r1": index_rows(100, 5)})
    build_activitynet(path, [str(release)], tmp_path / "o.h5")
    with open_dataset(tmp_path / "o.h5") as ds:
        assert ds.class_names == ["Archery", "Skiing", "Surfing"]
        assert ds.read("targets", "v_r1_0") == 2


def test_more_bad_inputs(tmp_path, capsys):
    annotations = write_annotations(tmp_path / "a.json", RELEASE_DATABASE)
    release = write_release(tmp_path / "release.hdf5", {"v_r1": index_rows(100, 5)})
    base = ("activitynet", "--annotations", annotations, "--features", release)
    assert "one of the inputs" in _build_error(capsys, *base, "--out", release)
    assert "one of the inputs" in _build_error(capsys, *base, "--out", annotations)
    assert "--min-frames 0" in _build_error(capsys, *base, "--out", tmp_path / "o.h5", "--min-frames", "0")
    folder = tmp_path / "words"
    folder.mkdir()
    np.save(folder / "r1.npy", np.full((60, 2), "a"))
    words = ("activitynet", "--annotations", annotations, "--features", folder, "--stride", "16")
    assert "holds <U1 values" in _build_error(capsys, *words, "--out", tmp_path / "o.h5")
    assert h5py.is_hdf5(release)                       # the inputs are untouched


def test_one_build_per_output_at_a_time(tmp_path):
    import fcntl

    annotations = write_annotations(tmp_path / "a.json", RELEASE_DATABASE)
    release = write_release(tmp_path / "release.hdf5", {"v_r1": index_rows(100, 5)})
    out = tmp_path / "o.h5"
    with open(tmp_path / "o.h5.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(DatasetError, match="another build is writing"):
            build_activitynet(annotations, [str(release)], out)
    build_activitynet(annotations, [str(release)], out)
    assert out.exists() and not (tmp_path / "o.h5.lock").exists()
