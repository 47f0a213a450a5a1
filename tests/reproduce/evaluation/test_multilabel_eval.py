"""Multi-label evaluation end to end (docs/paper.md §4, Hollywood2): checkpoints whose scores are set by
hand, a hand-made feature file, and metrics known in closed form.

The two checkpoints are real `bricks.AttentionLSTM` (multilabel=True) models whose weights make each
step's logits a known function of that step's input row: input MLP W_m = I, so v' = σ(x); gates
i = o = σ(30) = 1 and f = σ(−30) ≈ 1e-13 (no memory); U = 0 and D = 0 (attention has no effect), so
h_t = tanh(tanh(σ(x_t) − 0.5)); classifier logits z_t = 20 · h_t. `_features` inverts that chain, so
the test picks the logits z (V videos, 2 windows, N steps, C classes) and writes the features that give
them. Hidden units 0..C−1 carry member A's logits and C..2C−1 member B's; each classifier reads its half.

Each video is 48 frames = exactly one 3-step window, so every crop is the same window and the flipped
features (``<source>_flip``) give the second one: a video's score is
    s_{v,c} = ½ [σ(mean_t z_{v,orig,t,c}) + σ(mean_t z_{v,flip,t,c})].
Metric definitions checked (fractions of 1): accuracy = share of videos whose top-scoring class is one
of their labels; hit@3 = share with a label among the top 3; AP = scikit-learn's (mean over the
positives of the precision at their rank, no ties here); interpolated AP = ActivityNet's (precision
made monotone from the right before averaging).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bricks import AttentionLSTM
from fuel_datasets import FeatureWriter
from reproduce.cli import main
from reproduce.evaluation.evaluate import evaluate_checkpoints
from reproduce.runs.checkpoint import save_checkpoint
from reproduce.tables.rows import RunSettings
from reproduce.tables.runner import DataFiles, Runner, markdown, run_table
from reproduce.training.config import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = ["AnswerPhone", "DriveCar", "Eat", "FightPerson", "GetOutCar", "HandShake"]  # Hollywood2's first 6
C, N, FRAMES, GAIN = len(CLASSES), 3, 48, 20.0
ATTENDED = {"A": ("vgg_obj_fc8", 5), "B": ("vgg_act_fc8", 4)}   # member → (attended source, Da)

# Multi-hot labels, rows v0..v5.
LABELS = np.array([
    [1, 0, 1, 0, 0, 0],      # v0 {AnswerPhone, Eat}
    [0, 1, 0, 0, 0, 0],      # v1 {DriveCar}
    [0, 0, 1, 1, 0, 0],      # v2 {Eat, FightPerson}
    [1, 0, 0, 0, 1, 0],      # v3 {AnswerPhone, GetOutCar}
    [0, 0, 0, 0, 0, 1],      # v4 {HandShake}
    [0, 1, 0, 1, 0, 0],      # v5 {DriveCar, FightPerson}
], dtype=np.int8)
V = len(LABELS)

# Member A's logits, the same at every step and in both windows except v3/GetOutCar (below).
LOGITS_A = np.array([
    [2.0, -1.0, 2.5, -2.0, -3.0, -1.5],
    [-1.1, 2.2, -1.3, 0.0, -0.4, -1.7],
    [-2.1, 0.5, 1.0, 2.3, -2.5, -0.7],
    [1.0, -0.8, -1.6, -1.4, 0.0, 2.6],
    [-0.6, -1.9, -0.2, 0.1, -1.0, 2.4],
    [3.0, 0.2, 1.8, -0.3, 1.2, 0.9],
])
# Member B differs in two cells of v5: DriveCar 0.2 → 6.0, Eat 1.8 → 2.8.
LOGITS_B = LOGITS_A.copy()
LOGITS_B[5, 1], LOGITS_B[5, 2] = 6.0, 2.8


def _step_logits(table: np.ndarray) -> np.ndarray:
    """(V, C) table → z (V, 2, N, C): windows [original, flipped], N steps. v3/GetOutCar has steps
    (3, 3, −6.6) in the original window (σ(mean) = σ(−0.2) = 0.450, but the mean of the σ is 0.636) and −1
    in the flipped one (σ = 0.269): its score ½(0.450 + 0.269) = 0.360 ranks it below v1's σ(−0.4) = 0.401,
    whereas the max over windows (0.450) or the average of sigmoids (0.452) would rank it above."""
    z = np.broadcast_to(table[:, None, None, :], (V, 2, N, C)).copy()
    z[3, 0, :, 4] = (3.0, 3.0, -6.6)
    z[3, 1, :, 4] = -1.0
    return z


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _expected_scores(z: np.ndarray) -> np.ndarray:
    """z (V, 2, N, C) → (V, C): sigmoid of the step-averaged logits, averaged over the windows."""
    return _sigmoid(z.mean(axis=2)).mean(axis=1)


def _features(z: np.ndarray) -> np.ndarray:
    """The input rows x with 20 · tanh(tanh(σ(x) − 0.5)) = z (the model's chain, see module doc)."""
    p = np.arctanh(np.arctanh(z / GAIN)) + 0.5
    return np.log(p / (1.0 - p))


Z = {"A": _step_logits(LOGITS_A), "B": _step_logits(LOGITS_B)}

# Hand-computed metrics. Per class: the ranking of the videos by score (P = positive, N = negative) and
# AP = mean over the positives of (positives so far / rank).
#   AnswerPhone  v5 N, v0 P, v3 P           AP (1/2 + 2/3)/2 = 7/12; interpolated (2/3 + 2/3)/2 = 2/3
#   DriveCar     v1 P, v2 N, v5 P           AP (1 + 2/3)/2 = 5/6   (B and the ensemble: v5, v1 / v1, v5 → 1)
#   Eat          v0 P, v5 N, v2 P           AP 5/6   (B: v5 N, v0 P, v2 P → 7/12, interpolated 2/3)
#   FightPerson  v2 P, v4 N, v1 N, v5 P     AP (1 + 2/4)/2 = 3/4
#   GetOutCar    v5 N, v1 N, v3 P           AP 1/3
#   HandShake    v3 N, v4 P                 AP 1/2
# Only AnswerPhone (and B's Eat) has a precision that rises again, so only there the interpolation adds.
# Accuracy: top classes v0 Eat ✓ (not its first label), v1 DriveCar ✓, v2 FightPerson ✓ (not its first
# label), v3 HandShake ✗, v4 HandShake ✓, v5 AnswerPhone ✗ (B: DriveCar ✓; ensemble: AnswerPhone ✗).
# hit@3: v5's top 3 are AnswerPhone, Eat, GetOutCar for A, a miss; B and the ensemble put DriveCar in them.
def _expected(ap: list[float], ap_int: list[float], accuracy: float, hit_at_3: float) -> dict:
    return dict(ap=ap, ap_int=ap_int, accuracy=accuracy, hit_at_3=hit_at_3, mAP=sum(ap) / C,
                mAP_interpolated=sum(ap_int) / C)


EXPECTED = {
    "A": _expected([7 / 12, 5 / 6, 5 / 6, 3 / 4, 1 / 3, 1 / 2], [2 / 3, 5 / 6, 5 / 6, 3 / 4, 1 / 3, 1 / 2],
                   accuracy=4 / 6, hit_at_3=5 / 6),
    "B": _expected([7 / 12, 1, 7 / 12, 3 / 4, 1 / 3, 1 / 2], [2 / 3, 1, 2 / 3, 3 / 4, 1 / 3, 1 / 2],
                   accuracy=5 / 6, hit_at_3=1.0),
    "ensemble": _expected([7 / 12, 1, 5 / 6, 3 / 4, 1 / 3, 1 / 2], [2 / 3, 1, 5 / 6, 3 / 4, 1 / 3, 1 / 2],
                          accuracy=4 / 6, hit_at_3=1.0),
}
# A: mAP 23/36, interpolated 47/72; B: 5/8, 47/72; ensemble: 2/3, 49/72.


def _member(which: str, data: str, generator: torch.Generator) -> dict:
    """The checkpoint payload of member ``which`` ("A" or "B"), with the keys `alstm train` writes."""
    attended_source, attended_dim = ATTENDED[which]
    model = AttentionLSTM(2 * C, attended_dim, C, hidden_dim=2 * C, match_dim=4, dropout=0.0,
                          multilabel=True, generator=generator)
    H, eye = 2 * C, torch.eye(2 * C)
    with torch.no_grad():
        model.input_mlp.weight.copy_(eye)                                  # v' = σ(x)
        model.input_mlp.bias.zero_()
        gates = model.lstm.input_to_gates                                 # [i | f | g | o], each H rows
        gates.weight.zero_()
        gates.weight[2 * H:3 * H] = eye
        gates.bias.copy_(torch.cat([torch.full((H,), 30.0), torch.full((H,), -30.0),
                                    torch.full((H,), -0.5), torch.full((H,), 30.0)]))
        model.lstm.state_to_gates.weight.zero_()
        model.lstm.distribute.weight.zero_()                             # the glimpse adds nothing
        model.classifier.weight.zero_()
        half = slice(0, C) if which == "A" else slice(C, 2 * C)
        model.classifier.weight[:, half] = GAIN * torch.eye(C)
        model.classifier.bias.zero_()
    config = TrainConfig(data=data, input_source="c3d_fc6", attended_source=attended_source, hidden_dim=H,
                         match_dim=4, dropout=0.0, multilabel=True, frames=FRAMES, steps=N)
    return {"config": config.to_dict(), "model_args": dict(model.hyperparameters),
            "model": model.state_dict(), "class_names": CLASSES, "input_source": "c3d_fc6",
            "attended_source": attended_source, "iteration": 0, "metrics": {},
            "spec": {"frames": FRAMES, "steps": N, "attended_per_step": 1}}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(feature file, checkpoint A, checkpoint B): six 48-frame test videos with flipped features."""
    root = tmp_path_factory.mktemp("multilabel")
    data = str(root / "hollywood2.h5")
    rng = np.random.default_rng(0)
    rows = np.concatenate([_features(Z["A"]), _features(Z["B"])], axis=-1)   # (V, 2, N, 2C)
    chunks = np.arange(N) * (FRAMES // N)                                            # frames 0, 16, 32
    with FeatureWriter(data, class_names=CLASSES, multilabel=True) as writer:
        for v in range(V):
            features = {"c3d_fc6": rows[v, 0], "c3d_fc6_flip": rows[v, 1]}
            for source, dim in ATTENDED.values():
                features[source] = rng.standard_normal((N, dim))
                features[source + "_flip"] = rng.standard_normal((N, dim))
            writer.add_video(f"v{v}", features, {s: chunks for s in features if not s.endswith("_flip")},
                             num_frames=FRAMES, fps=25.0, targets=LABELS[v], split="test")
    generator = torch.Generator().manual_seed(0)
    paths = []
    for which in ("A", "B"):
        path = str(root / f"{which}.pt")
        save_checkpoint(path, _member(which, data, generator))
        paths.append(path)
    return data, paths[0], paths[1]


def _check_report(report: dict, expected: dict) -> None:
    for key in ("accuracy", "hit_at_3", "mAP", "mAP_interpolated"):
        assert report[key] == pytest.approx(expected[key], abs=1e-12), key
    assert report["per_class_ap"] == pytest.approx(dict(zip(CLASSES, expected["ap"], strict=True)), abs=1e-12)
    assert report["per_class_ap_interpolated"] == pytest.approx(
        dict(zip(CLASSES, expected["ap_int"], strict=True)), abs=1e-12)
    assert report["num_videos"] == V and report["classes_without_positives"] == []


@pytest.mark.parametrize("which", ["A", "B"])
def test_single_checkpoint_scores_and_metrics_are_the_hand_computed_ones(files, which):
    data, path_a, path_b = files
    path = path_a if which == "A" else path_b
    evaluation = evaluate_checkpoints(data, [path], crops=2, device="cpu")
    report, scores = evaluation.to_dict(), evaluation.video_scores
    assert scores.video_ids == tuple(f"v{v}" for v in range(V)) and report["flip"] is True
    np.testing.assert_array_equal(scores.positives, LABELS.astype(bool))
    np.testing.assert_allclose(scores.scores, _expected_scores(Z[which]), rtol=1e-5)
    _check_report(report, EXPECTED[which])


def test_ensemble_scores_are_the_mean_of_the_members_and_metrics_follow(files):
    data, path_a, path_b = files
    evaluation = evaluate_checkpoints(data, [path_a, path_b], crops=2, device="cpu")
    report, scores = evaluation.to_dict(), evaluation.video_scores
    expected = (_expected_scores(Z["A"]) + _expected_scores(Z["B"])) / 2
    np.testing.assert_allclose(scores.scores, expected, rtol=1e-5)
    np.testing.assert_array_equal(scores.positives, LABELS.astype(bool))
    _check_report(report, EXPECTED["ensemble"])
    # the ensemble is neither member: its mAP and hit@3 come from the averaged scores
    assert [m["checkpoint"] for m in report["members"]] == [path_a, path_b]
    for member, which in zip(report["members"], ("A", "B"), strict=True):
        for key in ("accuracy", "mAP", "mAP_interpolated"):
            assert member[key] == pytest.approx(EXPECTED[which][key], abs=1e-12), (which, key)


class _Runner(Runner):
    """The real evaluation of table rows, with this file's checkpoints in place of trained runs; every
    other row of the table is marked unavailable."""

    def __init__(self, keys: dict[str, str], *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.keys = keys

    def unavailable(self, dataset, row):
        if not row.models or any(key not in self.keys for key in row.models):
            return "not part of this test"
        return super().unavailable(dataset, row)

    def checkpoint(self, dataset, key):
        return self.keys[key]


# (CLI checkpoints, table, row, its model keys → members): the single model and the ensemble rows.
CASES = {
    "single": (["A"], 4, "aLSTM-VGG_obj (fc8)", {"alstm-obj-fc8": "A"}),
    "ensemble": (["A", "B"], 5, "aLSTM-VGG_act+obj (fc8)", {"alstm-act-fc8": "B", "alstm-obj-fc8": "A"}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_map_is_the_same_number_in_json_printout_and_tables(files, tmp_path, capsys, case):
    data, path_a, path_b = files
    paths = {"A": path_a, "B": path_b}
    members, table, row_name, keys = CASES[case]
    expected = EXPECTED["A" if case == "single" else "ensemble"]

    def pct(value):
        return f"{100 * value:.1f}"

    # the data tell the two APs apart even after rounding, so a swap shows everywhere below
    assert pct(expected["mAP"]) != pct(expected["mAP_interpolated"])

    out = tmp_path / "eval.json"
    argv = ["evaluate", "--data", data, "--crops", "2", "--json", str(out), "--quiet"]
    for which in members:
        argv += ["--checkpoint", paths[which]]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    written = json.loads(out.read_text())
    _check_report(written, expected)
    assert (f"accuracy {pct(expected['accuracy'])}%  hit@3 {pct(expected['hit_at_3'])}%  "
            f"mAP {pct(expected['mAP'])}%  mAP (ActivityNet interpolated) "
            f"{pct(expected['mAP_interpolated'])}%") in printed.splitlines()
    if case == "ensemble":
        for which in members:
            assert (f"  member {paths[which]}: accuracy {pct(EXPECTED[which]['accuracy'])}%  "
                    f"mAP {pct(EXPECTED[which]['mAP'])}%") in printed.splitlines()

    tables_data = DataFiles(activitynet=None, hollywood2=data, tag="handmade", builtin=False)
    runner = _Runner({k: paths[w] for k, w in keys.items()}, tables_data, RunSettings("test", crops=2),
                     results=str(tmp_path / "results"), device="cpu", progress=False)
    result = run_table(table, runner)
    row = {r["name"]: r for r in result["rows"]}[row_name]
    assert "not_run" not in row and row["measured"] == {"mAP": pytest.approx(round(100 * expected["mAP"], 2))}
    if case == "ensemble":   # in the row's order of models: act (B), then obj (A)
        assert row["members"] == [{"mAP": pytest.approx(round(100 * EXPECTED[w]["mAP"], 2))}
                                  for w in keys.values()]
    paper = row["paper"]["mAP"]
    assert f"| {row_name} | {paper:.1f} | {pct(expected['mAP'])} |" in markdown(result).splitlines()
