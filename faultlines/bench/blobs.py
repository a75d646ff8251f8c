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


def write_scale_table(folder, n: int = 1_000_000, dim: int = 512, blobs: tuple[int, ...] = (5000, 2000, 1000),
                      num_classes: int = 10, error_rate: float = 0.1, blob_error_rate: float = 0.9, seed: int = 0,
                      chunk: int = 65_536, separation: float | None = None) -> np.ndarray:
    """Write an embedding table as a folder of .npy files (`faultlines scan --data FOLDER`), in
    chunks, so a table larger than memory can be made: N(0, I) float32 embeddings, `num_classes`
    random labels, the model wrong on a random `error_rate` of the rows, and planted blobs of
    the given sizes, each N(c_b, 0.5^2 I) around its own random centre, wrong on `blob_error_rate`
    of their rows. Probabilities: the predicted class gets U(0.5, 0.99), the rest share the remainder.

    `separation`: None draws each centre N(0, I) (blobs about as far from each other as from the
    bulk); a number places the centres at that many blob radii (0.5 sqrt(dim)) from each other,
    around one point drawn N(0, I): at separation 2 the blobs are nearer each other than any
    bulk row is to them, and at 1 a blob's centre lies on the next blob's rim.

    Returns:
        (n,) int array: the blob of each row (0, 1, ...), -1 outside every blob.
    """
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    blob_of = np.full(n, -1)
    rows = rng.choice(n, sum(blobs), replace=False)
    for b, part in enumerate(np.split(rows, np.cumsum(blobs)[:-1])):
        blob_of[part] = b
    centres = rng.standard_normal((len(blobs), dim), dtype=np.float32)
    if separation is not None:  # equidistant: a scaled orthonormal set around the first centre
        axes = np.linalg.qr(rng.standard_normal((dim, len(blobs))))[0].T.astype(np.float32)
        centres = centres[0] + separation * 0.5 * np.sqrt(dim) / np.sqrt(2) * axes
    labels = rng.integers(0, num_classes, n)
    wrong = rng.random(n) < np.where(blob_of >= 0, blob_error_rate, error_rate)
    preds = np.where(wrong, (labels + rng.integers(1, num_classes, n)) % num_classes, labels)
    top = rng.uniform(0.5, 0.99, n).astype(np.float32)
    probs = np.repeat(((1 - top) / (num_classes - 1))[:, None], num_classes, axis=1)
    probs[np.arange(n), preds] = top
    np.save(folder / "labels.npy", labels)
    np.save(folder / "probs.npy", probs)
    emb = np.lib.format.open_memmap(folder / "embeddings.npy", mode="w+", dtype=np.float32, shape=(n, dim))
    for start in range(0, n, chunk):
        block = rng.standard_normal((min(chunk, n - start), dim), dtype=np.float32)
        which = blob_of[start:start + len(block)]
        for b in np.unique(which[which >= 0]):
            inside = which == b
            block[inside] = centres[b] + 0.5 * rng.standard_normal((int(inside.sum()), dim), dtype=np.float32)
        emb[start:start + len(block)] = block
    emb.flush()
    del emb
    return blob_of
