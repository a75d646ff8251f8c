"""How well a finder's slices match a planted slice.

Slice scoring follows dcbench (Eyuboglu et al. 2022): every predicted slice, and the
complement of every predicted slice, is a candidate; for a true slice, the candidate whose
scores have the best average precision is taken, and its precision at k is reported.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import average_precision_score

from faultlines.types import FailureMode


def precision_at_k(scores: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Share of the k highest-scoring samples that are in the true slice (ties: lower index first)."""
    top = np.argsort(-np.asarray(scores, float), kind="stable")[:k]
    return float(np.asarray(truth, bool)[top].mean())


def mode_scores(modes: Sequence[FailureMode], n: int) -> np.ndarray:
    """(len(modes), n) membership scores: members score in (1, 2] in their own order, others 0.

    Soft weights order the members where a mode has them; otherwise members keep the order
    the finder gave (most typical first).
    """
    scores = np.zeros((len(modes), n))
    for j, mode in enumerate(modes):
        m = len(mode.members)
        if m == 0:
            continue
        if mode.weights is not None and np.max(mode.weights) > 0:
            order_score = np.asarray(mode.weights, float) / np.max(mode.weights)
        else:
            order_score = np.linspace(1.0, 1.0 / m, m)
        scores[j, mode.members] = 1.0 + order_score
    return scores


def slice_precision(candidates: np.ndarray, truth: np.ndarray, ks: Sequence[int] = (10, 25)) -> dict[str, float]:
    """dcbench-style score of predicted slices against one true slice.

    Args:
        candidates: (K, N) scores, one row per predicted slice; complements are added here.
        truth: (N,) boolean in-slice mask.

    Returns:
        {"ap": best average precision, "p@k": that candidate's precision at k, for each k}.
    """
    truth = np.asarray(truth, bool)
    if not truth.any() or truth.all():
        raise ValueError("the true slice must hold some samples but not all")
    candidates = np.atleast_2d(np.asarray(candidates, float))
    both = np.concatenate([candidates, -candidates])
    aps = [average_precision_score(truth, c) for c in both]
    best = both[int(np.argmax(aps))]
    return {"ap": float(max(aps))} | {f"p@{k}": precision_at_k(best, truth, k) for k in ks}
