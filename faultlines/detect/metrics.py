"""How well a score detects a set of inputs (mistakes, attacks, OOD): one function for every table."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve


def fpr_at_tpr(scores: np.ndarray, positive: np.ndarray, tpr: float = 0.95) -> float:
    """False-positive rate at the first threshold whose true-positive rate reaches `tpr`."""
    fpr, tprs, _ = roc_curve(np.asarray(positive, bool), scores)
    return float(fpr[np.searchsorted(tprs, tpr, side="left")])


def detection_metrics(scores: np.ndarray, positive: np.ndarray) -> dict[str, float]:
    """AUROC, AUPR (positives = the set to detect) and FPR at 95% TPR of a score; higher = more suspect."""
    positive = np.asarray(positive, bool)
    return {
        "auroc": float(roc_auc_score(positive, scores)),
        "aupr": float(average_precision_score(positive, scores)),
        "fpr95": fpr_at_tpr(scores, positive),
    }
