"""Labelled data sets a classifier can be run over, behind one small interface."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from faultlines.errors import DataError, FaultlinesError, first_line
from faultlines.images import to_image_uint8
from faultlines.types import Outputs, Preview, as_class_names, encode_labels


class Source:
    """A labelled data set: samples to feed a model, in batches, with previews for the report.

    Subclasses set `name`, `class_names` (or None to number the classes), `texts` (one string
    per sample for text data, else None) and `metadata` (a pyarrow Table of other facts about
    each sample, one row per sample, kept beside the results; else None).
    """

    name: str = "data"
    class_names: tuple[str, ...] | None = None
    texts: list[str] | None = None
    metadata: Any = None

    def __len__(self) -> int:
        raise NotImplementedError

    def batches(
        self, batch_size: int, shuffle: bool = False, seed: int = 0, num_workers: int = 0
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (inputs, labels) tensors, `batch_size` samples at a time (`num_workers`
        processes load them where the source reads from disk; in-memory sources ignore it)."""
        raise NotImplementedError

    def preview(self, indices: Sequence[int]) -> dict[int, Preview]:
        """What the report shows for these samples: images, texts, or nothing."""
        raise NotImplementedError

    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one input: (C, H, W) for images, (D,) for feature vectors."""
        x, _ = next(iter(self.batches(1)))
        return tuple(x.shape[1:])

    def arrays(self, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
        """All inputs and labels as numpy arrays, in order."""
        parts = [(x.numpy(), y.numpy()) for x, y in self.batches(batch_size)]
        if not parts:
            raise DataError("the data set is empty: give at least one sample")
        xs, ys = zip(*parts)
        return np.concatenate(xs), np.concatenate(ys)


class ArraySource(Source):
    """Samples held in memory as numpy arrays.

    Args:
        x: (N, ...) inputs, e.g. (N, C, H, W) images or (N, D) features; cast to float32.
        y: (N,) class ids, or class names of any dtype (strings...; see `types.encode_labels`).
        class_names: one name per class id; default "0", "1", ... (the sorted names for named labels).
        name: what the report calls this data.
        texts: one string per sample for text data.
        metadata: other facts about each sample (a source site, a file path...): a dict of
            columns, a pandas DataFrame or a pyarrow Table with one row per sample.
    """

    def __init__(
        self,
        x: Any,
        y: Any,
        class_names: Sequence[str] | None = None,
        name: str = "data",
        texts: Sequence[str] | None = None,
        metadata: Any = None,
    ) -> None:
        x = np.asarray(x)
        y, class_names = encode_labels(y, class_names)
        if x.ndim == 0:
            raise DataError(f"x must hold one row per sample, (N, ...), not a single value of shape {x.shape}")
        if len(x) != len(y):
            raise DataError(f"x has {len(x)} rows but y has {len(y)}: give one label per sample")
        if len(x) == 0:
            raise DataError(f"the data set '{name}' is empty: give at least one sample")
        if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
            raise DataError(f"x must hold real numbers, got dtype {x.dtype}")
        with np.errstate(over="ignore"):  # values beyond float32's range become inf, refused next
            x = x.astype(np.float32, copy=False)
        bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        if bad.any():
            raise DataError(
                f"x contains NaN, infinite or too large (beyond float32) values in {int(bad.sum())} samples "
                f"(first: {np.flatnonzero(bad)[:5].tolist()}); remove or repair them"
            )
        if texts is not None and len(texts) != len(x):
            raise DataError(f"texts has {len(texts)} entries but x has {len(x)} rows")
        self.x, self.y, self.name = x, y, name
        self.class_names = as_class_names(class_names)
        self.texts = list(texts) if texts is not None else None
        self.metadata = as_metadata(metadata, len(y))

    def __len__(self) -> int:
        return len(self.y)

    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0, num_workers: int = 0):
        order = np.random.default_rng(seed).permutation(len(self)) if shuffle else np.arange(len(self))
        for start in range(0, len(self), batch_size):
            rows = order[start : start + batch_size]
            yield torch.from_numpy(self.x[rows]), torch.from_numpy(self.y[rows])

    def preview(self, indices: Sequence[int]) -> dict[int, Preview]:
        if self.texts is not None:
            return {int(i): self.texts[i] for i in indices}
        images = {int(i): to_image_uint8(self.x[i]) for i in indices}
        return {i: im for i, im in images.items() if im is not None}

    def subset(self, rows: Any, name: str | None = None) -> ArraySource:
        """A new source with only `rows` (indices or a boolean mask)."""
        return ArraySource(
            self.x[rows],
            self.y[rows],
            self.class_names,
            name or self.name,
            [self.texts[i] for i in np.arange(len(self))[rows]] if self.texts is not None else None,
            None if self.metadata is None else self.metadata.take(np.arange(len(self))[rows]),
        )


class TorchSource(Source):
    """Any map-style torch `Dataset` whose items are (input tensor, integer label).

    Args:
        dataset: the dataset; `dataset[i]` must return (x, y).
        class_names: one name per class id; default: `dataset.classes` if it has them.
        name: what the report calls this data.
        metadata: other facts about each sample, one row per sample (as for `ArraySource`).
    """

    def __init__(self, dataset: torch.utils.data.Dataset, class_names: Sequence[str] | None = None, name: str = "data",
                 metadata: Any = None):
        try:
            n = len(dataset)  # type: ignore[arg-type]
        except TypeError as e:
            raise DataError("the torch dataset must define __len__ (a map-style Dataset)") from e
        if n == 0:
            raise DataError(f"the data set '{name}' is empty: give at least one sample")
        self.dataset, self.name = dataset, name
        names = class_names if class_names is not None else getattr(dataset, "classes", None)
        self.class_names = as_class_names(names)
        self.metadata = as_metadata(metadata, n)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def batches(self, batch_size: int, shuffle: bool = False, seed: int = 0, num_workers: int = 0):
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=num_workers,
            pin_memory=num_workers > 0 and torch.cuda.is_available(),
            generator=torch.Generator().manual_seed(seed) if shuffle else None,
        )
        try:
            for x, y in loader:
                yield torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.int64)
        except FaultlinesError as e:
            message = str(e).strip()
            if "DataLoader worker" not in message:
                raise
            # raised in a worker process: torch puts the worker's traceback around the message
            raise type(e)(message.splitlines()[-1].partition(": ")[2]) from None

    def preview(self, indices: Sequence[int]) -> dict[int, Preview]:
        images = {int(i): to_image_uint8(np.asarray(self.dataset[int(i)][0])) for i in indices}
        return {i: im for i, im in images.items() if im is not None}


@dataclass
class EmbeddingTable:
    """Outputs computed elsewhere: embeddings and what the model did on each row.

    For models that are not PyTorch image models (text, tabular, recommender, regression, an
    LLM evaluated per prompt): faultlines needs no model to scan these, only the table. Each
    row's outcome is a classifier's (labels and predicted probabilities), or any model's loss
    and/or binary failure.

    Attributes:
        embeddings: (N, D) representation of each sample.
        labels: (N,) true class ids, or None without classes.
        probs: (N, C) predicted probabilities (rows sum to 1), or None without classes.
        class_names: one name per class; default "0", "1", ...
        texts: one string per sample, shown in the report, or None.
        name: what the report calls this data.
        metadata: other facts about each sample (a source site, a date...), one row per
            sample, as for `ArraySource`; kept in the run's samples.parquet and shown in the report.
        losses: (N,) per-row loss, lower is better (outputs without classes); default, with
            `failed`: 1 where a row failed, else 0.
        failed: (N,) whether each row failed (an evaluation's fail), or None.
        threshold: without `failed`, a row fails where its loss is above this (default: the
            median loss; `Outputs.failures`).

    Labels may be class ids or class names of any dtype (`types.encode_labels`: strings are
    mapped to `class_names`, or to the sorted distinct labels, one per column of `probs`).
    """

    embeddings: np.ndarray
    labels: np.ndarray | None = None
    probs: np.ndarray | None = None
    class_names: tuple[str, ...] | None = None
    texts: list[str] | None = None
    name: str = "data"
    metadata: Any = None
    losses: np.ndarray | None = None
    failed: np.ndarray | None = None
    threshold: float | None = None

    def __post_init__(self) -> None:
        classed = self.labels is not None or self.probs is not None
        outcome = self.losses is not None or self.failed is not None
        if classed and (self.labels is None or self.probs is None):
            raise DataError("a classifier's table needs both labels and probabilities; a table of another model's outcomes "
                            "needs a loss, a score or a pass/fail per row instead")
        if classed and outcome:
            raise DataError("give labels and probabilities (a classifier) or a loss / failure per row (any model), not both")
        if not classed and not outcome:
            raise DataError("the table says nothing of how the model did: give labels and probabilities, or a loss, a score "
                            "or a pass/fail per row")
        if self.threshold is not None and (classed or self.failed is not None):
            raise DataError("a loss threshold is for a table of losses without a pass/fail column")
        present = [name for name in ("embeddings", "labels", "probs", "losses", "failed") if getattr(self, name) is not None]
        for name in present:
            if np.ndim(getattr(self, name)) == 0:
                raise DataError(f"{name} must hold one row per sample, not a single value")
        if classed:
            width = np.shape(self.probs)[1] if np.ndim(self.probs) == 2 else None
            self.labels, self.class_names = encode_labels(self.labels, self.class_names, width)
        if self.texts is not None and (isinstance(self.texts, (str, bytes)) or np.ndim(self.texts) != 1):
            raise DataError("texts must be a list of strings, one per sample")
        n = len(self.embeddings)
        if any(len(getattr(self, name)) != n for name in present):
            raise DataError(
                f"{', '.join(present)} have {', '.join(str(len(getattr(self, k))) for k in present)} rows: "
                "give one row per sample in each"
            )
        if self.texts is not None and len(self.texts) != n:
            raise DataError(f"texts has {len(self.texts)} entries but there are {n} samples")
        self.metadata = as_metadata(self.metadata, n)

    def __len__(self) -> int:
        return len(self.embeddings)

    @property
    def has_classes(self) -> bool:
        """Whether the table is a classifier's (labels and probabilities)."""
        return self.labels is not None

    def to_outputs(self, source: str = "test") -> Outputs:
        """Validate the table and turn it into `Outputs`."""
        if self.labels is not None:
            return Outputs.from_probs(self.labels, self.probs, self.embeddings, self.class_names, source=source)
        failed = None if self.failed is None else as_failed(self.failed)
        losses = self.losses if self.losses is not None else failed.astype(np.float32)
        return Outputs.from_losses(losses, self.embeddings, failed=failed, threshold=self.threshold, source=source)

    def preview(self, indices: Sequence[int]) -> dict[int, Preview]:
        return {int(i): self.texts[i] for i in indices} if self.texts is not None else {}


def as_metadata(metadata: Any, n: int):
    """`metadata` (a pyarrow Table, a pandas DataFrame or a dict of columns) as a pyarrow Table
    of `n` rows with string column names, or None; a DataError when it cannot be one."""
    if metadata is None:
        return None
    import pyarrow as pa

    try:
        if isinstance(metadata, pa.Table):
            table = metadata
        elif hasattr(metadata, "iloc") and hasattr(metadata, "columns"):  # a pandas DataFrame
            table = pa.Table.from_pandas(metadata, preserve_index=False)
        elif isinstance(metadata, dict):
            table = pa.table({str(k): v if isinstance(v, (pa.Array, pa.ChunkedArray)) else pa.array(np.asarray(v).tolist() if np.ndim(v) == 1 else v)
                              for k, v in metadata.items()})
        else:
            raise DataError(f"metadata must be a dict of columns, a pandas DataFrame or a pyarrow Table, not {type(metadata).__name__}")
    except (pa.ArrowException, TypeError, ValueError) as e:
        raise DataError(f"metadata must hold one value per sample in each column ({first_line(e)})") from e
    if table.num_rows != n:
        raise DataError(f"metadata has {table.num_rows} rows but there are {n} samples: give one row per sample")
    return table.rename_columns([str(c) for c in table.column_names]) if table.num_columns else None


@dataclass
class Splits:
    """A data set split for training and evaluation."""

    train: ArraySource
    val: ArraySource
    test: ArraySource


def as_failed(values: Any, passed: bool = False) -> np.ndarray:
    """A pass/fail column as (N,) bool failures. True/false, 0/1 and yes/no say whether a row
    failed, or with `passed` whether it passed; the words pass/passed and fail/failed (any
    case) say so themselves. A DataError for anything else or a missing value."""
    if hasattr(values, "to_numpy") and hasattr(values, "null_count"):  # a pyarrow array or column
        if values.null_count:
            raise DataError(f"{values.null_count} rows have no pass/fail; give every row one")
        values = values.to_numpy(zero_copy_only=False)
    v = np.asarray(values)
    if v.ndim != 1:
        raise DataError(f"a pass/fail column must be a vector, one value per row, not shape {v.shape}")
    if v.dtype == bool or v.dtype.kind in "iuf":
        if v.dtype != bool and not np.isin(v, (0, 1)).all():
            raise DataError("a pass/fail column holds 0 and 1 (or true and false) only")
        flag = v.astype(bool)
        return ~flag if passed else flag
    words = np.char.lower(np.char.strip(v.astype(str)))
    yes, no = np.isin(words, ("true", "yes", "1")), np.isin(words, ("false", "no", "0"))
    fail, ok = np.isin(words, ("fail", "failed")), np.isin(words, ("pass", "passed"))
    unknown = ~(yes | no | fail | ok)
    if unknown.any():
        raise DataError(f"a pass/fail column holds {str(words[unknown][0])!r}; use true/false, 0/1, yes/no or pass/fail")
    return fail | ((no if passed else yes) & ~ok)
