"""The slice finders a user would otherwise reach for, on the same Finder contract.

Each returns FailureModes so the benchmark scores them exactly as it scores faultlines'
own finders. Members of a set-valued slice (a sliceline rule, a confusion cell) have no
order of their own; they are listed by descending loss, the most favourable order for
precision at k.

Domino's own `DominoSlicer` (domino 0.1.5) is not among them: besides meerkat it imports
`sklearn.mixture._base._check_X`, a private function scikit-learn has since removed, and its
package `__init__` pulls in fvcore and its embedding stack. It cannot run here without
patching its code; `faultlines.find.ErrorMixture` is written in its spirit instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.preprocessing import KBinsDiscretizer, StandardScaler

from faultlines.find.base import Finder, Interval
from faultlines.types import FailureMode, Outputs


def _by_loss(outputs: Outputs, rows: np.ndarray) -> np.ndarray:
    return rows[np.argsort(-outputs.losses[rows], kind="stable")]


@dataclass(eq=False, repr=False)
class ConfusionCells(Finder):
    """Baseline: each off-diagonal confusion-matrix cell (label a predicted as b) is a slice."""

    name: ClassVar[str] = "confusion"
    constraints: ClassVar[dict] = {"n_slices": Interval(1, None, integer=True)}

    n_slices: int = 5
    seed: int = 0

    def _find(self, outputs: Outputs, **_) -> list[FailureMode]:
        wrong = np.flatnonzero(~outputs.correct)
        cells: dict[tuple[int, int], list[int]] = {}
        for i in wrong:
            cells.setdefault((int(outputs.labels[i]), int(outputs.preds[i])), []).append(int(i))
        ranked = sorted(cells.items(), key=lambda kv: (-len(kv[1]), kv[0]))[: self.n_slices]
        return [self._mode(j, _by_loss(outputs, np.array(rows)), outputs, evidence={"cell": list(cell)}) for j, (cell, rows) in enumerate(ranked)]


@dataclass(eq=False, repr=False)
class ErrorKMeans(Finder):
    """Baseline: k-means on the standardised embeddings of the misclassified samples.

    A slice is one cluster's misclassified samples, nearest the centre first.
    """

    name: ClassVar[str] = "kmeans-errors"
    constraints: ClassVar[dict] = {"n_slices": Interval(1, None, integer=True)}

    n_slices: int = 5
    seed: int = 0

    def _find(self, outputs: Outputs, **_) -> list[FailureMode]:
        wrong = np.flatnonzero(~outputs.correct)
        if len(wrong) == 0:
            return []
        z = StandardScaler().fit_transform(outputs.embeddings.astype(np.float64))[wrong]
        k = min(self.n_slices, len(wrong))
        km = KMeans(n_clusters=k, n_init=10, random_state=self.seed).fit(z)
        dist = ((z - km.cluster_centers_[km.labels_]) ** 2).sum(1)
        sizes = np.bincount(km.labels_, minlength=k)
        modes = []
        for j, c in enumerate(np.argsort(-sizes, kind="stable")):
            rows = np.flatnonzero(km.labels_ == c)
            modes.append(self._mode(j, wrong[rows[np.argsort(dist[rows], kind="stable")]], outputs))
        return modes


@dataclass(eq=False, repr=False)
class SliceLine(Finder):
    """Peer: SliceLine (Sagadeeva and Boehm 2021, PyPI `sliceline`) on binned PCA components.

    The standardised embeddings are reduced to `n_pca` components, each cut into `n_bins`
    quantile bins; SliceLine searches conjunctions of up to `max_l` bin predicates for the
    slices with the most misclassifications.
    """

    name: ClassVar[str] = "sliceline"
    constraints: ClassVar[dict] = {"n_slices": Interval(1, None, integer=True), "n_pca": Interval(1, None, integer=True),
                                   "n_bins": Interval(2, None, integer=True), "max_l": Interval(1, None, integer=True),
                                   "alpha": Interval(0, 1, open_low=True), "min_sup": Interval(1, None, integer=True)}

    n_slices: int = 5
    n_pca: int = 8
    n_bins: int = 5
    max_l: int = 3
    alpha: float = 0.95
    min_sup: int = 8
    seed: int = 0

    def _find(self, outputs: Outputs, **_) -> list[FailureMode]:
        from sliceline.slicefinder import Slicefinder

        z = StandardScaler().fit_transform(outputs.embeddings.astype(np.float64))
        z = PCA(n_components=min(self.n_pca, *z.shape), random_state=self.seed).fit_transform(z)
        bins = KBinsDiscretizer(n_bins=self.n_bins, encode="ordinal", strategy="quantile", quantile_method="averaged_inverted_cdf")
        x = bins.fit_transform(z).astype(int)
        errors = (~outputs.correct).astype(float)
        if errors.sum() == 0:
            return []
        finder = Slicefinder(alpha=self.alpha, k=self.n_slices, max_l=self.max_l, min_sup=self.min_sup, verbose=False)
        masks = np.asarray(finder.fit(x, errors).transform(x), bool)
        modes = []
        for j in range(min(masks.shape[1], self.n_slices)):
            rows = np.flatnonzero(masks[:, j])
            if len(rows):
                rule = [None if v is None else int(v) for v in np.asarray(finder.top_slices_[j]).tolist()]
                modes.append(self._mode(j, _by_loss(outputs, rows), outputs, evidence={"rule": rule}))
        return modes
