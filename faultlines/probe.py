"""Run a classifier over a data set once, in batches, and keep what it did: `Outputs`."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from faultlines.data.sources import EmbeddingTable, Source
from faultlines.errors import DataError, ModelError
from faultlines.model import Classifier
from faultlines.progress import track
from faultlines.types import Outputs, check_label_range


def probe(
    clf: Classifier | None,
    data: Source | EmbeddingTable,
    batch_size: int = 256,
    quiet: bool = False,
    source: str = "test",
) -> Outputs:
    """Labels, predictions, probabilities, losses and embeddings for every sample of `data`.

    Args:
        clf: the classifier; may be None when `data` is an `EmbeddingTable`.
        data: a `Source` to run `clf` over, or a precomputed `EmbeddingTable`.
        batch_size: samples per forward pass (no autograd).
        quiet: hide the progress bar.
        source: the name the outputs carry ("test", "train", ...).

    Raises:
        DataError: empty data, labels outside the model's classes, non-finite embeddings.
        ModelError: the model cannot take the inputs.
    """
    if isinstance(data, EmbeddingTable):
        return data.to_outputs(source)
    if clf is None:
        raise ModelError("a model is needed to probe this data (only an embedding table can be scanned without one)")
    if len(data) == 0:
        raise DataError("the data set is empty: give at least one sample")
    labels, logits_all, embeddings = [], [], []
    batches = data.batches(batch_size)
    for i, (x, y) in enumerate(track(batches, f"probing {data.name}", math.ceil(len(data) / batch_size), quiet)):
        try:
            logits, emb = clf.forward(x)
        except (RuntimeError, ValueError, TypeError) as e:
            if i == 0 and not isinstance(e, ModelError):
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise ModelError(f"the model cannot take inputs of shape {tuple(x.shape)}: {first}") from e
            raise
        check_label_range(y.numpy(), logits.shape[1])
        labels.append(y.numpy())
        logits_all.append(logits.float().cpu())
        embeddings.append(emb.float().cpu().numpy())
    names = clf.class_names or data.class_names
    logits = torch.cat(logits_all)
    num_classes = logits.shape[1]
    if names is not None and len(names) != num_classes:
        raise DataError(f"there are {len(names)} class names but the model outputs {num_classes} classes")
    return Outputs.from_probs(
        np.concatenate(labels), F.softmax(logits, dim=1).numpy(), np.concatenate(embeddings), names,
        source=source, logits=logits.numpy(),
    )
