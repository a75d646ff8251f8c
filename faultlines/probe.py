"""Run a classifier over a data set once, in batches, and keep what it did: `Outputs`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from faultlines.data.sources import EmbeddingTable, Source
from faultlines.errors import DataError, ModelError, SettingsError, first_line
from faultlines.model import Classifier
from faultlines.progress import track
from faultlines.types import Outputs, check_label_range


def probe(
    clf: Classifier | None,
    data: Source | EmbeddingTable,
    batch_size: int = 256,
    quiet: bool = False,
    source: str = "test",
    *,
    num_workers: int = 0,
    amp: bool = False,
    embeddings_file: str | Path | None = None,
) -> Outputs:
    """Labels, predictions, probabilities, losses and embeddings for every sample of `data`.

    Batches stream through the model on `clf.device` with no autograd; each batch's outputs
    are written into arrays of the final size (no list of batches to join at the end).

    Args:
        clf: the classifier; may be None when `data` is an `EmbeddingTable`.
        data: a `Source` to run `clf` over, or a precomputed `EmbeddingTable`.
        batch_size: samples per forward pass.
        quiet: hide the progress bar.
        source: the name the outputs carry ("test", "train", ...).
        num_workers: processes that load batches (a torch Dataset's DataLoader workers);
            0 loads them in this process.
        amp: run the model in float16 autocast (CUDA only); outputs are stored as float32.
        embeddings_file: write the embeddings, batch by batch, into this new .npy file and
            return them memory-mapped from it, so that they never sit in memory whole.

    Raises:
        DataError: empty data, labels outside the model's classes, non-finite embeddings.
        ModelError: the model cannot take the inputs.
        SettingsError: `amp` off CUDA, or a negative `num_workers`.
    """
    if isinstance(data, EmbeddingTable):
        return data.to_outputs(source)
    if clf is None:
        raise ModelError("a model is needed to probe this data (only an embedding table can be scanned without one)")
    if len(data) == 0:
        raise DataError("the data set is empty: give at least one sample")
    if amp and clf.device.type != "cuda":
        raise SettingsError(f"amp (mixed precision) is for a CUDA device; this model runs on {clf.device.type}")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise SettingsError(f"num_workers must be a whole number >= 0, not {num_workers!r}")
    n = len(data)
    gathered = Gathered(n, embeddings_file)
    batches = data.batches(batch_size, num_workers=num_workers)
    for i, (x, y) in enumerate(track(batches, f"probing {data.name}", n, quiet, unit="rows", step=lambda batch: len(batch[1]))):
        try:
            with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
                logits, emb = clf.forward(x)
        except (RuntimeError, ValueError, TypeError) as e:
            if i == 0 and not isinstance(e, ModelError):
                raise ModelError(f"the model cannot take inputs of shape {tuple(x.shape)}: {first_line(e)}") from e
            raise
        rows = slice(gathered.filled, gathered.filled + len(y))
        if rows.stop > n:
            raise DataError(f"the data yielded more than the {n} samples its length says")
        gathered.put(rows, y.numpy(), logits.float().cpu().numpy(), emb.float().cpu().numpy())
    if gathered.filled != n:
        raise DataError(f"the data yielded {gathered.filled} samples but its length says {n}")
    return gathered.outputs(clf.class_names or data.class_names, source)


class Gathered:
    """The labels, logits and embeddings of `n` rows, put in batch by batch at any rows; the
    embeddings in memory, or written into a new .npy `embeddings_file` and memory-mapped from
    it. Both engines (`probe`, `faultlines.distributed.probe_ray`) gather their batches here."""

    def __init__(self, n: int, embeddings_file: str | Path | None = None) -> None:
        self.n, self.embeddings_file, self.filled = n, embeddings_file, 0
        self.labels = np.empty(n, np.int64)
        self.logits: np.ndarray | None = None
        self.embeddings: np.ndarray | None = None

    def put(self, rows: slice | np.ndarray, labels: np.ndarray, logits: np.ndarray, embeddings: np.ndarray) -> None:
        """Put one batch's outputs at `rows`, checked against what the model should return.

        Raises:
            ModelError: the model returned another number of rows than it was given, other
                widths than on earlier batches, or NaN or infinite values.
        """
        if len(logits) != len(labels) or len(embeddings) != len(labels):
            raise ModelError(f"the model returned {len(logits)} rows of logits and {len(embeddings)} of embeddings "
                             f"for a batch of {len(labels)} samples; it must return one row per input")
        if self.embeddings is not None and (logits.shape[1] != self.logits.shape[1] or embeddings.shape[1] != self.embeddings.shape[1]):
            raise ModelError(f"the model returned {logits.shape[1]} classes and {embeddings.shape[1]} embedding features for one "
                             f"batch but {self.logits.shape[1]} and {self.embeddings.shape[1]} for another")
        bad = ~(np.isfinite(logits).all(axis=1) & np.isfinite(embeddings).all(axis=1))
        if bad.any():
            raise ModelError(f"the model returned NaN or infinite logits or embeddings for {int(bad.sum())} of "
                             f"{len(labels)} samples in a batch; check the model and its inputs' scaling")
        if self.embeddings is None:  # the widths are known from the first batch
            self.logits = np.empty((self.n, logits.shape[1]), np.float32)
            shape = (self.n, embeddings.shape[1])
            self.embeddings = (np.empty(shape, np.float32) if self.embeddings_file is None
                               else np.lib.format.open_memmap(self.embeddings_file, mode="w+", dtype=np.float32, shape=shape))
        check_label_range(labels, self.logits.shape[1])
        self.labels[rows], self.logits[rows], self.embeddings[rows] = labels, logits, embeddings
        self.filled += len(labels)

    def outputs(self, names, source: str) -> Outputs:
        """The gathered rows as Outputs (probabilities: the softmax of the logits)."""
        num_classes = self.logits.shape[1]
        if names is not None and len(names) != num_classes:
            raise DataError(f"there are {len(names)} class names but the model outputs {num_classes} classes")
        if isinstance(self.embeddings, np.memmap):
            self.embeddings.flush()
        return Outputs.from_probs(self.labels, F.softmax(torch.from_numpy(self.logits), dim=1).numpy(), self.embeddings, names,
                                  source=source, logits=self.logits)
