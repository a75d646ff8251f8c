"""Passes over row tables too large to copy: the one place that says how many rows a pass takes at a time.

A table of a million 512-wide float32 embeddings is 2 GB; an operation over it that makes an
(N, D) temporary (a float64 copy, a standardised copy, a boolean mask) doubles that. Code that
touches every row goes through `row_chunks` instead, so its temporaries are CHUNK_ROWS rows.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

#: Rows per chunk: 16,384 rows of 512 float32 are 32 MB.
CHUNK_ROWS = 16_384


def row_chunks(n: int, rows: int = CHUNK_ROWS) -> Iterator[slice]:
    """Slices that cover range(n) in order, `rows` at a time."""
    for start in range(0, n, rows):
        yield slice(start, min(start + rows, n))


def mapped_file(a: np.ndarray) -> str | None:
    """The .npy file `a` is memory-mapped from when `a` is that whole file's array (a view of
    an `np.memmap`, as `np.asarray` of one gives, counts; a slice of one does not), else None."""
    base = a
    while isinstance(base, np.ndarray) and not isinstance(base, np.memmap):
        base = base.base  # None, another array, or what lent its buffer (bytes, a pyarrow array)
    filename = getattr(base, "filename", None) if isinstance(base, np.memmap) else None
    if filename is None or not str(filename).endswith(".npy") or a.shape != base.shape or a.dtype != base.dtype:
        return None
    return str(filename) if a.ctypes.data == base.ctypes.data and a.flags.c_contiguous else None


def nonfinite_rows(a: np.ndarray) -> np.ndarray:
    """Indices of the rows of `a` that hold a NaN or an infinity, checked a chunk at a time."""
    flat = a.reshape(len(a), -1)
    bad = [part.start + np.flatnonzero(~np.isfinite(flat[part]).all(axis=1)) for part in row_chunks(len(a))]
    return np.concatenate(bad) if bad else np.array([], np.int64)


#: A unit's standardising scale is at least this share of the embeddings' overall scale (`fit_space`).
SCALE_FLOOR = 1e-3


def fit_space(embeddings: np.ndarray, rows: np.ndarray | None, n_components: int | None, seed: int = 0):
    """Fit the standardisation of `embeddings` on every row, a chunk at a time (no float64 copy
    of the table), and PCA to `n_components` on the standardised `rows` (all rows if None);
    no PCA when `n_components` is None or not below the width.

    Returns:
        (scaler, pca or None), for `to_space`.
    """
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler()
    for part in row_chunks(len(embeddings)):
        scaler.partial_fit(embeddings[part])
    # A unit that barely varies (a ReLU that fires on a handful of rows, or one whose values
    # differ only by float noise) would be blown up to unit variance and outweigh the units that
    # carry the representation: its noise would decide distances, and a rerun whose embeddings
    # differ in the sixth decimal (another engine, another machine) would find other modes.
    # Its scale is floored at SCALE_FLOOR of the embeddings' overall scale.
    scaler.scale_ = np.maximum(scaler.scale_, SCALE_FLOOR * np.sqrt(np.mean(scaler.var_)))
    width = embeddings.shape[1]
    if n_components is None or n_components >= width:
        return scaler, None
    sample = scaler.transform(np.asarray(embeddings if rows is None else embeddings[rows], np.float32))
    return scaler, PCA(n_components=min(n_components, *sample.shape), random_state=seed).fit(sample)


def to_space(embeddings: np.ndarray, scaler, pca) -> np.ndarray:
    """`embeddings` (a chunk of rows, or all) standardised and PCA-reduced as `fit_space` fitted them, float32."""
    z = scaler.transform(np.asarray(embeddings, np.float32))
    return np.ascontiguousarray(z if pca is None else pca.transform(z), np.float32)
