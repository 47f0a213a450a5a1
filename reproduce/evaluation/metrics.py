"""Classification metrics over videos: accuracy, hit@k, and two flavours of average precision.

All functions are pure numpy. Shapes: V videos, C classes; ``scores`` (V, C) float (higher = more
likely), ``positives`` (V, C) bool (multi-hot ground truth; a single-label dataset is its one-hot).
Results are fractions in [0, 1], not percentages.

Two APs per class, both reported because the paper does not say which it used:

- ``ap``: scikit-learn's `average_precision_score`, Σ_n (R_n − R_{n−1}) P_n over score thresholds
  (no interpolation; tied scores form one threshold).
- ``ap_interpolated``: ActivityNet's official classification scoring (``eval_classification.py``,
  ``utils.interpolated_prec_rec``, the VOC-2011 rule): rank the videos by score, take precision and
  recall after each, make precision monotone from the right (P̂_n = max_{m ≥ n} P_m) and sum
  (R_n − R_{n−1}) P̂_n over the ranks where recall changes. The official script breaks ties in the
  order of ``argsort()[::-1]``; here tied scores keep their video order (a stable sort), which only
  matters for exact ties.

A class without a positive video has no AP (NaN); the means skip such classes and say how many.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """labels (V,) int in [0, C) → (V, C) bool."""
    labels = np.asarray(labels)
    out = np.zeros((labels.shape[0], num_classes), dtype=bool)
    out[np.arange(labels.shape[0]), labels] = True
    return out


def accuracy(scores: np.ndarray, positives: np.ndarray) -> float:
    """Fraction of videos whose top-scoring class is one of their labels (top-1 accuracy if single-label)."""
    top = np.argmax(scores, axis=1)  # (V,)
    return float(np.mean(positives[np.arange(scores.shape[0]), top]))


def hit_at_k(scores: np.ndarray, positives: np.ndarray, k: int = 3) -> float:
    """Fraction of videos with a label among their k top-scoring classes (ActivityNet's hit@3)."""
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # (V, k)
    return float(np.mean(np.any(np.take_along_axis(positives, top, axis=1), axis=1)))


def average_precision(scores: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """Per-class scikit-learn AP → (C,) float, NaN for classes without positives."""
    out = np.full(scores.shape[1], np.nan)
    for c in range(scores.shape[1]):
        if positives[:, c].any():
            out[c] = average_precision_score(positives[:, c], scores[:, c])
    return out


def interpolated_average_precision_1d(scores: np.ndarray, positives: np.ndarray) -> float:
    """ActivityNet's interpolated AP of one class: scores (V,), positives (V,) bool; NaN without positives."""
    npos = int(np.sum(positives))
    if npos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(positives[order]).astype(np.float64)  # (V,)
    fp = np.cumsum(~positives[order]).astype(np.float64)
    rec = tp / npos
    prec = tp / (tp + fp)
    mprec = np.concatenate([[0.0], prec, [0.0]])
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mprec = np.maximum.accumulate(mprec[::-1])[::-1]  # monotone from the right
    idx = np.nonzero(mrec[1:] != mrec[:-1])[0] + 1  # ranks where recall changes
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


def interpolated_average_precision(scores: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """Per-class ActivityNet interpolated AP → (C,) float, NaN for classes without positives."""
    return np.array(
        [interpolated_average_precision_1d(scores[:, c], positives[:, c]) for c in range(scores.shape[1])]
    )


def mean_over_classes(per_class: np.ndarray) -> tuple[float, int]:
    """(mean of the finite entries, number of NaN entries skipped); NaN mean if none is finite."""
    finite = np.isfinite(per_class)
    mean = float(np.mean(per_class[finite])) if finite.any() else float("nan")
    return mean, int(np.sum(~finite))


@dataclass(frozen=True)
class ClassificationReport:
    """Every metric of one set of video scores (fractions in [0, 1]).

    ``per_class_ap`` and ``per_class_ap_interpolated`` map a class name to its AP, None for a class
    without a positive video; those classes are listed in ``classes_without_positives`` and skipped by
    both means (``mAP`` scikit-learn, ``mAP_interpolated`` ActivityNet; NaN if no class has a positive).
    """

    accuracy: float
    hit_at_3: float
    mAP: float
    mAP_interpolated: float
    per_class_ap: dict[str, float | None]
    per_class_ap_interpolated: dict[str, float | None]
    classes_without_positives: tuple[str, ...]
    num_videos: int

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain JSON-ready types, in field order (NaN means stay NaN)."""
        return {"accuracy": self.accuracy, "hit_at_3": self.hit_at_3, "mAP": self.mAP,
                "mAP_interpolated": self.mAP_interpolated, "per_class_ap": dict(self.per_class_ap),
                "per_class_ap_interpolated": dict(self.per_class_ap_interpolated),
                "classes_without_positives": list(self.classes_without_positives),
                "num_videos": self.num_videos}


def classification_report(scores: np.ndarray, positives: np.ndarray,
                          class_names: Sequence[str]) -> ClassificationReport:
    """Every metric of the video scores ``scores`` (V, C) float against ``positives`` (V, C) bool, the
    C classes named by ``class_names``."""
    if scores.shape != positives.shape or scores.shape[1] != len(class_names):
        raise ValueError(
            f"scores {scores.shape}, positives {positives.shape} and {len(class_names)} class names disagree"
        )
    ap = average_precision(scores, positives)
    ap_int = interpolated_average_precision(scores, positives)
    m_ap, _ = mean_over_classes(ap)
    m_ap_int, _ = mean_over_classes(ap_int)

    def named(values: np.ndarray) -> dict[str, float | None]:
        return {n: (float(v) if np.isfinite(v) else None) for n, v in zip(class_names, values, strict=True)}

    skipped = tuple(n for n, v in zip(class_names, ap, strict=True) if not np.isfinite(v))
    return ClassificationReport(
        accuracy=accuracy(scores, positives),
        hit_at_3=hit_at_k(scores, positives, 3),
        mAP=m_ap,
        mAP_interpolated=m_ap_int,
        per_class_ap=named(ap),
        per_class_ap_interpolated=named(ap_int),
        classes_without_positives=skipped,
        num_videos=int(scores.shape[0]),
    )
