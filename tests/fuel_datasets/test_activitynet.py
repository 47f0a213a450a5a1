"""ActivityNet protocol: hand-made annotation files in the official format, checked against closed-form
counts."""

import json
import math

import pytest

from fuel_datasets.activitynet import (
    activitynet_protocol,
    class_list,
    read_activitynet,
    valid_size,
)
from fuel_datasets.errors import DatasetError

TAXONOMY = [
    {"nodeId": 1, "nodeName": "Root", "parentId": None, "parentName": None},
    {"nodeId": 2, "nodeName": "Sports", "parentId": 1, "parentName": "Root"},
    {"nodeId": 3, "nodeName": "Bowling", "parentId": 2, "parentName": "Sports"},
    {"nodeId": 4, "nodeName": "Archery", "parentId": 2, "parentName": "Sports"},
    {"nodeId": 5, "nodeName": "Cooking", "parentId": 1, "parentName": "Root"},
]


def _video(subset, duration, *segments):
    return {"subset": subset, "duration": duration, "resolution": "320x240", "url": "",
            "annotations": [{"segment": list(seg), "label": label} for seg, label in segments]}


def _file(database, taxonomy=TAXONOMY):
    return {"version": "VERSION 1.3", "taxonomy": taxonomy, "database": database}


def _write(tmp_path, content, name="activity_net.json"):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_samples_frames_drops_and_clipping(tmp_path):
    # At 30 fps, F = 192 frames is 6.4 s: [0, 6.4] keeps 192 frames, [0, 6.39] has 191 and is dropped.
    database = {
        "aaa": _video("training", 30.0, ((0.0, 6.4), "Archery"), ((10.0, 16.39), "Bowling")),
        "bbb": _video("training", 12.0, ((5.0, 20.0), "Cooking")),               # clipped to [5, 12]: 210
        "ccc": _video("validation", 100.0, ((1.5, 21.5), "Bowling"), ((50, 51), "Cooking")),
        "ddd": _video("testing", 50.0),
        "eee": _video("validation", 9.0, ((0.0, 8.0), "Archery")),               # 25 fps: 200 frames
    }
    path = _write(tmp_path, _file(database))
    protocol = read_activitynet(path, fps={"v_eee": 25.0})
    assert protocol.class_names == ["Archery", "Bowling", "Cooking"]      # taxonomy leaves, sorted
    got = {s.sample_id: (s.label, s.subset, s.num_frames, s.start_frame, s.segment) for s in protocol.samples}
    assert got == {
        "v_aaa_0": (0, "training", 192, 0, (0.0, 6.4)),
        "v_bbb_0": (2, "training", 210, 150, (5.0, 12.0)),
        "v_ccc_0": (1, "validation", 600, 45, (1.5, 21.5)),
        "v_eee_0": (0, "validation", 200, 0, (0.0, 8.0)),
    }
    assert {s.sample_id: s.fps for s in protocol.samples}["v_eee_0"] == 25.0
    summary = protocol.summary
    assert summary.videos == {"training": 2, "validation": 2, "testing": 1}
    assert summary.segments == {"training": 3, "validation": 3}
    assert summary.dropped_short == {"training": 1, "validation": 1}
    assert summary.clipped_segments == 1
    assert summary.num_classes == 3
    # 2 training samples: round(2 * 2500 / 25124) = 0 go to valid; validation is the test split.
    assert protocol.splits() == {"train": ["v_aaa_0", "v_bbb_0"], "valid": [], "test": ["v_ccc_0", "v_eee_0"]}
    assert "2 dropped as too short" in summary.describe()


def test_min_frames_option_changes_the_drop_count():
    database = {f"v{i}": _video("training", 100.0, ((0.0, 1.0 + i), "Archery")) for i in range(10)}
    # segment i lasts (1 + i) s = 30 (1 + i) frames; keep those with at least 150 frames: i >= 4
    protocol = activitynet_protocol(_file(database), min_frames=150)
    assert sorted(s.youtube_id for s in protocol.samples) == [f"v{i}" for i in range(4, 10)]
    assert protocol.summary.dropped_short["training"] == 4


def test_valid_size_is_the_papers_proportion():
    assert valid_size(25_124) == 2_500
    assert valid_size(22_624 + 2_500) == 2_500
    for n in (0, 1, 7, 100, 1234, 9999):
        assert valid_size(n) == round(n * 2500 / 25124)


def _many(n_videos, per_video, subset="training"):
    """Videos with ``per_video`` segments of 8 s (240 frames) each, labels cycling over the classes."""
    names = ["Archery", "Bowling", "Cooking"]
    return {f"{subset[:2]}{v:03d}": _video(subset, 1000.0, *(((10.0 * k, 10.0 * k + 8.0), names[(v + k) % 3])
                                                            for k in range(per_video)))
            for v in range(n_videos)}


def test_train_valid_split_is_seeded_and_sized():
    annotations = _file({**_many(50, 3), **_many(4, 1, "validation")})
    n_train = 150
    protocol = activitynet_protocol(annotations, seed=3)
    splits = protocol.splits()
    assert len(splits["valid"]) == round(n_train * 2500 / 25124) == 15
    assert len(splits["train"]) == n_train - 15
    assert len(splits["test"]) == 4
    assert activitynet_protocol(annotations, seed=3).splits() == splits
    assert activitynet_protocol(annotations, seed=4).splits()["valid"] != splits["valid"]
    assert set(splits["train"]).isdisjoint(splits["valid"])


def test_keep_videos_together_never_splits_a_video():
    annotations = _file(_many(50, 3))
    protocol = activitynet_protocol(annotations, seed=0, keep_videos_together=True)
    videos = {split: {s.youtube_id for s in protocol.samples if s.split == split}
              for split in ("train", "valid")}
    assert videos["train"].isdisjoint(videos["valid"])
    # whole videos of 3 samples each until at least 15: exactly 5 videos
    assert len(protocol.splits()["valid"]) == 15 and len(videos["valid"]) == 5


def test_class_list_without_taxonomy_comes_from_the_labels():
    database = {"a": _video("training", 50.0, ((0, 10), "Zumba"), ((10, 20), "Archery")),
                "b": _video("validation", 50.0, ((0, 10), "Zumba"))}
    assert class_list({"database": database}) == ["Archery", "Zumba"]
    protocol = activitynet_protocol({"database": database})
    assert [s.label for s in protocol.samples] == [1, 0, 1]


@pytest.mark.parametrize("content, problem", [
    ("{not json", "not a valid JSON"),
    ({"version": "1.3"}, "missing key 'database'"),
    (_file({"x": {"subset": "training", "annotations": []}}), "video 'x': missing key 'duration'"),
    (_file({"x": _video("training", 10.0, ((0, 5), "Juggling"))}), "label 'Juggling' is not one of"),
    (_file({"x": _video("training", 10.0, ((5, 1), "Archery"))}), "segment ends before it starts"),
    (_file({"x": {"subset": "training", "duration": 9.0, "annotations": [{"segment": [0, 1]}]}}),
     "annotation 0: missing key 'label'"),
    (_file({"x": _video("train", 10.0)}), "'subset' must be"),
    (_file({"x": _video("training", -1.0)}), "'duration' must be a positive number"),
    (_file({"x": {"subset": "training", "duration": 9.0,
                  "annotations": [{"segment": ["a", 2], "label": "Archery"}]}}),
     "'segment' must be [start, end]"),
    ({"taxonomy": [{"nodeName": "x"}], "database": {}}, "taxonomy node lacks"),
])
def test_malformed_files_name_the_file_and_the_problem(tmp_path, content, problem):
    path = _write(tmp_path, content)
    with pytest.raises(DatasetError) as exc:
        read_activitynet(path)
    assert str(path) in str(exc.value)
    assert problem in str(exc.value)


def test_missing_file_is_a_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="no such ActivityNet annotation file"):
        read_activitynet(tmp_path / "absent.json")


def test_frame_count_rounding_is_robust_to_float_error():
    # (16.4 - 10) * 30 = 191.99999999999994 in floating point: the sample must still count 192 frames.
    assert math.floor((16.4 - 10.0) * 30) == 191
    protocol = activitynet_protocol(_file({"a": _video("training", 20.0, ((10.0, 16.4), "Archery"))}))
    assert [s.num_frames for s in protocol.samples] == [192]
