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
    """Outputs computed elsewhere: embeddings, labels and predicted probabilities.

    For models that are not PyTorch image models (text, tabular, recommender): faultlines
    needs no model to scan these, only the table.

    Attributes:
        embeddings: (N, D) representation of each sample.
        labels: (N,) true class ids.
        probs: (N, C) predicted probabilities (rows sum to 1).
        class_names: one name per class; default "0", "1", ...
        texts: one string per sample, shown in the report, or None.
        name: what the report calls this data.
        metadata: other facts about each sample (a source site, a date...), one row per
            sample, as for `ArraySource`; kept in the run's samples.parquet and shown in the report.

    Labels may be class ids or class names of any dtype (`types.encode_labels`: strings are
    mapped to `class_names`, or to the sorted distinct labels, one per column of `probs`).
    """

    embeddings: np.ndarray
    labels: np.ndarray
    probs: np.ndarray
    class_names: tuple[str, ...] | None = None
    texts: list[str] | None = None
    name: str = "data"
    metadata: Any = None

    def __post_init__(self) -> None:
        for name in ("embeddings", "labels", "probs"):
            if np.ndim(getattr(self, name)) == 0:
                raise DataError(f"{name} must hold one row per sample, not a single value")
        width = np.shape(self.probs)[1] if np.ndim(self.probs) == 2 else None
        self.labels, self.class_names = encode_labels(self.labels, self.class_names, width)
        if self.texts is not None and (isinstance(self.texts, (str, bytes)) or np.ndim(self.texts) != 1):
            raise DataError("texts must be a list of strings, one per sample")
        n = len(self.labels)
        if not (len(self.embeddings) == len(self.probs) == n):
            raise DataError(
                f"embeddings, labels and probs have {len(self.embeddings)}, {n} and {len(self.probs)} rows: "
                "give one row per sample in each"
            )
        if self.texts is not None and len(self.texts) != n:
            raise DataError(f"texts has {len(self.texts)} entries but there are {n} samples")
        self.metadata = as_metadata(self.metadata, n)

    def __len__(self) -> int:
        return len(self.labels)

    def to_outputs(self, source: str = "test") -> Outputs:
        """Validate the table and turn it into `Outputs`."""
        return Outputs.from_probs(self.labels, self.probs, self.embeddings, self.class_names, source=source)

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
