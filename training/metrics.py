"""Grader metrics over calibrated probabilities: accuracy, per-grade P/R/F1, AUROC, ECE."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, roc_auc_score

from inspection.grading.types import GRADES
from training.calibration import expected_calibration_error

RESELL = GRADES.index("resell")


# The numbers a model card carries per split (the full set goes to metrics.json / evaluation).
HEADLINE_METRICS = ("count", "accuracy", "macro_f1", "resell_auroc", "ece")


def resell_scores(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Binary view used for AUROC and the PR curve: positive = 'not resellable'."""
    return (labels != RESELL).astype(np.int64), 1.0 - probs[:, RESELL]


def classification_metrics(*, probs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """All headline grader numbers for one split."""
    pred = probs.argmax(axis=1)
    k = list(range(len(GRADES)))
    p, r, f, support = precision_recall_fscore_support(labels, pred, labels=k, zero_division=0)
    present = [i for i in k if support[i] > 0]
    y_bin, score = resell_scores(probs, labels)
    auroc: float | None = None
    if 0 < y_bin.sum() < len(y_bin):
        auroc = float(roc_auc_score(y_bin, score))
    return {
        "count": len(labels),
        "accuracy": float((pred == labels).mean()) if len(labels) else 0.0,
        # macro over grades present in the split (an absent grade would add a meaningless 0)
        "macro_f1": float(np.mean([f[i] for i in present])) if present else 0.0,
        "resell_auroc": auroc,
        "ece": expected_calibration_error(probs=probs, labels=labels),
        "per_grade": {
            GRADES[i]: {
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
                "support": int(support[i]),
            }
            for i in k
        },
        "confusion_matrix": confusion_matrix(labels, pred, labels=k).tolist(),
    }
