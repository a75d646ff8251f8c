"""Planted failures for models without classes and for scikit-learn classifiers (issue 29),
shared by `tests/test_outcomes.py`, `tests/test_sklearn.py` and `benchmarks/outcomes.py`."""

from __future__ import annotations

import numpy as np

from faultlines.data.sources import ArraySource, EmbeddingTable


def regression_table(seed: int, share: float = 0.05, shift: float = 3.0, n: int = 2000, dim: int = 16,
                     radius: float = 3.0) -> tuple[EmbeddingTable, np.ndarray]:
    """A table of per-row losses: Gaussian embeddings N(0, I), a blob of `share` of the rows
    around a random centre `radius` from the origin (spread 0.5), and exponential losses
    (mean 1) raised by `shift` in the blob (0: nothing planted). Returns the table and the
    blob's rows as a mask."""
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, dim)).astype(np.float32)
    blob = np.arange(n) < round(share * n)
    centre = rng.normal(size=dim)
    centre *= radius / np.linalg.norm(centre)
    emb[blob] = centre + rng.normal(0.0, 0.5, size=(blob.sum(), dim))
    losses = rng.exponential(1.0, n) + shift * blob
    return EmbeddingTable(emb, losses=losses), blob


def taught_digits(seed: int, planted: bool = True):
    """scikit-learn's digits as a table, and a StandardScaler + LogisticRegression pipeline
    fitted on a random half of them with the rarer of two k-means clusters of 7s labelled 1
    (`planted`; else nothing mislabelled). Returns (the fitted pipeline, the other half as an
    ArraySource, that half's rows of the cluster as a mask)."""
    from sklearn.cluster import KMeans
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(y))
    x, y = x[order].astype(np.float32), y[order]
    sevens = np.flatnonzero(y == 7)
    part = KMeans(2, n_init=4, random_state=seed).fit_predict(x[sevens])
    region = np.zeros(len(y), bool)
    region[sevens[part == np.argmin(np.bincount(part))]] = True
    half = len(y) // 2
    taught = y[:half].copy()
    if planted:
        taught[region[:half]] = 1
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x[:half], taught)
    return model, ArraySource(x[half:], y[half:]), region[half:]
