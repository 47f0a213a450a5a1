"""Hollywood2 protocol: hand-written ClipSets folders; multi-hot targets checked against the matrix that
wrote them."""

import numpy as np
import pytest

from fuel_datasets.errors import DatasetError
from fuel_datasets.hollywood2 import parse_clipset, read_hollywood2

ACTIONS = ["Run", "AnswerPhone", "Kiss"]          # written in this order; the classes come out sorted


def _clips(subset, n):
    return [f"actionclip{subset}{i:05d}" for i in range(1, n + 1)]


def _write_clipsets(folder, truth, actions=ACTIONS, index=False, extra=None):
    """truth[subset]: (clips, (n_clips, n_actions) 0/1 matrix in the order of ``actions``)."""
    folder.mkdir(exist_ok=True)
    for subset, (clips, matrix) in truth.items():
        for a, action in enumerate(actions):
            lines = [f"{clip}  {1 if matrix[i, a] else -1}" for i, clip in enumerate(clips)]
            (folder / f"{action}_{subset}.txt").write_text("\n".join(lines) + "\n")
        if index:
            (folder / f"actions_{subset}.txt").write_text("".join(f"{clip}  1\n" for clip in clips))
    for name, text in (extra or {}).items():
        (folder / name).write_text(text)
    return folder


def _truth(rng, n_train=9, n_test=7):
    out = {}
    for subset, n in (("train", n_train), ("test", n_test)):
        matrix = (rng.random((n, len(ACTIONS))) < 0.4).astype(int)
        matrix[0] = 0                                  # one clip with no action
        matrix[1] = 1                                  # one with all three
        out[subset] = (_clips(subset, n), matrix)
    return out


def test_multi_hot_targets_match_the_files(tmp_path):
    truth = _truth(np.random.default_rng(0))
    folder = _write_clipsets(tmp_path / "ClipSets", truth, index=True,
                             extra={"Run_autotrain.txt": "actionclipautoautotrain00001  1\n", "README": "x"})
    protocol = read_hollywood2(folder)
    assert protocol.class_names == ["AnswerPhone", "Kiss", "Run"]
    order = [ACTIONS.index(name) for name in protocol.class_names]      # columns of truth per class
    for subset in ("train", "test"):
        clips, matrix = truth[subset]
        assert protocol.splits()[subset] == sorted(clips)
        expected = matrix[np.argsort(clips)][:, order].astype(np.float32)
        np.testing.assert_array_equal(protocol.target_matrix(subset), expected)
        summary = protocol.summary
        assert summary.clips[subset] == len(clips)
        assert summary.unlabeled[subset] == int((matrix.sum(1) == 0).sum())
        assert summary.multi_label[subset] == int((matrix.sum(1) > 1).sum())
        assert summary.positives[subset] == {name: int(matrix[:, ACTIONS.index(name)].sum())
                                             for name in protocol.class_names}
    assert protocol.summary.ignored_files == ("README", "Run_autotrain.txt")
    sample = protocol.samples[1]
    np.testing.assert_array_equal(sample.targets(3), protocol.target_matrix()[1])


def test_valid_fraction_moves_a_seeded_share_of_training_clips(tmp_path):
    folder = _write_clipsets(tmp_path / "ClipSets", _truth(np.random.default_rng(1), n_train=40))
    protocol = read_hollywood2(folder, valid_fraction=0.25, seed=5)
    splits = protocol.splits()
    assert len(splits["valid"]) == 10 and len(splits["train"]) == 30 and len(splits["test"]) == 7
    assert all(clip.startswith("actioncliptrain") for clip in splits["valid"])
    assert read_hollywood2(folder, valid_fraction=0.25, seed=5).splits() == splits
    assert read_hollywood2(folder, valid_fraction=0.25, seed=6).splits()["valid"] != splits["valid"]
    assert read_hollywood2(folder).summary.split_sizes == {"train": 40, "valid": 0, "test": 7}


def test_parse_clipset_accepts_any_whitespace():
    assert parse_clipset("a  1\n\nb\t-1\n  c 1  \n", "f.txt") == [("a", 1), ("b", -1), ("c", 1)]


def _broken(folder, name, text):
    _write_clipsets(folder, _truth(np.random.default_rng(2)))
    (folder / name).write_text(text)
    return folder


@pytest.mark.parametrize("name, text, problem", [
    ("Kiss_train.txt", "actioncliptrain00001  1\nactioncliptrain00002  yes\n", "Kiss_train.txt, line 2"),
    ("Kiss_train.txt", "actioncliptrain00001  1\nactioncliptrain00001  -1\n", "listed twice"),
    ("Kiss_test.txt", "".join(f"{c}  1\n" for c in _clips("test", 6)), "does not list 'actioncliptest00007'"),
    ("Eat_train.txt", "".join(f"{c}  1\n" for c in _clips("train", 9)), "Eat_test.txt is missing"),
    ("Kiss_test.txt", "", "lists no clip"),
    ("Run_test.txt", "".join(f"{c}  1\n" for c in _clips("test", 7) + ["stray"]), "lists 'stray'"),
])
def test_malformed_clipsets_name_the_file_and_problem(tmp_path, name, text, problem):
    folder = _broken(tmp_path / "ClipSets", name, text)
    with pytest.raises(DatasetError) as exc:
        read_hollywood2(folder)
    assert problem in str(exc.value)
    assert str(folder) in str(exc.value)


def test_index_file_must_agree_with_the_action_files(tmp_path):
    folder = _write_clipsets(tmp_path / "ClipSets", _truth(np.random.default_rng(3)), index=True)
    (folder / "actions_test.txt").write_text("".join(f"{c}  1\n" for c in _clips("test", 8)))
    with pytest.raises(DatasetError, match="not list 'actioncliptest00008', which actions_test.txt does"):
        read_hollywood2(folder)


def test_empty_or_missing_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"empty: no <Action>_train.txt"):
        read_hollywood2(tmp_path / "empty")
    with pytest.raises(DatasetError, match="no such folder"):
        read_hollywood2(tmp_path / "absent")
