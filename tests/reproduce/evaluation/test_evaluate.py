"""Testing protocol: per-video averaging, the C3D baseline, ensembles, checkpoints end to end."""

import numpy as np
import pytest
import torch
from helpers.builders import tiny_config, write_synth

from bricks import AttentionLSTMOutput
from fuel_datasets import FeatureWriter
from fuel_datasets.streams import Batch, TestWindows, WindowSpec
from reproduce.errors import ReproduceError
from reproduce.evaluation.evaluate import (
    VideoScores,
    baseline_scores,
    ensemble_scores,
    evaluate_baseline,
    evaluate_checkpoints,
    score_videos,
)
from reproduce.evaluation.metrics import classification_report
from reproduce.training.loop import train

pytestmark = pytest.mark.usefixtures("one_thread")


def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _batch(inputs, label):
    B = inputs.shape[0]
    return Batch(torch.from_numpy(inputs), None, None, torch.full((B,), label, dtype=torch.int64),
                 ("v",) * B, torch.zeros(B, dtype=torch.int64), torch.zeros(B, dtype=torch.bool))


class MeanSoftmax(torch.nn.Module):
    """A stand-in scorer: step logits = the inputs themselves (B, N, C); scores = mean_t softmax."""

    multilabel = False

    def forward(self, inputs, attended=None, attended_mask=None):
        return AttentionLSTMOutput(inputs, torch.softmax(inputs, -1).mean(1), None)


def _windows(rng, videos=5, classes=3):
    """(video id, Batch) pairs with different window counts per video, as TestWindows yields them."""
    out = []
    for v in range(videos):
        inputs = rng.standard_normal((2 + v, 4, classes)).astype(np.float32)  # (B_v, N, C)
        out.append((f"vid{v}", _batch(inputs, v % classes)))
    return out


@pytest.mark.parametrize("window_batch", [1, 7, 1000])
def test_video_scores_are_the_mean_of_their_windows(window_batch):
    windows = _windows(np.random.default_rng(0))
    losses = []

    def loss_fn(logits, targets):
        losses.append(logits.shape[0])
        return torch.nn.functional.cross_entropy(logits.mean(1), targets, reduction="none")

    result = score_videos(MeanSoftmax(), windows, window_batch=window_batch, loss_fn=loss_fn)
    assert result.video_ids == tuple(f"vid{v}" for v in range(5))
    for v, (_, batch) in enumerate(windows):
        x = batch.inputs.numpy().astype(np.float64)
        np.testing.assert_allclose(result.scores[v], _softmax(x).mean(axis=(0, 1)), rtol=1e-6)
        assert result.positives[v].tolist() == [c == v % 3 for c in range(3)]
    all_logits = np.concatenate([b.inputs.numpy().mean(1) for _, b in windows])
    all_labels = np.concatenate([b.targets.numpy() for _, b in windows])
    expected_loss = -np.mean(np.log(_softmax(all_logits.astype(np.float64))[np.arange(len(all_labels)),
                                                                            all_labels]))
    assert result.loss == pytest.approx(expected_loss, rel=1e-6)
    assert max(losses) <= max(window_batch, 6)  # windows of one video are never split


def test_c3d_baseline_softmaxes_each_chunk_then_averages():
    windows = _windows(np.random.default_rng(1))
    result = baseline_scores(windows, num_classes=3)
    for v, (_, batch) in enumerate(windows):
        expected = _softmax(batch.inputs.numpy().astype(np.float64)).mean(axis=(0, 1))
        np.testing.assert_allclose(result.scores[v], expected, rtol=1e-12)
        assert not np.allclose(result.scores[v], _softmax(batch.inputs.numpy().mean(axis=(0, 1))))
    probabilities = baseline_scores(windows, num_classes=3, already_probabilities=True)
    np.testing.assert_allclose(probabilities.scores[0], windows[0][1].inputs.numpy().mean(axis=(0, 1)),
                               rtol=1e-6)
    with pytest.raises(ReproduceError, match="has 3 columns but the dataset has 5 classes"):
        baseline_scores(windows, num_classes=5)


def test_ensemble_is_the_mean_and_refuses_other_videos():
    rng = np.random.default_rng(2)
    positives = rng.random((4, 3)) < 0.5
    a = VideoScores(("a", "b", "c", "d"), rng.random((4, 3)), positives, None)
    b = VideoScores(("a", "b", "c", "d"), rng.random((4, 3)), positives, None)
    np.testing.assert_allclose(ensemble_scores([a, b]).scores, (a.scores + b.scores) / 2)
    with pytest.raises(ReproduceError, match="different videos"):
        ensemble_scores([a, b._replace(video_ids=("a", "b", "d", "c"))])
    with pytest.raises(ReproduceError, match="disagree on the videos' labels"):
        ensemble_scores([a, b._replace(positives=~positives)])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A synthetic file whose c3d_fc8 has one column per class, and two short runs on it."""
    root = tmp_path_factory.mktemp("eval")
    data = write_synth(root / "synth.h5")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    runs = []
    for seed, attend in ((3, "vgg_obj_fc8"), (4, "vgg_act_fc8")):
        cfg = tiny_config(data, attended_source=attend, seed=seed, iterations=4, validate_every=0)
        train(cfg, str(root / attend), device="cpu", progress=False)
        runs.append(str(root / attend / "best.pt"))
    torch.set_num_threads(before)
    return data, runs


def test_checkpoint_report_matches_a_direct_evaluation(trained):
    data, (obj, act) = trained
    report = evaluate_checkpoints(data, [obj], crops=2, seed=1, device="cpu")
    scores = report.video_scores
    from reproduce import load_model

    model, meta = load_model(obj)
    windows = TestWindows(data, split="test", input_source="c3d_fc6", attended_source="vgg_obj_fc8",
                          spec=WindowSpec(48, 3, 1), crops=2, seed=1)
    rows = []
    with torch.no_grad():
        for _, batch in windows:  # one video at a time, 2 + 2 flipped windows
            assert batch.inputs.shape[0] == 4 and batch.flipped.tolist() == [False, False, True, True]
            rows.append(model(batch.inputs, batch.attended).scores.double().mean(0).numpy())
    np.testing.assert_allclose(scores.scores, np.stack(rows), rtol=1e-5)
    assert report.num_videos == len(windows.video_ids) and scores.video_ids == windows.video_ids
    expected = classification_report(np.stack(rows), scores.positives, meta["class_names"])
    for key in ("accuracy", "mAP", "mAP_interpolated", "hit_at_3"):
        assert getattr(report, key) == pytest.approx(getattr(expected, key)), key
    assert set(report.per_class_ap) == set(meta["class_names"])
    assert (report.split, report.crops, report.checkpoints, report.members) == ("test", 2, (obj,), ())
    assert report.class_names == tuple(meta["class_names"])


def test_ensemble_of_two_checkpoints_averages_their_scores(trained):
    data, (obj, act) = trained
    alone_obj = evaluate_checkpoints(data, [obj], crops=2, device="cpu")
    alone_act = evaluate_checkpoints(data, [act], crops=2, device="cpu")
    report = evaluate_checkpoints(data, [obj, act], crops=2, device="cpu")
    mean = (alone_obj.video_scores.scores + alone_act.video_scores.scores) / 2
    np.testing.assert_allclose(report.video_scores.scores, mean, rtol=1e-12)
    assert [m.checkpoint for m in report.members] == [obj, act]
    for member, alone in zip(report.members, (alone_obj, alone_act), strict=True):
        assert (member.accuracy, member.mAP, member.mAP_interpolated) == \
            (alone.accuracy, alone.mAP, alone.mAP_interpolated)


def test_a_run_folder_stands_for_its_best_checkpoint_and_the_scores_are_written(trained, tmp_path):
    import os

    data, (obj, _) = trained
    by_folder = evaluate_checkpoints(data, [os.path.dirname(obj)], crops=2, seed=1, device="cpu")
    by_file = evaluate_checkpoints(data, [obj], crops=2, seed=1, device="cpu")
    assert by_folder.checkpoints == (obj,) and by_folder.to_json() == by_file.to_json()
    by_folder.write_scores(str(tmp_path / "scores.npz"))
    with np.load(tmp_path / "scores.npz") as saved:
        assert saved["video_ids"].tolist() == list(by_file.video_scores.video_ids)
        np.testing.assert_array_equal(saved["scores"], by_file.video_scores.scores)
        np.testing.assert_array_equal(saved["positives"], by_file.video_scores.positives)


def test_baseline_on_a_file(tmp_path):
    data = write_synth(tmp_path / "fc8.h5", num_videos=16)  # c3d_fc8 has 4 columns = 4 classes
    report = evaluate_baseline(data, "c3d_fc8", crops=2, frames=48, steps=3)
    windows = TestWindows(data, split="test", input_source="c3d_fc8", spec=WindowSpec(48, 3, 1), crops=2)
    batches = [b for _, b in windows]
    windows.close()
    expected = np.stack([_softmax(b.inputs.numpy().astype(np.float64)).mean(axis=(0, 1)) for b in batches])
    np.testing.assert_allclose(report.video_scores.scores, expected, rtol=1e-12)
    assert report.softmax_applied and report.baseline == "c3d_fc8" and report.checkpoints == ()
    with FeatureWriter(data) as writer:
        writer.set_source_info("c3d_fc8", layer="prob")
    report = evaluate_baseline(data, "c3d_fc8", crops=2, frames=48, steps=3)
    assert not report.softmax_applied
    expected = np.stack([b.inputs.numpy().astype(np.float64).mean(axis=(0, 1)) for b in batches])
    np.testing.assert_allclose(report.video_scores.scores, expected, rtol=1e-6)
    with pytest.raises(ReproduceError, match="has 16 columns but the dataset has 4 classes"):
        evaluate_baseline(data, "c3d_fc6", crops=1, frames=48, steps=3)
