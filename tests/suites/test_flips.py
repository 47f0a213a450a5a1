"""Flipped features when present: `alstm train` and `alstm evaluate` read ``<source>_flip`` when the file
has it for every source they read, go on without it otherwise (one line says so), and refuse an explicit
--flip on a file without it, naming the flag. Files without flips: a converted legacy Fuel file, the
ActivityNet C3D release, features from any other tool; here, the benchmark file with its _flip sources
left out."""

import json

import numpy as np
import pytest
from helpers.builders import TINY_FLAGS, tiny_config, write_synth

from fuel_datasets import FeatureWriter, open_dataset
from reproduce.cli import main
from reproduce.evaluation.evaluate import evaluate_checkpoints
from reproduce.training.data import open_train_data

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("flips")
    with_flips = write_synth(folder / "with.h5")
    without = folder / "without.h5"
    with open_dataset(with_flips) as ds, FeatureWriter(without, class_names=ds.class_names,
                                                        multilabel=ds.multilabel) as writer:
        kept = [s for s in ds.feature_sources if not s.endswith("_flip")]
        split_of = {vid: split for split, ids in ds.splits.items() for vid in ids}
        for vid in ds.video_ids:
            writer.add_video(vid, {s: ds.read(s, vid) for s in kept},
                             {s: ds.frame_index(s, vid) for s in kept}, ds.num_frames(vid), ds.fps(vid),
                             ds.read("targets", vid), split_of.get(vid))
    return with_flips, without


def _train(capsys, data, out, *extra):
    code = main(["train", "--data", str(data), "--out", str(out), "--iterations", "2",
                 "--validate-every", "1", *TINY_FLAGS, *extra])
    return code, capsys.readouterr().err.strip().splitlines()


def test_a_file_without_flips_trains_and_evaluates_with_the_defaults(files, tmp_path, capsys):
    _, without = files
    code, err = _train(capsys, without, tmp_path / "run")
    assert code == 0
    assert err == [f"alstm train: note: {without} has no c3d_fc6_flip, vgg_obj_fc8_flip (features of flipped "
                   "frames): training without them (--no-flip says so explicitly)"]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["flip"] is False
    code = main(["evaluate", "--data", str(without), "--checkpoint", str(tmp_path / "run"), "--crops", "3",
                 "--json", str(tmp_path / "e.json"), "--quiet"])
    captured = capsys.readouterr()
    assert code == 0
    assert captured.err.strip() == (f"alstm evaluate: note: {without} has no c3d_fc6_flip, "
                                    "vgg_obj_fc8_flip (features of flipped frames): evaluating without them "
                                    "(--no-flip says so explicitly)")
    assert "3 windows each" in captured.out
    assert json.loads((tmp_path / "e.json").read_text())["flip"] is False
    # the run resumes without restating the choice, and keeps it
    code, _ = _train(capsys, without, tmp_path / "run", "--resume", "--iterations", "3")
    assert code == 0 and json.loads((tmp_path / "run" / "config.json").read_text())["flip"] is False


def test_a_file_with_flips_uses_them_unless_told_not_to(files, tmp_path, capsys):
    with_flips, _ = files
    code, err = _train(capsys, with_flips, tmp_path / "run")
    assert code == 0 and err == []
    assert json.loads((tmp_path / "run" / "config.json").read_text())["flip"] is True
    assert main(["evaluate", "--data", str(with_flips), "--checkpoint", str(tmp_path / "run"), "--crops", "3",
                 "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "3+3 flipped windows each" in captured.out
    code, err = _train(capsys, with_flips, tmp_path / "plain", "--no-flip")
    assert code == 0 and err == []
    assert json.loads((tmp_path / "plain" / "config.json").read_text())["flip"] is False


def test_an_explicit_flip_on_a_file_without_them_is_an_error_naming_the_flag(files, tmp_path, capsys):
    with_flips, without = files
    code, err = _train(capsys, without, tmp_path / "run", "--flip")
    assert code == 2 and len(err) == 1
    assert err[0].startswith("alstm train: error: --flip: ") and "leave out --flip" in err[0]
    assert not (tmp_path / "run" / "last.pt").exists()
    assert _train(capsys, with_flips, tmp_path / "ok")[0] == 0
    code = main(["evaluate", "--data", str(without), "--checkpoint", str(tmp_path / "ok"), "--flip",
                 "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--flip" in err[0] and "flip_prob" not in err[0]


def test_windows_are_never_flipped_without_flipped_features(files):
    _, without = files
    data = open_train_data(tiny_config(without, flip_prob=1.0))
    assert data.config.flip is False and "no c3d_fc6_flip" in data.notice
    assert not any(bool(data.train[k].flipped.any()) for k in range(4))
    with_data = open_train_data(tiny_config(files[0], flip_prob=1.0))
    assert with_data.config.flip is True and with_data.notice is None
    assert all(bool(with_data.train[k].flipped.all()) for k in range(4))


def test_an_ensemble_makes_one_flip_choice_for_every_member(files, tmp_path, capsys):
    """Members reading different sources share the window positions and the flip choice."""
    with_flips, _ = files
    for name, attend in (("a", "vgg_obj_fc8"), ("b", "vgg_obj_fc6")):
        flags = [f if f != "vgg_obj_fc8" else attend for f in TINY_FLAGS]
        assert main(["train", "--data", str(with_flips), "--out", str(tmp_path / name), "--iterations", "2",
                     "--validate-every", "0", *flags]) == 0
    notes = []
    report = evaluate_checkpoints(str(with_flips), [str(tmp_path / "a" / "best.pt"),
                                                    str(tmp_path / "b" / "best.pt")], crops=2,
                                  notice=notes.append)
    assert report.flip is True and notes == []
    single = evaluate_checkpoints(str(with_flips), [str(tmp_path / "a" / "best.pt")], crops=2, flip=False)
    assert single.flip is False
    np.testing.assert_allclose(report.members[0].mAP,
                               evaluate_checkpoints(str(with_flips), [str(tmp_path / "a" / "best.pt")],
                                                    crops=2).mAP)
