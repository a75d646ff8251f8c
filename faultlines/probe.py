"""Run a classifier over a data set once, in batches, and keep what it did: `Outputs`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats

from faultlines.data.sources import EmbeddingTable, Source
from faultlines.errors import DataError, FaultlinesError, ModelError, SettingsError, first_line
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


#: Rescalings of the inputs the input check tries (on what the model receives, after any preprocessing).
RESCALINGS = {
    "standardised per channel": lambda x, m, s: (x - m) / s,
    "multiplied by 255": lambda x, m, s: x * 255.0,
    "divided by 255": lambda x, m, s: x / 255.0,
    "mapped from [0, 1] to [-1, 1]": lambda x, m, s: x * 2.0 - 1.0,
}
#: The input check warns when a rescaling is right on at least this many more of the checked inputs (a share)...
CHECK_GAIN = 0.02
#: ... and a one-sided sign test on the inputs only one of the two gets right gives at most this p-value.
CHECK_P = 1e-3
#: It also warns when the first inputs' accuracy is this far below what the model's checkpoint records
#: (`Classifier.expected`) and a one-sided binomial test gives at most CHECK_P.
CHECK_BELOW = 0.1


def check_alignment(outputs: Outputs, seed: int = 0) -> dict | None:
    """A test that the labels and the probability columns name the classes in the same order.

    A table whose class columns are in another order than its labels' ids (a model's classes
    `malignant, benign` beside labels sorted to `benign, malignant`) scans without an error at
    near-zero accuracy. The confusion counts (label x arg-max column) of a random half of the
    rows choose the assignment of columns to classes that gets the most of them right
    (`scipy.optimize.linear_sum_assignment`); where it is not the given order, the other half
    tests it: when a one-sided sign test on those rows that only one of the two orders gets
    right says the chosen order is no chance (p <= `CHECK_P`), the columns are likely
    misaligned (a swap of two classes of fifty is found too). Choosing on one half and testing
    on the other keeps the test honest: among the k! orders of k classes, one fits any one set
    of rows better than the given order by chance alone.

    Returns:
        None when the given order fits (or there are no classes); else the finding: `message`
        (one line), the accuracy as given and in the fitted order (on every row), `order` (the class names that fit the
        columns, one per column, chosen on every row), and p.
    """
    from scipy.optimize import linear_sum_assignment

    if not outputs.has_classes:
        return None
    k, n = outputs.num_classes, outputs.n

    def confusion(rows: np.ndarray) -> np.ndarray:
        counts = np.zeros((k, k), np.int64)
        np.add.at(counts, (outputs.labels[rows], outputs.preds[rows]), 1)
        return counts

    def fitted(counts: np.ndarray) -> np.ndarray:  # column of each class
        return linear_sum_assignment(counts, maximize=True)[1]

    rows = np.random.default_rng(seed).permutation(n)
    choose, test = rows[: n // 2], rows[n // 2 :]
    columns = fitted(confusion(choose))
    classes = np.arange(k)
    if np.array_equal(columns, classes):
        return None
    held = confusion(test)
    moved = columns != classes  # a row in a moved column is right in one of the two orders at most
    only_fitted = int(held[classes[moved], columns[moved]].sum())
    only_given = int(np.diag(held)[columns[moved]].sum())
    p = float(stats.binomtest(only_fitted, only_fitted + only_given, 0.5, alternative="greater").pvalue) if only_fitted else 1.0
    if p > CHECK_P:
        return None
    everything = confusion(rows)
    columns = fitted(everything)
    given, right = np.trace(everything) / n, everything[classes, columns].sum() / n
    order = [""] * k
    for c, column in enumerate(columns.tolist()):
        order[column] = outputs.class_names[c]
    message = (f"the labels and the probability columns may name the classes in different orders: {given:.1%} of rows are "
               f"right with the columns as given ({', '.join(outputs.class_names)}) but {right:.1%} with them read as "
               f"{', '.join(order)} (sign test on held-out rows p = {p:.2g}); if the labels are class names, give the "
               f"columns' order (--class-names {','.join(order)}; class_names= in the API), else reorder the probability "
               "columns to follow the label ids")
    return {"message": message, "accuracy": float(given), "accuracy_fitted": float(right), "order": order, "p_value": p}


def check_inputs(clf: Classifier, data: Source, rows: int = 256) -> dict | None:
    """A quick test that the inputs are scaled as the model was trained to take them.

    Runs the model on the first `rows` inputs as given (after `clf.preprocess`) and rescaled
    (`RESCALINGS`: standardised with their own per-channel mean and std, x255, /255, [-1, 1]).
    When a rescaling gets at least `CHECK_GAIN` more of them right, and a one-sided sign test
    on the inputs only one of the two gets right says it is no chance (p <= `CHECK_P`), the
    inputs are likely scaled differently from training (a missing normalisation, 0-255 pixels).
    Where the model's checkpoint records its accuracy on its own validation data
    (`Classifier.expected`), an accuracy `CHECK_BELOW` or more below it (binomial p <= `CHECK_P`)
    is a finding too: something no rescaling undoes (a channel order, a resize, other data).

    Returns:
        None when nothing is off; else the finding: `message` (one line), the accuracy and mean
        confidence as given and rescaled, the rescaling, p, and the inputs' mean and std per channel.
    """
    x, y = next(iter(data.batches(rows)))
    steps = clf.preprocess
    with torch.no_grad():
        seen = (steps(x.to(clf.device)) if steps is not None else x.to(clf.device)).float()
        reduce = (0,) + tuple(range(2, seen.ndim)) if seen.ndim > 2 else (0, 1)
        mean, std = seen.mean(dim=reduce, keepdim=True), seen.std(dim=reduce, keepdim=True).clamp_min(1e-6)
        clf.preprocess = None  # the rescalings apply to what the model receives
        try:
            def scored(probs: torch.Tensor) -> tuple[np.ndarray, float]:
                return (probs.argmax(1) == y).numpy(), float(probs.max(1).values.mean())

            probs = clf.probs(seen)
            check_label_range(y.numpy(), probs.shape[1])  # labels the model cannot have: one line now, before any work
            given, confidence = scored(probs)
            best = None
            for name, rescale in RESCALINGS.items():
                right, conf = scored(clf.probs(rescale(seen, mean, std)))
                gained, lost = int((right & ~given).sum()), int((given & ~right).sum())
                p = float(stats.binomtest(gained, gained + lost, 0.5, alternative="greater").pvalue) if gained else 1.0
                if (right.mean() - given.mean() >= CHECK_GAIN and p <= CHECK_P
                        and (best is None or right.mean() > best["accuracy_rescaled"])):
                    best = {"rescaling": name, "accuracy_rescaled": float(right.mean()), "confidence_rescaled": conf, "p_value": p}
        except FaultlinesError:
            raise
        except (RuntimeError, ValueError, TypeError):
            return None  # the model cannot take a rescaled batch (integer inputs, say): the probe itself says what is wrong
        finally:
            clf.preprocess = steps
    expected, below = clf.expected, None
    if expected is not None and expected["accuracy"] - given.mean() >= CHECK_BELOW:
        below = float(stats.binomtest(int(given.sum()), len(given), expected["accuracy"], alternative="less").pvalue)
        below = below if below <= CHECK_P else None
    if best is None and below is None:
        return None
    channel = lambda t: ",".join(f"{v:.3g}" for v in t.flatten().tolist()[:4])  # noqa: E731
    finding = (best or {}) | {"rows": len(y), "accuracy": float(given.mean()), "confidence": confidence,
                              "input_mean": channel(mean), "input_std": channel(std), "expected": expected, "p_below_expected": below}
    recorded = (f"; its checkpoint records {expected['accuracy']:.1%} (confidence {expected['confidence']:.2f}) on its own "
                f"validation data" if expected is not None else "")
    if best is not None:
        advice = (f"--preprocess mean={channel(mean)} std={channel(std)}" if best["rescaling"].startswith("standardised")
                  else "--preprocess with the model's normalisation")
        finding["message"] = (f"inputs may be scaled differently from training: the model gets {finding['accuracy']:.1%} of the first "
                              f"{len(y)} right as given (mean confidence {confidence:.2f}) but {best['accuracy_rescaled']:.1%} with them "
                              f"{best['rescaling']} (confidence {best['confidence_rescaled']:.2f}){recorded}; give the model's "
                              f"preprocessing ({advice}; preprocess= in the API)")
    else:
        finding["message"] = (f"inputs may be scaled differently from training, or not be what the model was trained on: it gets "
                              f"{finding['accuracy']:.1%} of the first {len(y)} right (mean confidence {confidence:.2f}){recorded} "
                              f"(binomial p = {below:.2g}); check the preprocessing (--preprocess; preprocess= in the API), "
                              "the channel order and the labels")
    return finding
