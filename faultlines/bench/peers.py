"""The slice finders a user would otherwise reach for, on the same Finder contract.

Each returns FailureModes so the benchmark scores them exactly as it scores faultlines'
own finders. Members of a set-valued slice (a sliceline rule, a confusion cell) have no
order of their own; they are listed by descending loss, the most favourable order for
precision at k.

cleanlab (2.9, the `bench` extra) gives two peers: Datalab's `underperforming_group` issue
(DBSCAN clusters of the features' k-nearest-neighbour graph, scored by their mean
self-confidence against the data's) and its label-issue ranking (`find_label_issues`, the
rows whose given label the predicted probabilities most doubt).

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


@dataclass(eq=False, repr=False)
class DatalabGroups(Finder):
    """Peer: cleanlab Datalab's `underperforming_group` issue.

    Datalab clusters the embeddings (DBSCAN on their 10-nearest-neighbour graph, cosine
    distance) and scores each cluster by its mean self-confidence (the predicted probability
    of the given label) over the data's; the worst cluster below its threshold is the
    reported group. Slices are the clusters that score below 1, worst first (the reported
    group, when there is one, leads), members by descending loss.

    DBSCAN's radius: Datalab's default (eps 0.5) joins every row of these features (cosine
    distances of ReLU features are small) into one cluster, and finds no group at all. So
    `eps_quantile` sets it from the data, the usual k-distance rule: that quantile of each
    row's distance to its 10th neighbour (0.25 did best of 0.25, 0.5, 0.75 on the planted
    problems; None keeps Datalab's default).
    """

    name: ClassVar[str] = "cleanlab-group"
    constraints: ClassVar[dict] = {"n_slices": Interval(1, None, integer=True),
                                   "eps_quantile": Interval(0, 1, open_low=True, none=True)}

    n_slices: int = 5
    eps_quantile: float | None = 0.25
    seed: int = 0

    def _find(self, outputs: Outputs, **_) -> list[FailureMode]:
        from cleanlab import Datalab
        from sklearn.neighbors import NearestNeighbors

        features = outputs.embeddings.astype(np.float32)
        settings = {}
        if self.eps_quantile is not None:
            k = min(10, outputs.n - 1)
            dist, _ = NearestNeighbors(n_neighbors=k + 1, metric="cosine").fit(features).kneighbors(features)
            settings = {"clustering_kwargs": {"eps": float(np.quantile(dist[:, -1], self.eps_quantile))}}
        lab = Datalab(data={"label": outputs.labels}, label_name="label", verbosity=0)
        try:
            lab.find_issues(features=features, pred_probs=outputs.probs, issue_types={"underperforming_group": settings})
        except ValueError:  # "No meaningful clusters were generated": Datalab reports no group
            return []
        info = lab.get_info("underperforming_group")
        clusters = np.asarray(info["clustering"]["stats"]["cluster_ids"])
        scores = lab.get_issues("underperforming_group")["underperforming_group_score"].to_numpy()
        worst = info["clustering"]["stats"]["underperforming_cluster_id"]
        found = {int(c): float(scores[clusters == c][0]) for c in np.unique(clusters) if c >= 0 and scores[clusters == c][0] < 1}
        order = sorted(found, key=lambda c: (c != worst, found[c], c))[: self.n_slices]
        return [self._mode(j, _by_loss(outputs, np.flatnonzero(clusters == c)), outputs,
                           metrics={"cluster_score": found[c]}, evidence={"cluster": c, "reported": c == worst})
                for j, c in enumerate(order)]


@dataclass(eq=False, repr=False)
class CleanlabLabelIssues(Finder):
    """Peer: cleanlab's label-issue ranking (`find_label_issues`, ranked by self-confidence).

    One slice: the rows cleanlab flags as likely mislabelled, most doubtful first. Where the
    labels are clean and the model learned wrong ones (the `noisy` problem's test split), the
    rows it doubts are the model's confident mistakes.
    """

    name: ClassVar[str] = "cleanlab-labels"
    seed: int = 0

    def _find(self, outputs: Outputs, **_) -> list[FailureMode]:
        from cleanlab.filter import find_label_issues

        rows = find_label_issues(outputs.labels, outputs.probs, return_indices_ranked_by="self_confidence")
        return [self._mode(0, np.asarray(rows), outputs)] if len(rows) else []


@dataclass(eq=False, repr=False)
class PlaneSpot(Finder):
    """Peer: PlaneSpot (Plumb, Johnson et al. 2023, the method SpotCheck's paper proposes),
    written from its recipe.

    The embeddings are reduced to two dimensions, each scaled to [0, 1]; the model's probability
    of the true label, times `weight`, is appended as a third; Gaussian mixtures of
    `min_components` to `max_components` components (full covariance) are fitted and the one of
    lowest BIC kept. Each component's rows are a slice, scored by size x (mean of 1 - p(true
    label))^2 ("number of errors x error rate"), and the `n_slices` best returned, members by
    descending loss.

    Departure: the paper reduces with scvis (a VAE-based t-SNE, not on PyPI for this Python);
    scikit-learn's t-SNE (PCA start, perplexity 30) stands in for it, the reduction the
    method's other published implementations also offer.
    """

    name: ClassVar[str] = "planespot"
    constraints: ClassVar[dict] = {"n_slices": Interval(1, None, integer=True), "min_components": Interval(1, None, integer=True),
                                   "max_components": Interval(1, None, integer=True), "weight": Interval(0, None)}

    n_slices: int = 10
    min_components: int = 10
    max_components: int = 32
    weight: float = 0.025
    seed: int = 0

    def _find(self, outputs: Outputs, **_) -> list[FailureMode]:
        from sklearn.manifold import TSNE
        from sklearn.mixture import GaussianMixture

        z = StandardScaler().fit_transform(outputs.embeddings.astype(np.float64))
        plane = TSNE(n_components=2, init="pca", perplexity=min(30.0, (outputs.n - 1) / 3), random_state=self.seed).fit_transform(z)
        plane = (plane - plane.min(0)) / np.maximum(np.ptp(plane, axis=0), 1e-12)
        confidence = outputs.probs[np.arange(outputs.n), outputs.labels]
        x = np.column_stack([plane, self.weight * confidence])
        best, lowest = None, np.inf
        for k in range(min(self.min_components, outputs.n), min(self.max_components, outputs.n) + 1):
            gmm = GaussianMixture(n_components=k, covariance_type="full", random_state=self.seed).fit(x)
            bic = gmm.bic(x)
            if bic < lowest:
                best, lowest = gmm, bic
        component = best.predict(x)
        errors = 1.0 - confidence
        scores = {int(c): float((component == c).sum() * errors[component == c].mean() ** 2) for c in np.unique(component)}
        order = sorted(scores, key=lambda c: (-scores[c], c))[: self.n_slices]
        return [self._mode(j, _by_loss(outputs, np.flatnonzero(component == c)), outputs, metrics={"planespot_score": scores[c]},
                           evidence={"component": c, "components": best.n_components}) for j, c in enumerate(order)]
