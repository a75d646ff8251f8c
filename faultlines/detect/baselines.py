"""Detectors of likely mistakes that a user would otherwise reach for, on the `Detector` shape:
`fit(train_outputs)` then `score(outputs)`, higher = more suspect. They run beside
`FeatureDensity` in the density analysis and its benchmark.

- MSP: maximum softmax probability (Hendrycks and Gimpel 2017).
- Energy: -logsumexp of the logits (Liu et al. 2020).
- Mahalanobis: distance to the nearest class mean under one shared covariance of the
  features (Lee et al. 2018, without input preprocessing or layer ensembles).
- KNN: distance to the k-th nearest training feature after L2 normalisation, k = 50
  (Sun et al. 2022, as OpenOOD runs it).
- Trust score: distance to the predicted class's training features over distance to the
  nearest other class's (Jiang et al. 2018, without its density filtering).
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp
from sklearn.neighbors import NearestNeighbors

from faultlines.detect.base import Detector
from faultlines.types import Outputs


class MSP(Detector):
    name = "msp"
    uses_features = False

    def _score(self, outputs: Outputs) -> np.ndarray:
        return -outputs.probs.max(1).astype(np.float64)


class Energy(Detector):
    name = "energy"
    uses_features = False
    needs_logits = True

    def _score(self, outputs: Outputs) -> np.ndarray:
        return -logsumexp(outputs.logits.astype(np.float64), axis=1)


class Mahalanobis(Detector):
    name = "mahalanobis"

    def _fit(self, train: Outputs) -> None:
        x = train.embeddings.astype(np.float64)
        self.means_ = np.stack([x[train.labels == c].mean(0) for c in range(train.num_classes) if (train.labels == c).any()])
        centred = x - self.means_[np.searchsorted(np.unique(train.labels), train.labels)]
        self.precision_ = np.linalg.pinv(np.cov(centred, rowvar=False) + 1e-6 * np.eye(x.shape[1]))

    def _score(self, outputs: Outputs) -> np.ndarray:
        d = outputs.embeddings.astype(np.float64)[:, None, :] - self.means_[None]
        return np.einsum("nkd,de,nke->nk", d, self.precision_, d).min(1)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class KNN(Detector):
    name = "knn"

    def __init__(self, k: int = 50):
        self.k = k

    def _fit(self, train: Outputs) -> None:
        self.index_ = NearestNeighbors(n_neighbors=min(self.k, train.n)).fit(_unit(train.embeddings.astype(np.float64)))

    def _score(self, outputs: Outputs) -> np.ndarray:
        dist, _ = self.index_.kneighbors(_unit(outputs.embeddings.astype(np.float64)))
        return dist[:, -1]


class TrustScore(Detector):
    name = "trust-score"

    def _fit(self, train: Outputs) -> None:
        x = train.embeddings.astype(np.float64)
        self.indexes_ = {c: NearestNeighbors(n_neighbors=1).fit(x[train.labels == c]) for c in np.unique(train.labels)}

    def _score(self, outputs: Outputs) -> np.ndarray:
        x = outputs.embeddings.astype(np.float64)
        classes = sorted(self.indexes_)
        dist = np.stack([self.indexes_[c].kneighbors(x)[0][:, 0] for c in classes], axis=1)
        pred_col = np.searchsorted(classes, outputs.preds)
        known = np.isin(outputs.preds, classes)
        to_pred = np.where(known, dist[np.arange(len(x)), np.clip(pred_col, 0, len(classes) - 1)], np.inf)
        others = dist.copy()
        others[np.arange(len(x))[known], pred_col[known]] = np.inf
        return to_pred / np.maximum(others.min(1), 1e-12)


BASELINES = (MSP, Energy, Mahalanobis, KNN, TrustScore)
