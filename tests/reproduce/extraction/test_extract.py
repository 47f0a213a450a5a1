"""`alstm extract` and reproduce.extraction: stored features against a direct run of the same networks
on the true frames, resuming after SIGKILL, bad videos, labels, weights bookkeeping, shards and merging
(the engine itself, caffe_models.extract, is tested in tests/caffe_models/test_extract.py).

The networks are the release architectures at reduced width (random or written-here weights), so a
whole extraction takes well under a second.
"""

import hashlib
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from helpers.caffe_files import mean_bytes, net_bytes, network_layers
from helpers.networks import assert_features_close, direct_features, small_c3d, small_vgg
from helpers.videos import moving_frames, truncate, write_audio_only, write_video

import reproduce.commands.extract as extract_cmd
from fuel_datasets import FeatureWriter, open_dataset
from reproduce.cli import main
from reproduce.extraction.inputs import list_videos

pytestmark = pytest.mark.filterwarnings("ignore::caffe_models.RandomWeightsWarning")


# ---------------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------------


def run_cli(*argv):
    """The command, in float32 unless told otherwise: the tests compare with float32 computations."""
    precision = [] if "--precision" in argv else ["--precision", "float32"]
    return main(["extract", *map(str, argv), *precision])


def test_random_weights_are_refused_unless_allowed(tmp_path, small_networks, capsys, clip_videos):
    folder, _ = clip_videos
    code = run_cli(folder / "odd.mkv", "--out", tmp_path / "f.h5", "--classes", "a,b")
    err = capsys.readouterr().err
    assert code == 2 and "no weight file for c3d, vgg_obj" in err and "--allow-random-weights" in err
    assert not (tmp_path / "f.h5").exists()
    assert run_cli(folder / "odd.mkv", "--out", tmp_path / "f.h5", "--classes", "a,b",
                   "--allow-random-weights", "--quiet") == 0
    assert "RANDOM weights" in capsys.readouterr().err
    with open_dataset(tmp_path / "f.h5") as ds:
        assert ds.source_info("vgg_obj_fc6")["real_weights"] is False
        assert ds.attrs["random_weights"] == "c3d, vgg_obj"


def test_running_flags_out_of_range_end_with_one_line(tmp_path, small_networks, capsys, clip_videos):
    folder, _ = clip_videos
    common = [folder / "odd.mkv", "--out", tmp_path / "f.h5", "--classes", "a,b", "--allow-random-weights"]
    for flags, message in ((["--buffer-mb", "-1"], "--buffer-mb -1: give 0 or more megabytes"),
                           (["--workers", "0"], "--workers and --queue-size must be at least 1")):
        assert run_cli(*common, *flags) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "f.h5").exists()
    assert run_cli(*common, "--buffer-mb", "64", "--workers", "2", "--quiet") == 0   # a read-ahead allowance
    with open_dataset(tmp_path / "f.h5") as ds:
        assert ds.splits["test"] == ["odd"]


def test_weight_files_are_loaded_and_recorded(tmp_path, small_networks, clip_videos, capsys):
    folder, truths = clip_videos
    rng = np.random.default_rng(0)
    c3d_file, vgg_file = tmp_path / "c3d.caffemodel", tmp_path / "vgg.caffemodel"
    mean_file = tmp_path / "mean.binaryproto"
    names = {"fc6": "fc6-1", "fc7": "fc7-1", "fc8": "fc8-1"}
    c3d_layers = network_layers(small_c3d(), names=names, schema="c3d", rng=rng)
    c3d_file.write_bytes(net_bytes(c3d_layers, schema="c3d"))
    vgg_file.write_bytes(net_bytes(network_layers(small_vgg(1000), rng=rng)))
    mean = rng.uniform(90, 130, (3, 16, 128, 171)).astype(np.float32)
    mean_file.write_bytes(mean_bytes(mean, "c3d"))
    code = run_cli(folder / "odd.mkv", "--out", tmp_path / "f.h5", "--classes", "a,b", "--c3d", c3d_file,
                   "--c3d-mean", mean_file, "--vgg", f"obj={vgg_file}", "--quiet")
    assert code == 0 and "RANDOM" not in capsys.readouterr().err
    # the same networks, loaded here, on the true frames
    from caffe_models import load_caffemodel

    c3d, vgg = small_c3d(), small_vgg(1000)
    load_caffemodel(c3d, c3d_file)
    load_caffemodel(vgg, vgg_file)
    expected = direct_features(truths["odd"], c3d, {"obj": vgg}, mean=mean)
    with open_dataset(tmp_path / "f.h5") as ds:
        for source, value in expected.items():
            assert_features_close(ds.read(source, "odd"), value)
        info = ds.source_info("c3d_fc8_flip")
        digest = hashlib.sha256(c3d_file.read_bytes()).hexdigest()
        assert info["weights"] == f"c3d.caffemodel (sha256 {digest})"
        assert hashlib.sha256(mean_file.read_bytes()).hexdigest() in info["preprocessing"]
        assert info["real_weights"] is True and info["flipped"] is True
        assert ds.source_info("vgg_obj_fc6")["weights"].startswith("vgg.caffemodel (sha256 ")


@pytest.mark.parametrize("schema", ["c3d-v1", "bvlc-v2"])
def test_fine_tuned_weights_give_fc8_as_wide_as_their_classes(tmp_path, small_networks, clip_videos, capsys,
                                                               schema):
    """A C3D and a VGG-19 fine-tuned on a dataset (`alstm finetune`'s snapshots, R-C3D's model) score its
    classes: fc8 is built as wide as the file's, not as the release's 487 / the family's 203."""
    from caffe_models.caffemodel import output_width
    from caffe_models.writer import save_caffemodel

    folder, truths = clip_videos
    c3d, act = small_c3d(3, num_classes=3), small_vgg(7, seed=4)
    c3d_file, act_file = tmp_path / "c3d.caffemodel", tmp_path / "act.caffemodel"
    save_caffemodel(c3d, c3d_file, schema=schema)
    save_caffemodel(act, act_file, schema="bvlc-v2")
    assert output_width(c3d_file) == 3 and output_width(act_file) == 7
    assert run_cli(folder / "odd.mkv", "--out", tmp_path / "f.h5", "--c3d", c3d_file, "--no-vgg-obj",
                   "--vgg", f"act={act_file}", "--quiet") == 0
    expected = direct_features(truths["odd"], c3d, {"act": act})
    with open_dataset(tmp_path / "f.h5") as ds:
        assert ds.read("c3d_fc8", "odd").shape[1] == 3 and ds.read("vgg_act_fc8", "odd").shape[1] == 7
        for source in ("c3d_fc8", "vgg_act_fc8", "c3d_fc6"):
            assert_features_close(ds.read(source, "odd"), expected[source])


def test_layers_a_partial_weight_file_lacks_are_refused_unless_allowed(tmp_path, small_networks, clip_videos,
                                                                       capsys):
    """R-C3D's ActivityNet C3D holds conv1a … fc6 only: fc6 is real, fc7 (through a random fc7) is not;
    without --layers, C3D gives the layers the file holds."""
    folder, _ = clip_videos
    layers = [layer for layer in network_layers(small_c3d(), style="new", rng=np.random.default_rng(2))
              if not layer[0].endswith(("fc7", "fc8"))]
    c3d_file = tmp_path / "activitynet_iter_30000_3fps.caffemodel"
    c3d_file.write_bytes(net_bytes(layers, style="new"))
    common = [folder / "odd.mkv", "--c3d", c3d_file, "--no-vgg-obj", "--classes", "a,b", "--quiet"]
    assert run_cli(*common, "--out", tmp_path / "f.h5", "--layers", "fc6", "fc7") == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("alstm extract: error: ")]
    assert len(errors) == 1 and "Traceback" not in err
    assert f"{c3d_file.name} has no fc7 (it holds conv1a, " in errors[0]
    assert "--allow-random-weights" in errors[0]
    assert "fc7, fc8 are not in the file" in err          # the loader's note, as a one-line warning
    assert not (tmp_path / "f.h5").exists()
    assert run_cli(*common, "--out", tmp_path / "f.h5") == 0    # the default layers: those the file holds
    assert "holds conv1a, " in capsys.readouterr().err
    with open_dataset(tmp_path / "f.h5") as ds:
        assert set(ds.sources) == {"c3d_fc6", "c3d_fc6_flip", "targets"}
    assert run_cli(*common, "--out", tmp_path / "e.h5", "--layers", "fc6") == 0
    allowed = ["--layers", "fc6", "fc8", "--allow-random-weights"]
    assert run_cli(*common, "--out", tmp_path / "g.h5", *allowed) == 0
    assert "has no fc7, fc8" in capsys.readouterr().err
    with open_dataset(tmp_path / "f.h5") as ds:
        assert ds.source_info("c3d_fc6")["real_weights"] is True
    with open_dataset(tmp_path / "g.h5") as ds:
        assert ds.source_info("c3d_fc6")["real_weights"] is True
        assert ds.source_info("c3d_fc8")["real_weights"] is False


def test_bad_videos_are_reported_and_skipped(tmp_path, small_networks, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    good = moving_frames(36, 32, 48, seed=4)
    write_video(folder / "good.mkv", good, "ffv1")
    write_video(folder / "short.mkv", moving_frames(10, 32, 48), "ffv1")
    write_audio_only(folder / "sound.mp4")
    (folder / "text.avi").write_text("this is not a video\n" * 10)
    write_video(tmp_path / "full.mp4", moving_frames(80, 48, 64, seed=5), "h264")
    truncate(tmp_path / "full.mp4", folder / "cut.mp4", 0.6)
    out = tmp_path / "f.h5"
    code = run_cli(folder, "--out", out, "--classes", "x", "--allow-random-weights", "--quiet")
    err = capsys.readouterr()
    assert code == 1
    assert "extracted 2 videos (1 partial), skipped 0 already present, 3 failed" in err.out
    assert f"failed: {folder / 'short.mkv'}: only 10 decodable frames" in err.err
    assert f"failed: {folder / 'sound.mp4'}: no video stream" in err.err
    assert f"failed: {folder / 'text.avi'}: cannot open as a video" in err.err
    assert f"warning: {folder / 'cut.mp4'}: stored the readable part" in err.err and "truncated" in err.err
    with open_dataset(out) as ds:
        assert sorted(ds.splits["test"]) == ["cut", "good"]
        assert ds.num_frames("good") == 36 and 16 <= ds.num_frames("cut") < 80
        assert len(ds.read("c3d_fc6", "cut")) == ds.num_frames("cut") // 16
    # a rerun skips what is there, retries the failures, and --keep-going turns the verdict to 0
    assert run_cli(folder, "--out", out, "--classes", "x", "--allow-random-weights", "--quiet",
                   "--keep-going") == 0
    assert "extracted 0 videos (0 partial), skipped 2 already present, 3 failed" in capsys.readouterr().out


def test_labels_csv_single_and_multi_label(tmp_path, small_networks, clip_videos, capsys):
    folder, _ = clip_videos
    videos = [folder / "odd.mkv", folder / "h264.mp4"]
    (tmp_path / "single.csv").write_text("video,label\nodd.mkv,Run\nh264,Eat\n")
    assert run_cli(*videos, "--out", tmp_path / "s.h5", "--labels", tmp_path / "single.csv", "--split",
                   "train", "--allow-random-weights", "--quiet") == 0
    with open_dataset(tmp_path / "s.h5") as ds:
        assert ds.class_names == ["Eat", "Run"] and not ds.multilabel
        assert (ds.read("targets", "odd"), ds.read("targets", "h264")) == (1, 0)
        assert sorted(ds.splits["train"]) == ["h264", "odd"]
    (tmp_path / "multi.csv").write_text("odd,Run;Kiss\nh264,Eat\nodd,Eat\n")
    assert run_cli(*videos, "--out", tmp_path / "m.h5", "--labels", tmp_path / "multi.csv", "--multilabel",
                   "--classes", "Eat,Kiss,Run,Sit", "--allow-random-weights", "--quiet") == 0
    with open_dataset(tmp_path / "m.h5") as ds:
        assert ds.multilabel and ds.class_names == ["Eat", "Kiss", "Run", "Sit"]
        np.testing.assert_array_equal(ds.read("targets", "odd"), [1, 1, 1, 0])
        np.testing.assert_array_equal(ds.read("targets", "h264"), [1, 0, 0, 0])
    capsys.readouterr()
    assert run_cli(*videos, "--out", tmp_path / "x.h5", "--labels", tmp_path / "multi.csv",
                   "--allow-random-weights") == 2
    assert "video odd has labels ['Eat', 'Kiss', 'Run']; pass --multilabel" in capsys.readouterr().err
    (tmp_path / "partial.csv").write_text("odd,Run\n")
    assert run_cli(*videos, "--out", tmp_path / "x.h5", "--labels", tmp_path / "partial.csv",
                   "--allow-random-weights") == 2
    assert "no label for 1 videos (h264)" in capsys.readouterr().err
    assert run_cli(*videos, "--out", tmp_path / "x.h5", "--labels", tmp_path / "single.csv", "--classes",
                   "Run", "--allow-random-weights") == 2
    assert "labels not among the classes: Eat" in capsys.readouterr().err


def test_labels_csv_may_give_each_videos_split(tmp_path, small_networks, clip_videos, capsys):
    folder, _ = clip_videos
    videos = [folder / "odd.mkv", folder / "h264.mp4"]
    (tmp_path / "split.csv").write_text("video,label,split\nodd.mkv,Run,train\nh264,Eat,valid\n")
    assert run_cli(*videos, "--out", tmp_path / "s.h5", "--labels", tmp_path / "split.csv",
                   "--allow-random-weights", "--quiet") == 0
    with open_dataset(tmp_path / "s.h5") as ds:
        assert ds.splits == {"train": ["odd"], "valid": ["h264"], "test": []}
    (tmp_path / "mixed.csv").write_text("odd,Run,train\nh264,Eat\n")          # no split: --split's
    assert run_cli(*videos, "--out", tmp_path / "m.h5", "--labels", tmp_path / "mixed.csv", "--split",
                   "valid", "--allow-random-weights", "--quiet") == 0
    with open_dataset(tmp_path / "m.h5") as ds:
        assert ds.splits == {"train": ["odd"], "valid": ["h264"], "test": []}
    capsys.readouterr()
    for bad in ("odd,Run,training\nh264,Eat\n", "odd,Run,train\nodd,Run,test\nh264,Eat\n"):
        (tmp_path / "bad.csv").write_text(bad)
        assert run_cli(*videos, "--out", tmp_path / "x.h5", "--labels", tmp_path / "bad.csv",
                       "--allow-random-weights") == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "give one of train, valid, test" in err
    assert not (tmp_path / "x.h5").exists()


def test_progress_off_a_terminal_is_plain_lines(tmp_path, small_networks, clip_videos, capsys):
    folder, _ = clip_videos
    assert run_cli(folder / "odd.mkv", folder / "h264.mp4", "--out", tmp_path / "p.h5",
                   "--allow-random-weights") == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "extract: 2/2 video (100%)" in err.splitlines()[-1]


def test_appending_with_other_weights_is_refused(tmp_path, small_networks, clip_videos, capsys):
    folder, _ = clip_videos
    out = tmp_path / "f.h5"
    assert run_cli(folder / "odd.mkv", "--out", out, "--classes", "a", "--allow-random-weights",
                   "--quiet") == 0
    code = run_cli(folder / "h264.mp4", "--out", out, "--allow-random-weights", "--weights-seed", "7",
                   "--quiet")
    assert code == 2
    assert "c3d_fc6 was extracted with random initialisation (seed 0)" in capsys.readouterr().err
    code = run_cli(folder / "h264.mp4", "--out", out, "--allow-random-weights", "--layers", "fc7", "--quiet")
    assert code == 2 and "Use the same --layers" in capsys.readouterr().err
    # the same settings append (the class names come from the file)
    assert run_cli(folder / "h264.mp4", "--out", out, "--allow-random-weights", "--quiet") == 0
    with open_dataset(out) as ds:
        assert ds.splits["test"] == ["odd", "h264"] and ds.class_names == ["a"]


def read_everything(path):
    with open_dataset(path) as ds:
        videos = {}
        for split, ids in ds.splits.items():
            for vid in ids:
                videos[vid] = {
                    "split": split, "num_frames": ds.num_frames(vid), "fps": ds.fps(vid),
                    "targets": ds.read("targets", vid),
                    **{s: ds.read(s, vid) for s in ds.feature_sources},
                    **{f"index/{s}": ds.frame_index(s, vid) for s in ds.feature_sources},
                }
        info = {s: ds.source_info(s) for s in ds.feature_sources}
        return ds.splits, videos, info, (ds.class_names, ds.multilabel, ds.attrs)


def test_sharded_runs_merge_into_the_single_process_file(tmp_path, small_networks, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for k in range(3):
        write_video(folder / f"v{k}.mkv", moving_frames(16 + 8 * k, 24, 40, seed=k), "ffv1")
    (tmp_path / "labels.csv").write_text("".join(f"v{k},{'ab'[k % 2]}\n" for k in range(3)))
    common = [folder, "--labels", tmp_path / "labels.csv", "--allow-random-weights", "--quiet"]
    assert run_cli(*common, "--out", tmp_path / "single.h5") == 0
    # 4 ranks for 3 videos (rank 3 gets none); ranks 3..1 first (rank 0 would wait for their
    # markers), then rank 0, which merges
    for rank in (3, 2, 1):
        assert run_cli(*common, "--out", tmp_path / "merged.h5", "--shard", f"{rank}/4") == 0
        assert (tmp_path / f"merged.shard{rank}-of4.h5").exists()
    assert not (tmp_path / "merged.h5").exists()
    assert run_cli(*common, "--out", tmp_path / "merged.h5", "--shard", "0/4") == 0
    assert "merged 4 shards" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path)) == ["in", "labels.csv", "merged.h5", "single.h5"]  # shards removed
    single, merged = read_everything(tmp_path / "single.h5"), read_everything(tmp_path / "merged.h5")
    assert single[0] == merged[0] and single[0]["test"] == [f"v{k}" for k in range(3)]  # same order
    assert single[2] == merged[2] and single[3] == merged[3]
    assert single[1].keys() == merged[1].keys()
    for vid, fields in single[1].items():
        for name, value in fields.items():
            np.testing.assert_array_equal(merged[1][vid][name], value, err_msg=f"{vid} {name}")


def test_files_of_other_classes_are_not_merged(tmp_path):
    from fuel_datasets.errors import DatasetError
    from fuel_datasets.merge import merge_feature_files

    for name, classes in (("a.h5", ["run", "jump"]), ("b.h5", ["run", "swim"])):
        with FeatureWriter(tmp_path / name, class_names=classes) as writer:
            writer.add_video(name[0], features={"c3d_fc6": np.ones((2, 3), np.float32)},
                             frame_index={"c3d_fc6": np.array([0, 16])}, num_frames=32, fps=25.0,
                             targets=0, split="test")
    with pytest.raises(DatasetError, match="different classes"):
        merge_feature_files([str(tmp_path / "a.h5"), str(tmp_path / "b.h5")], str(tmp_path / "out.h5"))
    assert not (tmp_path / "out.h5").exists()


def test_shard_comes_from_the_flag_or_torchrun_variables():
    assert extract_cmd.parse_shard(None, {}) == (0, 1)
    assert extract_cmd.parse_shard(None, {"RANK": "2", "WORLD_SIZE": "4"}) == (2, 4)
    assert extract_cmd.parse_shard("1/3", {"RANK": "2", "WORLD_SIZE": "4"}) == (1, 3)
    from reproduce.errors import ReproduceError

    with pytest.raises(ReproduceError, match="RANK must be in"):
        extract_cmd.parse_shard("3/3", {})
    with pytest.raises(ReproduceError, match="write RANK/WORLD"):
        extract_cmd.parse_shard("first", {})


def test_video_listing(tmp_path):
    (tmp_path / "b").mkdir()
    for name in ("b/z.mp4", "b/a.AVI", "notes.txt", "c.webm"):
        (tmp_path / name).write_bytes(b"")
    listed = list_videos([str(tmp_path)])
    assert listed == [("c", str(tmp_path / "c.webm")), ("a", str(tmp_path / "b/a.AVI")),
                      ("z", str(tmp_path / "b/z.mp4"))]
    (tmp_path / "z.mkv").write_bytes(b"")
    from reproduce.errors import ReproduceError

    with pytest.raises(ReproduceError, match="two videos have the id 'z'"):
        list_videos([str(tmp_path)])
    with pytest.raises(ReproduceError, match="missing.mp4: no such file"):
        list_videos([str(tmp_path / "missing.mp4")])


# ---------------------------------------------------------------------------------------------------
# Killed run
# ---------------------------------------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import sys, time
    import pytest
    from helpers.networks import use_small_networks
    from fuel_datasets.writer import FeatureWriter
    use_small_networks(pytest.MonkeyPatch())       # the small networks of the parent's fixture
    add = FeatureWriter.add_video
    def add_and_tell(self, vid, **kw):
        if self.num_videos >= 2:  # the third video is computed, and held back from the file a while
            time.sleep(float(sys.argv[1]))
        add(self, vid, **kw)
        print("committed", vid, flush=True)
    FeatureWriter.add_video = add_and_tell
    from reproduce.cli import main
    sys.exit(main(sys.argv[2:]))
""")


def test_killed_run_resumes_with_every_video_once(tmp_path, small_networks, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for k in range(5):
        write_video(folder / f"v{k}.mkv", moving_frames(20, 24, 40, seed=10 + k), "ffv1")
    (tmp_path / "child.py").write_text(CHILD)
    args = ["extract", str(folder), "--classes", "a", "--allow-random-weights", "--quiet", "--no-vgg-obj",
            "--no-flip", "--layers", "fc8"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, str(tmp_path / "child.py"), "2", *args, "--out",
                              str(tmp_path / "f.h5")],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        committed = [child.stdout.readline().split()[1] for _ in range(2)]
    finally:
        child.send_signal(signal.SIGKILL)  # while v2 is in flight: computed, not yet written
        child.wait()
        child.stdout.close()
    assert committed == ["v0", "v1"]
    with open_dataset(tmp_path / "f.h5") as ds:
        survived = ds.splits["test"]
    assert survived == ["v0", "v1"]  # the killed run lost only the video in flight
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "f.h5")]) == 0  # the same command again
    assert f"extracted {5 - len(survived)} videos (0 partial), skipped {len(survived)} already present" in (
        capsys.readouterr().out)
    assert main([*args, "--out", str(tmp_path / "clean.h5")]) == 0
    resumed, fresh = read_everything(tmp_path / "f.h5"), read_everything(tmp_path / "clean.h5")
    assert resumed[0]["test"] == [f"v{k}" for k in range(5)]  # each video once, in order
    ds_features = set(resumed[2])  # feature sources (floats); ids, indices and targets must be equal
    # the killed child computed v0, v1 in another process, whose BLAS threading may order sums differently
    for vid, fields in fresh[1].items():
        for name, value in fields.items():
            if name in ds_features:
                np.testing.assert_allclose(resumed[1][vid][name], value, rtol=1e-3, err_msg=f"{vid} {name}")
            else:
                np.testing.assert_array_equal(resumed[1][vid][name], value, err_msg=f"{vid} {name}")


def test_the_device_of_one_of_several_processes(monkeypatch):
    """A bare (or absent) cuda device becomes cuda:<local rank> (0 alone); an explicit one is kept."""
    from reproduce.runtime.device import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    def name(device, local_rank=0):
        return str(resolve_device(device, local_rank))

    assert name(None, 1) == "cuda:1" and name("cuda", 3) == "cuda:3"
    assert name("cuda:0", 3) == "cuda:0" and name("cpu", 3) == "cpu"
    assert name(None) == "cuda:0"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert name(None, 1) == "cpu"


def test_an_unknown_vgg_family_is_one_line(tmp_path, capsys, clip_videos):
    from reproduce.errors import ReproduceError
    from reproduce.extraction.extract import extract_features

    folder, _ = clip_videos
    with pytest.raises(ReproduceError, match="no VGG-19 family objects: the families are obj, sce, act"):
        extract_features([str(folder / "odd.mkv")], str(tmp_path / "x.h5"), vgg={"objects": None},
                         allow_random_weights=True)
    assert run_cli(folder / "odd.mkv", "--out", tmp_path / "x.h5", "--vgg", "objects",
                   "--allow-random-weights") == 2
    assert "unknown family 'objects'" in capsys.readouterr().err
