"""Accuracy, hit@k and both APs against hand-computed cases and brute-force definitions."""

import numpy as np
import pytest

from reproduce.evaluation.metrics import (
    accuracy,
    average_precision,
    classification_report,
    hit_at_k,
    interpolated_average_precision,
    interpolated_average_precision_1d,
    mean_over_classes,
    one_hot,
)


def test_interpolated_ap_hand_computed():
    # Ranked by score: negative, positive, negative, positive → precision 0, 1/2, 1/3, 2/4 at recall
    # 0, 1/2, 1/2, 1. Interpolated precision at recall 1/2 is max(1/2, 1/3, 1/2) = 1/2 → AP = 1/2.
    scores = np.array([0.9, 0.5, 0.1, 0.7])
    positives = np.array([False, False, True, True])
    assert interpolated_average_precision_1d(scores, positives) == pytest.approx(0.5)
    # Negative, positive, positive → precision 0, 1/2, 2/3 at recall 0, 1/2, 1. Interpolated
    # precision at recall 1/2 is max(1/2, 2/3) = 2/3, so AP = 1/2·2/3 + 1/2·2/3 = 2/3, whereas the
    # non-interpolated AP is 1/2·1/2 + 1/2·2/3 = 7/12.
    scores = np.array([0.9, 0.8, 0.7])
    positives = np.array([False, True, True])
    assert interpolated_average_precision_1d(scores, positives) == pytest.approx(2 / 3)
    assert average_precision(scores[:, None], positives[:, None])[0] == pytest.approx(7 / 12)
    assert np.isnan(interpolated_average_precision_1d(scores, np.zeros(3, bool)))


def _brute_force_interpolated(scores, positives):
    """(1/npos) Σ over the positives' ranks n of max_{m ≥ n} precision_m (distinct scores)."""
    order = np.argsort(-scores)
    hits = positives[order]
    prec = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    total = 0.0
    for n in np.nonzero(hits)[0]:
        total += prec[n:].max()
    return total / hits.sum()


def _brute_force_ap(scores, positives):
    """Σ_n (R_n − R_{n−1}) P_n = (1/npos) Σ over the positives' ranks of precision (distinct scores)."""
    order = np.argsort(-scores)
    hits = positives[order]
    prec = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return prec[hits].sum() / hits.sum()


def test_both_aps_match_their_definitions_on_random_data():
    rng = np.random.default_rng(0)
    scores = rng.random((60, 7))
    positives = rng.random((60, 7)) < 0.3
    positives[0] = True  # every class has a positive
    ap = average_precision(scores, positives)
    ap_int = interpolated_average_precision(scores, positives)
    for c in range(7):
        assert ap[c] == pytest.approx(_brute_force_ap(scores[:, c], positives[:, c]), abs=1e-12)
        assert ap_int[c] == pytest.approx(_brute_force_interpolated(scores[:, c], positives[:, c]), abs=1e-12)
    assert np.all(ap_int >= ap - 1e-12)  # interpolation never lowers precision


def test_accuracy_and_hit_at_k_count_by_hand():
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.4, 0.35, 0.25]])
    labels = np.array([1, 1, 2, 2])
    positives = one_hot(labels, 3)
    assert positives.sum() == 4 and positives[3, 2]
    assert accuracy(scores, positives) == pytest.approx(2 / 4)  # videos 0 and 2
    assert hit_at_k(scores, positives, 2) == pytest.approx(3 / 4)  # video 3's label is third
    assert hit_at_k(scores, positives, 3) == 1.0


def test_classes_without_positives_are_skipped_and_named():
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.6, 0.4, 0.0]])
    positives = one_hot(np.array([0, 1, 0]), 3)
    report = classification_report(scores, positives, ["a", "b", "never"])
    assert report.classes_without_positives == ("never",)
    assert report.per_class_ap["never"] is None
    assert report.per_class_ap["a"] == pytest.approx(1.0)
    assert report.per_class_ap["b"] == pytest.approx(1.0)
    assert report.mAP == pytest.approx(1.0) and report.mAP_interpolated == pytest.approx(1.0)
    assert report.accuracy == 1.0 and report.num_videos == 3
    plain = report.to_dict()
    assert list(plain) == ["accuracy", "hit_at_3", "mAP", "mAP_interpolated", "per_class_ap",
                           "per_class_ap_interpolated", "classes_without_positives", "num_videos"]
    assert plain["classes_without_positives"] == ["never"] and plain["per_class_ap"]["never"] is None
    mean, skipped = mean_over_classes(np.array([0.5, np.nan, 0.25]))
    assert mean == pytest.approx(0.375) and skipped == 1


def test_multilabel_accuracy_counts_any_label():
    scores = np.array([[0.9, 0.8, 0.1], [0.1, 0.2, 0.3]])
    positives = np.array([[False, True, True], [True, False, False]])
    assert accuracy(scores, positives) == 0.0
    positives[0, 0] = True
    assert accuracy(scores, positives) == 0.5


def test_report_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="disagree"):
        classification_report(np.zeros((2, 3)), np.zeros((2, 3), bool), ["a", "b"])
