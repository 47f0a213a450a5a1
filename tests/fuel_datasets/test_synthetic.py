"""The built-in benchmark: layout and determinism, and numpy oracles for the structure the paper relies on.

The oracles are independent of the model: a Gaussian nearest-class-mean classifier (one shared
isotropic variance, fitted on the training split) applied to per-video or per-window feature means.
"""

import dataclasses
import math

import numpy as np
import pytest

from fuel_datasets import open_dataset
from fuel_datasets.errors import DatasetError
from fuel_datasets.synthetic import (
    BACKGROUND,
    CLUTTER,
    PAPER_DIMS,
    SALIENT,
    SynthConfig,
    iter_videos,
    write_synthetic,
)
from reproduce.cli import main

FAMILIES = ("vgg_obj", "vgg_sce", "vgg_act")
ORACLE = SynthConfig(num_videos=400, num_classes=10, seed=7)


@pytest.fixture(scope="module")
def videos():
    return list(iter_videos(ORACLE))


def _fit(x, y, num_classes):
    means = np.stack([x[y == c].mean(axis=0) for c in range(num_classes)])
    return means, ((x - means[y]) ** 2).mean()


def _posterior(x, means, variance):
    """p(c | x) under N(means[c], variance I) with a uniform prior: (S, C)."""
    logits = -((x[:, None, :] - means[None]) ** 2).sum(-1) / (2 * variance)
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def _oracle(features, labels, train, num_classes):
    """Posteriors of the held-out rows from a classifier fitted on the ``train`` rows."""
    means, variance = _fit(features[train], labels[train], num_classes)
    return _posterior(features[~train], means, variance)


def _accuracy(posterior, labels):
    return float((posterior.argmax(axis=1) == labels).mean())


def _means(videos, source, rows):
    """(V, D) per-video mean of the rows ``rows[v]`` (an index array or mask per video)."""
    return np.stack([v.features[source][r].mean(axis=0) for v, r in zip(videos, rows, strict=True)])


def _salient(videos):
    """The salient rows of each video; a video without one (rare, short) falls back to all its rows."""
    masks = [v.features["salient"][:, 0] > 0 for v in videos]
    return [mask if mask.any() else slice(None) for mask in masks]


def _everything(videos):
    return [slice(None)] * len(videos)


def _windows(videos, rng):
    """Rows of one random T = N = 12 window per video (192 frames, every other attended row)."""
    starts = [2 * int(rng.integers(0, v.plan.num_frames // 16 - 12 + 1)) for v in videos]
    return [np.arange(start, start + 24, 2) for start in starts]


def _held_out_accuracy(videos, source, rows):
    """Accuracy on the valid + test videos of the oracle fitted on the train videos' row means."""
    labels = np.array([v.targets for v in videos])
    train = np.array([v.plan.split == "train" for v in videos])
    return _accuracy(_oracle(_means(videos, source, rows), labels, train, 10), labels[~train])


def test_attending_to_salient_frames_beats_averaging_all_frames(videos):
    windows = _windows(videos, np.random.default_rng(0))
    # the salient rows of each window; a window without one falls back to all its rows
    in_window = [w[v.features["salient"][w, 0] > 0] for v, w in zip(videos, windows, strict=True)]
    in_window = [s if len(s) else w for s, w in zip(in_window, windows, strict=True)]
    for family in FAMILIES:
        source = f"{family}_fc8"
        window_all = _held_out_accuracy(videos, source, windows)
        window_salient = _held_out_accuracy(videos, source, in_window)
        assert window_salient > window_all + 0.1, (family, window_salient, window_all)
        video_all = _held_out_accuracy(videos, source, _everything(videos))
        video_salient = _held_out_accuracy(videos, source, _salient(videos))
        assert video_salient > video_all + 0.1, (family, video_salient, video_all)


def test_two_families_together_beat_the_better_one(videos):
    labels = np.array([v.targets for v in videos])
    train = np.array([v.plan.split == "train" for v in videos])
    posteriors = {family: _oracle(_means(videos, f"{family}_fc8", _salient(videos)), labels, train, 10)
                  for family in FAMILIES}
    held_out = labels[~train]
    for a, b in (("vgg_act", "vgg_obj"), ("vgg_act", "vgg_sce"), ("vgg_obj", "vgg_sce")):
        both = _accuracy((posteriors[a] + posteriors[b]) / 2, held_out)
        best = max(_accuracy(posteriors[a], held_out), _accuracy(posteriors[b], held_out))
        assert both > best + 0.03, (a, b, both, best)


def test_input_data_is_weak_per_chunk_and_informative_per_video(videos):
    chunks = np.concatenate([v.features["c3d_fc6"] for v in videos])
    chunk_labels = np.concatenate([[v.targets] * len(v.features["c3d_fc6"]) for v in videos])
    chunk_train = np.concatenate([[v.plan.split == "train"] * len(v.features["c3d_fc6"]) for v in videos])
    per_chunk = _accuracy(_oracle(chunks, chunk_labels, chunk_train, 10), chunk_labels[~chunk_train])
    per_video = _held_out_accuracy(videos, "c3d_fc6", _everything(videos))
    chance = 1 / 10
    assert 1.2 * chance < per_chunk < 0.3, per_chunk
    assert per_video > per_chunk + 0.2, (per_video, per_chunk)


def test_flipped_features_are_close_but_not_identical(videos):
    labels = np.array([v.targets for v in videos])
    train = np.array([v.plan.split == "train" for v in videos])
    for source in ("c3d_fc6", "vgg_obj_fc8", "vgg_act_fc6"):
        x = np.concatenate([v.features[source] for v in videos])
        flipped = np.concatenate([v.features[f"{source}_flip"] for v in videos])
        assert flipped.shape == x.shape
        cosine = (x * flipped).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(flipped, axis=1)
        assert 0.8 < cosine.mean() < 0.995, (source, cosine.mean())
        # a classifier fitted on unflipped video means works on flipped ones
        everything = _everything(videos)
        means, variance = _fit(_means(videos, source, everything)[train], labels[train], 10)
        plain = _held_out_accuracy(videos, source, everything)
        mirror = _accuracy(_posterior(_means(videos, f"{source}_flip", everything)[~train], means, variance),
                           labels[~train])
        assert mirror > plain - 0.12 and mirror > 0.3, (source, plain, mirror)


def test_event_layout(videos):
    config = ORACLE
    kinds = np.concatenate([v.plan.slot_kind for v in videos])
    # runs are drawn independently of their length, so the expected share of salient slots is the
    # salient run probability (the last run of a video is cut, which barely matters)
    assert abs((kinds == SALIENT).mean() - config.salient_fraction) < 0.02
    assert abs((kinds == CLUTTER).mean() - config.clutter_fraction) < 0.02
    for v in videos[:50]:
        kind, shown = v.plan.slot_kind, v.plan.slot_class
        assert np.isin(shown[kind == SALIENT], v.plan.labels).all()
        assert not np.isin(shown[kind == CLUTTER], v.plan.labels).any()
        assert len(set(shown[kind == CLUTTER].tolist())) <= config.distractors
        assert (shown[kind == BACKGROUND] == -1).all()
        np.testing.assert_array_equal(v.features["salient"][:, 0], (kind == SALIENT).astype(np.float32))
        changes = np.flatnonzero(np.diff(kind) != 0)
        runs = np.diff(np.concatenate([[-1], changes, [len(kind) - 1]]))
        assert runs.min() >= 1
    # positions vary per video: the first 24 slots show a different salient pattern in (almost) every video
    patterns = {v.plan.slot_kind[:24].tobytes() for v in videos}
    assert len(patterns) > 0.95 * len(videos)
    by_position = np.stack([v.plan.slot_kind[:24] == SALIENT for v in videos]).mean(axis=0)
    assert by_position.min() > 0.12 and by_position.max() < 0.4


def test_rows_frames_and_splits_follow_the_storage_convention(videos):
    config = ORACLE
    for v in videos[:40]:
        frames = v.plan.num_frames
        assert config.min_frames <= frames <= config.max_frames
        for source, array in v.features.items():
            base = source.removesuffix("_flip")
            if base.startswith("c3d"):
                assert array.shape[0] == frames // 16
                np.testing.assert_array_equal(v.frame_index[base], 16 * np.arange(frames // 16))
            else:
                assert array.shape[0] == math.ceil(frames / 8)
                np.testing.assert_array_equal(v.frame_index[base], 8 * np.arange(math.ceil(frames / 8)))
            assert array.dtype == np.float32 and array.shape[1] == config.source_dims()[source]
    splits = [v.plan.split for v in videos]
    assert splits.count("train") == round(0.7 * 400) and splits.count("valid") == round(0.1 * 400)
    assert splits.count("test") == 400 - 280 - 40
    counts = np.bincount([v.targets for v in videos], minlength=10)
    assert (counts == 40).all()                     # balanced: class π(i) mod C


def test_videos_are_pure_functions_of_seed_and_index():
    config = SynthConfig(num_videos=6, num_classes=5, seed=3)
    full = list(iter_videos(config))
    tail = list(iter_videos(config, start=4))
    for a, b in zip(full[4:], tail, strict=True):
        assert a.plan.video_id == b.plan.video_id
        for source in a.features:
            assert a.features[source].tobytes() == b.features[source].tobytes()
    other = list(iter_videos(dataclasses.replace(config, seed=4)))
    assert other[0].features["vgg_act_fc8"].tobytes() != full[0].features["vgg_act_fc8"].tobytes()


def _content(path):
    with open_dataset(path) as ds:
        ids = sorted(ds.splits["train"] + ds.splits["valid"] + ds.splits["test"])
        out = {"splits": ds.splits, "classes": ds.class_names, "multilabel": ds.multilabel,
               "attrs": ds.attrs}
        for video_id in ids:
            out[video_id] = {source: (np.asarray(ds.read(source, video_id)).tobytes()
                                      if source != "targets" else ds.read(source, video_id))
                             for source in ds.sources}
            out[video_id]["frames"] = (ds.num_frames(video_id), ds.fps(video_id),
                                       ds.frame_index("c3d_fc6", video_id).tobytes(),
                                       ds.frame_index("vgg_sce_fc6", video_id).tobytes())
        return out


def test_written_file_is_identical_for_the_same_seed_and_matches_the_generator(tmp_path):
    config = SynthConfig(num_videos=5, num_classes=4, seed=11, max_frames=260)
    write_synthetic(tmp_path / "a.h5", config)
    write_synthetic(tmp_path / "b.h5", config)
    first = _content(tmp_path / "a.h5")
    assert first == _content(tmp_path / "b.h5")
    for video in iter_videos(config):
        stored = first[video.plan.video_id]
        for source, array in video.features.items():
            assert stored[source] == array.tobytes()
        assert stored["targets"] == video.targets
        assert stored["frames"][:2] == (video.plan.num_frames, config.fps)
        assert video.plan.video_id in first["splits"][video.plan.split]
    assert first["classes"] == ["action000", "action001", "action002", "action003"]
    assert first["attrs"]["synth_seed"] == 11 and first["attrs"]["synth_num_videos"] == 5
    write_synthetic(tmp_path / "c.h5", dataclasses.replace(config, seed=12))
    assert _content(tmp_path / "c.h5")["v_synth000000"] != first["v_synth000000"]


def test_interrupted_generation_resumes_to_the_same_file(tmp_path):
    config = SynthConfig(num_videos=6, num_classes=4, seed=2, max_frames=240)
    calls = []

    def stop_after_three(n):
        calls.append(n)
        if len(calls) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_synthetic(tmp_path / "r.h5", config, progress=stop_after_three)
    with open_dataset(tmp_path / "r.h5") as ds:
        assert ds.num_videos == 3
    assert write_synthetic(tmp_path / "r.h5", config) == 3
    write_synthetic(tmp_path / "fresh.h5", config)
    assert _content(tmp_path / "r.h5") == _content(tmp_path / "fresh.h5")
    with pytest.raises(DatasetError, match="not generated with these parameters"):
        write_synthetic(tmp_path / "r.h5", dataclasses.replace(config, seed=3))


def test_multilabel_variant():
    config = SynthConfig(num_videos=700, num_classes=12, multilabel=True, seed=5, max_frames=200)
    sizes, positives = [], np.zeros(12)
    for v in iter_videos(config):
        assert v.targets.dtype == np.float32 and set(np.unique(v.targets)) <= {0.0, 1.0}
        labels = np.flatnonzero(v.targets)
        assert tuple(labels) == v.plan.labels
        assert np.isin(v.plan.slot_class[v.plan.slot_kind == SALIENT], labels).all()
        sizes.append(len(labels))
        positives += v.targets
    share = np.bincount(sizes, minlength=4)[1:] / len(sizes)
    np.testing.assert_allclose(share, [4 / 7, 2 / 7, 1 / 7], atol=0.05)     # P(k) ∝ 2^-k
    assert positives.min() > 0.5 * positives.mean()


def test_fc6_and_fc8_dims_and_paper_dims():
    dims = SynthConfig().source_dims()
    assert dims["c3d_fc6"] == 128 and dims["c3d_fc8"] == 20 and dims["vgg_obj_fc6"] == 96
    assert (dims["vgg_obj_fc8"], dims["vgg_sce_fc8"], dims["vgg_act_fc8"]) == (40, 32, 36)
    assert dims["salient"] == 1
    assert SynthConfig(c3d_fc8_dim=487).source_dims()["c3d_fc8"] == 487
    config = SynthConfig(num_videos=1, num_classes=203, min_frames=192, max_frames=192, **PAPER_DIMS)
    video = next(iter_videos(config))
    shapes = {source: array.shape for source, array in video.features.items()}
    assert shapes["c3d_fc6"] == (12, 4096) and shapes["c3d_fc8_flip"] == (12, 203)
    assert shapes["vgg_obj_fc6"] == (24, 4096) and shapes["vgg_obj_fc8"] == (24, 1000)
    assert shapes["vgg_sce_fc8"] == (24, 205) and shapes["vgg_act_fc8"] == (24, 203)


def test_c3d_fc8_holds_class_scores(videos):
    """The "C3D (fc8)" baseline (softmax of c3d_fc8, averaged over chunks) is above chance and far below
    the attended families: weakly informative input data."""
    labels = np.array([v.targets for v in videos])
    chunk_votes = []
    for v in videos:
        logits = v.features["c3d_fc8"].astype(np.float64)                    # (J, C)
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        chunk_votes.append((p / p.sum(axis=1, keepdims=True)).mean(axis=0).argmax())
    accuracy = float((np.array(chunk_votes) == labels).mean())
    assert 0.2 < accuracy < 0.75, accuracy


@pytest.mark.parametrize("changes, problem", [
    (dict(num_classes=1), "num_classes must be at least"),
    (dict(min_frames=500, max_frames=400), "min_frames <= max_frames"),
    (dict(split_fractions=(0.5, 0.5, 0.5)), "split_fractions"),
    (dict(salient_fraction=0.7, clutter_fraction=0.5), "salient_fraction"),
    (dict(num_videos=0), "num_videos must be a positive integer"),
])
def test_invalid_configuration(changes, problem):
    with pytest.raises(DatasetError, match=problem):
        SynthConfig(**changes)


def test_cli(tmp_path, capsys):
    out = tmp_path / "bench.h5"
    assert main(["synth", str(out), "--videos", "4", "--classes", "5", "--max-frames", "220"]) == 0
    assert "4 videos (4 written), 5 classes" in capsys.readouterr().out
    assert main(["synth", str(out), "--videos", "4", "--classes", "5", "--max-frames", "220"]) == 0
    assert "4 already there" in capsys.readouterr().out
    assert main(["synth", str(out), "--videos", "4", "--classes", "6"]) == 2
    assert "not generated with these parameters" in capsys.readouterr().err
    assert main(["synth", str(out), "--videos", "3", "--multilabel", "--force", "--max-frames", "200"]) == 0
    with open_dataset(out) as ds:
        assert ds.multilabel and ds.num_classes == 12 and ds.num_videos == 3
        assert ds.read("salient", ds.splits["train"][0]).shape[1] == 1
