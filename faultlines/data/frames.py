"""Data from where users keep it: a pandas DataFrame of model outputs, a Hugging Face dataset.

    table = fl.data.from_pandas(df, embedding="emb", label="y", probs="p")      # no model needed
    images = fl.data.from_hf(ds, image="img", label="label")                     # run a model on it
    texts = fl.data.from_hf(ds, text="sentence", label="label")                 # MiniLM embeddings

Neither pandas nor `datasets` is imported until these are called; nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from faultlines.data.sources import ArraySource, EmbeddingTable
from faultlines.errors import DataError, InputWarning


def _vectors(frame, columns: str | Sequence[str], what: str) -> np.ndarray:
    """(N, width) float32 from one column of equal-length arrays or lists, or from several numeric columns."""
    if isinstance(columns, str):
        cells = frame[columns].to_numpy()
        lengths = {np.size(c) if c is not None else -1 for c in cells}
        if len(lengths) != 1 or -1 in lengths:
            raise DataError(f"column '{columns}' ({what}) must hold arrays or lists of one length in every row")
        try:
            return np.stack([np.asarray(c, np.float32).ravel() for c in cells]) if len(cells) else np.zeros((0, 0), np.float32)
        except (TypeError, ValueError) as e:
            raise DataError(f"column '{columns}' ({what}) must hold numbers ({e})") from e
    try:
        return frame[list(columns)].to_numpy(np.float32)
    except (TypeError, ValueError) as e:
        raise DataError(f"columns {list(columns)} ({what}) must hold numbers ({e})") from e


def from_pandas(frame, embedding: str | Sequence[str] = "embedding", label: str = "label", probs: str | Sequence[str] = "probs",
                text: str | None = None, class_names: Sequence[str] | None = None, name: str = "data", *,
                loss: str | None = None, score: str | None = None, higher_is_better: bool | None = None,
                passed: str | None = None, failed: str | None = None, threshold: float | None = None) -> EmbeddingTable:
    """An EmbeddingTable from a DataFrame with one row per sample.

    Args:
        frame: a pandas DataFrame.
        embedding: the column holding each row's embedding (an array or list), or the names of
            numeric columns that together form it.
        label: the column of labels: class ids, or class names of any type (`types.encode_labels`).
        probs: the column of each row's predicted probabilities (array or list), or one numeric
            column per class.
        text: a column of texts the report shows, if any.
        class_names: one name per class; default "0", "1", ... (the sorted names for named labels).
        loss, score, passed, failed: for a model without classes, the columns of its outcome
            instead of `label` and `probs` (`faultlines.data.files.load_embedding_table`): a
            per-row loss, or a score with `higher_is_better`, and/or a pass/fail; `threshold`
            makes a loss above it a failure.

    Every other column is kept as the samples' metadata (shown in the report, used to describe
    the modes); a column that cannot be stored as a table column (Python objects of mixed
    types) is left out with an `InputWarning` naming it.

    Raises:
        DataError: a column is missing, ragged or not numeric.
    """
    try:
        import pandas as pd
    except ImportError as e:
        raise DataError("from_pandas needs pandas: pip install pandas") from e
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"from_pandas takes a pandas DataFrame, not {type(frame).__name__}")
    outcome = {role: column for role, column in (("loss", loss), ("score", score), ("passed", passed), ("failed", failed))
               if column is not None}
    embedded = [embedding] if isinstance(embedding, str) else list(embedding)
    classed = [] if outcome else [label] + ([probs] if isinstance(probs, str) else list(probs))
    wanted = embedded + classed + list(outcome.values()) + ([text] if text else [])
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise DataError(f"the DataFrame has no column {missing}; its columns are {list(map(str, frame.columns))}")
    texts = frame[text].astype(str).tolist() if text else None
    metadata = _metadata(frame, set(wanted))
    if outcome:
        from faultlines.data.files import outcome_table

        values = {role: _vectors(frame, column, role).reshape(-1).astype(np.float64) if role in ("loss", "score")
                  else frame[column].to_numpy() for role, column in outcome.items()}
        return outcome_table(_vectors(frame, embedding, "embedding"), values, texts, name, metadata, higher_is_better, threshold,
                             class_names)
    return EmbeddingTable(_vectors(frame, embedding, "embedding"), frame[label].to_numpy(), _vectors(frame, probs, "probs"),
                          class_names, texts, name=name, metadata=metadata)


def _metadata(frame, used: set) -> Any:
    """The columns of `frame` not in `used`, as a pyarrow Table (None if there are none)."""
    import warnings

    import pyarrow as pa

    kept = {}
    for column in frame.columns:
        if column in used:
            continue
        try:
            kept[str(column)] = pa.Array.from_pandas(frame[column])
        except (pa.ArrowException, TypeError, ValueError):
            warnings.warn(f"column {column!r} holds values of mixed types and is not kept as metadata", InputWarning, stacklevel=3)
    return pa.table(kept) if kept else None


def from_hf(dataset, image: str | None = "image", label: str = "label", text: str | None = None,
            class_names: Sequence[str] | None = None, name: str | None = None) -> ArraySource:
    """A Source from a Hugging Face `datasets.Dataset` (already in memory or on local disk).

    Args:
        dataset: the `datasets.Dataset`.
        image: the column of images (PIL images or arrays, all one size), read as (C, H, W)
            float32 in [0, 1]; ignored when `text` is given.
        label: the column of class ids; its ClassLabel names become the class names.
        text: a column of texts instead: each is embedded with the MiniLM model the `text`
            extra carries (`faultlines.data.text`), and shown in the report.
        class_names: one name per class; default: the label column's ClassLabel names.

    Raises:
        DataError: a column is missing, the images differ in size, or the labels are not ids.
    """
    try:
        import datasets
    except ImportError as e:
        raise DataError("from_hf needs the datasets package: pip install datasets") from e
    if not isinstance(dataset, datasets.Dataset):
        raise DataError(f"from_hf takes a datasets.Dataset (one split), not {type(dataset).__name__}")
    column = text or image
    missing = [c for c in (column, label) if c is None or c not in dataset.column_names]
    if missing:
        raise DataError(f"the dataset has no column {missing}; its columns are {dataset.column_names}")
    feature = dataset.features[label]
    names = class_names if class_names is not None else getattr(feature, "names", None)
    name = name or (dataset.info.dataset_name or "data")
    labels = np.asarray(dataset[label])
    if text:
        from faultlines.data.text import text_source

        return text_source([str(t) for t in dataset[text]], labels, names, name=name)
    return ArraySource(_images(dataset[image], image), labels, names, name=name)


def _images(cells: list[Any], column: str) -> np.ndarray:
    arrays = []
    for i, cell in enumerate(cells):
        a = np.asarray(cell.convert("RGB") if getattr(cell, "mode", "L") not in ("L", "1", "F", "I") else cell)
        if a.dtype == np.uint8:
            a = a.astype(np.float32) / 255.0
        if a.ndim == 2:
            a = a[None]
        elif a.ndim == 3 and a.shape[-1] in (1, 3, 4) and a.shape[0] not in (1, 3, 4):
            a = np.moveaxis(a, -1, 0)
        if a.ndim != 3:
            raise DataError(f"row {i} of column '{column}' is not an image (shape {a.shape})")
        if arrays and a.shape != arrays[0].shape:
            raise DataError(f"row {i} of column '{column}' is {a.shape} but row 0 is {arrays[0].shape}: give images of one size")
        arrays.append(a.astype(np.float32, copy=False))
    if not arrays:
        raise DataError(f"column '{column}' holds no images")
    return np.stack(arrays)
