"""Synthetic embedding tables with known answers: one planted high-loss blob (ground truth for
slice finders), and random errors with no failure mode at all (for the significance tests)."""

from __future__ import annotations

import numpy as np

from faultlines.data.sources import EmbeddingTable
from faultlines.types import Outputs


def random_errors(seed: int, n: int = 400, error_rate: float = 0.1, dim: int = 8) -> EmbeddingTable:
    """Random embeddings and labels (3 classes); the model is wrong on a random `error_rate` of
    the rows, wherever they lie: no group of rows fails more than any other."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    preds = np.where(rng.random(n) < error_rate, (labels + rng.integers(1, 3, n)) % 3, labels)
    probs = np.full((n, 3), 0.1)
    probs[np.arange(n), preds] = 0.8
    return EmbeddingTable(rng.normal(size=(n, dim)).astype(np.float32), labels, probs)


def planted_blob(
    n: int = 100_000,
    dim: int = 128,
    blob_fraction: float = 0.01,
    blob_std: float = 0.5,
    base_loss: float = 0.2,
    blob_loss: float = 2.0,
    seed: int = 0,
) -> tuple[Outputs, np.ndarray]:
    """Gaussian embeddings N(0, I) plus a blob N(c, blob_std^2 I) of high-loss points.

    Losses are exponential with mean `base_loss` outside the blob and `blob_loss` inside.
    Two classes; the probability of the true label is exp(-loss), so the outputs are a
    consistent classifier table.

    Returns:
        (outputs, in_blob) where in_blob is the (n,) boolean ground-truth mask.
    """
    rng = np.random.default_rng(seed)
    n_blob = int(round(blob_fraction * n))
    in_blob = np.zeros(n, bool)
    in_blob[rng.choice(n, n_blob, replace=False)] = True
    emb = rng.standard_normal((n, dim), dtype=np.float32)
    center = rng.standard_normal(dim).astype(np.float32)
    emb[in_blob] = center + blob_std * rng.standard_normal((n_blob, dim), dtype=np.float32)
    losses = rng.exponential(np.where(in_blob, blob_loss, base_loss)).astype(np.float32)
    labels = rng.integers(0, 2, n)
    p_true = np.clip(np.exp(-losses), 1e-6, 1 - 1e-6)
    probs = np.empty((n, 2), np.float32)
    probs[np.arange(n), labels] = p_true
    probs[np.arange(n), 1 - labels] = 1 - p_true
    return Outputs.from_probs(labels, probs, emb, ("a", "b"), source="synthetic"), in_blob
