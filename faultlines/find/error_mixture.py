"""ErrorMixture: an error-aware Gaussian mixture, in the spirit of Domino (Eyuboglu et al. 2022).

Each sample is described by three things at once: its embedding z (standardised, then
PCA-reduced), its one-hot label y and the model's predicted probabilities p (for outputs
without classes, `outcome`: every label "passes", the prediction says whether the row fails). A component k
models them with a diagonal Gaussian N(z; mu_k, diag var_k) and two categorical
distributions theta_k (labels) and phi_k (predictions). EM maximises

    sum_n log sum_k pi_k N(z_n; mu_k, var_k) * theta_k^(gamma_y y_n) * phi_k^(gamma_p p_n)

so with large gammas a component prefers samples that share both a region of representation
space and a (label, prediction) pattern: a coherent group of errors rather than a cluster.
Components start from confusion-matrix cells (responsibility of cell (a, b) for sample n:
y_na * p_nb), half of them off-diagonal cells, so error cells get components of their own
even when they are small. Slices are the components ranked by error-rate gap: error rate
of the component's members minus the data set's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy.special import logsumexp

from faultlines.arrays import fit_space, row_chunks, to_space
from faultlines.find.base import SEED, Finder, Interval
from faultlines.progress import track
from faultlines.types import FailureMode, Outputs


@dataclass(eq=False, repr=False)
class ErrorMixture(Finder):
    """Find groups of samples that share a region of embedding space and an error pattern.

    Args:
        n_slices: how many slices (components with the largest error-rate gap) to return.
        n_components: mixture components fitted.
        n_pca: PCA components of the standardised embeddings modelled.
        y_weight: gamma on the label term.
        y_hat_weight: gamma on the prediction term.
        max_iter, tol: EM stops after max_iter steps or when the mean log-likelihood gains < tol.
        reg_covar: added to every variance.
        min_size: least number of (hard-assigned) members for a component to be a slice;
            default max(3, 0.5% of the samples).
        n_typical: members kept as "most typical" for the report.
        seed: seed for the initial noise, the fitted rows and PCA.
        fit_rows: with more rows than this, the mixture (and PCA) is fitted on this many,
            drawn at random, and every row is then assigned to its components a chunk at a
            time; the standardisation is fitted on every row.

    Attributes (after `find`):
        resp_: (N, n_components) float32 responsibilities of every row; means_, variances_, weights_;
        gaps_: (n_components,) error-rate gap of each component (NaN below the least size);
        slices_: the components returned, in order; scaler_, pca_: the fitted standardisation
        and PCA (None when the embeddings are no wider than n_pca).
    """

    name: ClassVar[str] = "error-mixture"
    constraints: ClassVar[dict] = {
        "n_slices": Interval(1, None, integer=True),
        "n_components": Interval(1, None, integer=True),
        "n_pca": Interval(1, None, integer=True),
        "y_weight": Interval(0, None),
        "y_hat_weight": Interval(0, None),
        "max_iter": Interval(1, None, integer=True),
        "tol": Interval(0, None),
        "reg_covar": Interval(0, None, open_low=True),
        "min_size": Interval(1, None, integer=True, none=True),
        "n_typical": Interval(0, None, integer=True),
        "seed": SEED,
        "fit_rows": Interval(1, None, integer=True),
    }

    n_slices: int = 5
    n_components: int = 25
    n_pca: int = 32
    y_weight: float = 10.0
    y_hat_weight: float = 10.0
    max_iter: int = 100
    tol: float = 1e-5
    reg_covar: float = 1e-3
    min_size: int | None = None
    n_typical: int = 16
    seed: int = 0
    fit_rows: int = 50_000
    quiet: bool = True

    def _initial_resp(self, y: np.ndarray, p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        c = y.shape[1]
        mass = y.T @ p  # (C, C) soft confusion matrix
        cells = [(a, b) for a in range(c) for b in range(c)]
        off = sorted((cell for cell in cells if cell[0] != cell[1]), key=lambda ab: -mass[ab])
        diag = sorted((cell for cell in cells if cell[0] == cell[1]), key=lambda ab: -mass[ab])
        n_off = min(len(off), self.n_components // 2)
        chosen = off[:n_off] + diag[: self.n_components - n_off]
        chosen += off[n_off : n_off + self.n_components - len(chosen)]
        while len(chosen) < self.n_components:  # more components than cells: repeat the largest
            chosen.append(chosen[len(chosen) % max(1, len(cells))])
        resp = np.stack([y[:, a] * p[:, b] for a, b in chosen], axis=1)
        resp += 1e-3 * rng.random(resp.shape)
        return resp / resp.sum(1, keepdims=True)

    def _m_step(self, z, y, p, resp):
        nk = resp.sum(0) + 1e-10
        means = resp.T @ z / nk[:, None]
        variances = np.maximum(resp.T @ (z * z) / nk[:, None] - means**2, 0) + self.reg_covar
        smooth = 1e-3
        theta = (resp.T @ y + smooth) / (nk[:, None] + smooth * y.shape[1])
        phi = (resp.T @ p + smooth) / (nk[:, None] + smooth * p.shape[1])
        return nk / nk.sum(), means, variances, theta, phi

    def _log_joint(self, z, y, p, params) -> np.ndarray:
        weights, means, variances, theta, phi = params
        log_gauss = -0.5 * (
            np.log(2 * np.pi * variances).sum(1)[None]
            + (z * z) @ (1 / variances).T
            - 2 * z @ (means / variances).T
            + ((means * means) / variances).sum(1)[None]
        )
        return np.log(weights)[None] + log_gauss + self.y_weight * y @ np.log(theta).T + self.y_hat_weight * p @ np.log(phi).T

    def _find(self, outputs: Outputs, **_) -> list[FailureMode]:
        """Fit the mixture to `outputs` (or `fit_rows` of them) and return its slices with the
        largest error-rate gaps, their members among all rows."""
        rng = np.random.default_rng(self.seed)
        fit = np.sort(rng.choice(outputs.n, self.fit_rows, replace=False)) if outputs.n > self.fit_rows else None
        n_pca = min(self.n_pca, outputs.n - 1)
        self.scaler_, self.pca_ = fit_space(outputs.embeddings, fit, n_pca if n_pca >= 1 else None, self.seed)
        labels, probs = outcome(outputs)
        rows = slice(None) if fit is None else fit
        z = to_space(outputs.embeddings[rows], self.scaler_, self.pca_).astype(np.float64)
        y = np.eye(probs.shape[1])[labels[rows]]
        p = probs[rows].astype(np.float64)
        resp = self._initial_resp(y, p, rng)
        previous = -np.inf
        for _ in track(range(self.max_iter), f"mixture EM on {len(z):,} rows", self.max_iter, self.quiet):
            params = self._m_step(z, y, p, resp)
            log_joint = self._log_joint(z, y, p, params)
            norm = logsumexp(log_joint, axis=1, keepdims=True)
            resp = np.exp(log_joint - norm)
            ll = float(norm.mean())
            if ll - previous < self.tol:
                break
            previous = ll
        self.weights_, self.means_, self.variances_, self.label_dist_, self.pred_dist_ = params
        self.resp_ = resp.astype(np.float32) if fit is None else self._responsibilities(outputs, with_prediction=True)
        hard = self.resp_.argmax(1)
        min_size = self.min_size if self.min_size is not None else max(3, int(np.ceil(0.005 * outputs.n)))
        wrong = outputs.failures
        overall = wrong.mean()
        self.gaps_ = np.array(
            [wrong[hard == k].mean() - overall if (hard == k).sum() >= min_size else np.nan for k in range(self.n_components)]
        )
        ranked = [int(k) for k in np.argsort(-np.nan_to_num(self.gaps_, nan=-np.inf), kind="stable") if self.gaps_[k] > 0]
        self.slices_ = ranked[: self.n_slices]
        return [self._slice_mode(outputs, k, rank, hard) for rank, k in enumerate(self.slices_)]

    def _responsibilities(self, outputs: Outputs, with_prediction: bool) -> np.ndarray:
        """(N, n_components) float32 responsibilities of every row of `outputs`, a chunk at a
        time; without the prediction term when not `with_prediction`."""
        params = (self.weights_, self.means_, self.variances_, self.label_dist_, self.pred_dist_)
        eye = np.eye(len(self.label_dist_[0]))
        labels, probs = outcome(outputs)
        resp = np.empty((outputs.n, len(self.weights_)), np.float32)
        chunks = list(row_chunks(outputs.n))
        for part in track(chunks, "assigning rows", outputs.n, self.quiet, unit="rows", step=lambda c: c.stop - c.start):
            z = to_space(outputs.embeddings[part], self.scaler_, self.pca_).astype(np.float64)
            p = probs[part].astype(np.float64) if with_prediction else np.zeros((len(z), self.pred_dist_.shape[1]))
            log_joint = self._log_joint(z, eye[labels[part]], p, params)
            resp[part] = np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True))
        return resp

    def assign(self, outputs: Outputs) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per slice, the rows of `outputs` whose likeliest component it is given their embedding
        and label only (the prediction term is left out: with the label it would say which rows
        are wrong), most responsible first, and their responsibilities."""
        resp = self._responsibilities(outputs, with_prediction=False)
        hard = resp.argmax(1)
        assigned = []
        for k in self.slices_:
            rows = np.flatnonzero(hard == k)
            rows = rows[np.argsort(-resp[rows, k], kind="stable")]
            assigned.append((rows, resp[rows, k]))
        return assigned

    def _slice_mode(self, outputs: Outputs, k: int, rank: int, hard: np.ndarray) -> FailureMode:
        members = np.flatnonzero(hard == k)
        members = members[np.argsort(-self.resp_[members, k], kind="stable")]
        return self._mode(rank, members, outputs, weights=self.resp_[members, k],
                          metrics={"error_gap": float(self.gaps_[k]), "mixture_weight": float(self.weights_[k])},
                          evidence={"component": k})


def outcome(outputs: Outputs) -> tuple[np.ndarray, np.ndarray]:
    """The (labels, probabilities) the mixture models: a classifier's own; for outputs without
    classes, every row's label "passes" and its prediction one-hot (passes, fails) by
    `Outputs.failures`, so the confusion cell (passes, fails) holds the failures."""
    if outputs.has_classes:
        return outputs.labels, outputs.probs
    failed = outputs.failures
    return np.zeros(outputs.n, np.int64), np.stack([~failed, failed], axis=1).astype(np.float32)
