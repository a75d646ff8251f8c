"""The result types every part of faultlines exchanges. Dataclasses: validation, and the views
a notebook expects (`to_pandas`, `_repr_html_`), nothing else."""

from __future__ import annotations

import base64
import functools
import html
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from faultlines.arrays import nonfinite_rows
from faultlines.errors import DataError, first_line

#: What the report shows for one sample: an image (H, W) or (H, W, 3) as uint8, or a text.
Preview = np.ndarray | str


def as_labels(y: Any) -> np.ndarray:
    """`y` as an int64 vector of class ids, or a DataError saying why it is not one."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise DataError(f"labels must be a 1-D vector of class ids, got shape {y.shape}")
    if y.dtype.kind == "c" or (y.size and not np.issubdtype(y.dtype, np.integer)
                               and (not np.issubdtype(y.dtype, np.number) or not np.all(np.isfinite(y)) or not np.all(y == np.round(y)))):
        raise DataError("labels must be whole class ids (0, 1, 2, ...); found other values")
    if y.size and y.dtype.kind in "uf" and float(np.abs(y).max()) >= 2.0**62:
        raise DataError(f"labels must be class ids (0, 1, 2, ...); found {float(np.abs(y).max()):.4g}")
    return y.astype(np.int64)


def encode_labels(values: Any, class_names: Any = None, num_classes: int | None = None) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """Labels of any dtype as (class ids, class names).

    Whole numbers are class ids already (the names stay as given). Anything else (strings,
    booleans, categories) is a class name: its id is its place in `class_names`, or, without
    them, in the sorted distinct labels, which must then number `num_classes` (the columns of
    the probabilities, when known: a model's classes are commonly in sorted order).

    Raises:
        DataError: missing labels, labels not among `class_names`, or a count of distinct labels
            that does not match `num_classes` without names to say the order.
    """
    names = as_class_names(class_names)
    if hasattr(values, "to_numpy") and hasattr(values, "null_count"):  # a pyarrow array or column
        if values.null_count:
            raise DataError(f"{values.null_count} labels are missing; give every sample a label")
        values = values.to_numpy(zero_copy_only=False)
    y = np.asarray(values)
    whole = y.dtype.kind in "iu" or (y.dtype.kind == "f" and y.size and np.all(np.isfinite(y)) and np.all(y == np.round(y)))
    if whole or y.dtype.kind in "fc" or y.ndim != 1:
        return as_labels(y), names
    if y.dtype == object and any(v is None or (isinstance(v, float) and v != v) for v in y.tolist()):
        raise DataError("some labels are missing; give every sample a label")
    text = y.astype(str)
    found = np.unique(text)
    if names is None:
        if num_classes is not None and len(found) != num_classes:
            shown = ", ".join(map(repr, found[:5].tolist())) + (", ..." if len(found) > 5 else "")
            raise DataError(f"the labels take {len(found)} distinct values ({shown}) but there are {num_classes} classes "
                            "(columns of the probabilities); give the class names in the order of those columns "
                            "(class_names=[...]; CLI: --class-names a,b,c)")
        names = tuple(found.tolist())
    known = np.asarray(names, dtype=str)
    unknown = ~np.isin(text, known)
    if unknown.any():
        listed = ", ".join(map(repr, names[:10])) + (", ..." if len(names) > 10 else "") if names else "an empty list"
        raise DataError(f"{int(unknown.sum())} labels are not among the class names (first: {text[unknown][0]!r}); "
                        f"the class names are {listed}")
    order = np.argsort(known)
    return order[np.searchsorted(known[order], text)].astype(np.int64), names


def real_array(values: Any, name: str) -> np.ndarray:
    """`values` as a float32 array of real numbers (one row of one length per sample), or a DataError."""
    try:
        array = np.asarray(values)
        if array.dtype == object or array.dtype.kind in "USV":  # ragged rows, strings, bytes
            array = np.asarray(array.tolist(), dtype=np.float32)
    except (ValueError, TypeError) as e:
        raise DataError(f"{name} must be a 2-D array of numbers, one row of one length per sample ({first_line(e)})") from e
    if array.dtype.kind == "c":
        raise DataError(f"{name} must hold real numbers, not complex ones")
    if array.dtype.kind not in "biuf":
        raise DataError(f"{name} must hold numbers, not {array.dtype}")
    with np.errstate(over="ignore"):  # values beyond float32 become inf, which the checks then name
        return array.astype(np.float32, copy=False)


def check_probabilities(probs: np.ndarray) -> None:
    """Raise a DataError unless every row of `probs` is finite, in [0, 1] and sums to 1 (within 1%)."""
    rows = nonfinite_rows(probs)
    if len(rows):
        raise DataError(f"probs contain NaN or infinite values in {len(rows)} rows (first: {rows[:5].tolist()}); remove or repair those samples")
    if probs.size and (probs.min() < 0 or probs.max() > 1):
        raise DataError(f"probs range over [{probs.min():.4g}, {probs.max():.4g}]; give probabilities in [0, 1] (a softmax of the logits)")
    sums = probs.sum(axis=1, dtype=np.float64)
    off = np.flatnonzero(np.abs(sums - 1) > 0.01)
    if len(off):
        raise DataError(f"probs rows must sum to 1, but {len(off)} rows do not (row {off[0]} sums to {sums[off[0]]:.4g}); "
                        "give probabilities (a softmax of the logits), not scores")


def as_class_names(names: Any) -> tuple[str, ...] | None:
    """`names` as a tuple of distinct strings, one per class id (None stays None), or a DataError."""
    if names is None:
        return None
    if isinstance(names, (str, bytes)) or np.ndim(names) != 1:
        raise DataError(f"class names must be a list of strings, one per class id, not {type(names).__name__} {np.shape(names)}")
    out = tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n) for n in list(names))
    if len(set(out)) != len(out):
        twice = sorted({n for n in out if out.count(n) > 1})[:3]
        raise DataError(f"class names must be distinct; {twice} appear more than once")
    return out


def check_label_range(labels: np.ndarray, num_classes: int) -> None:
    """Raise a DataError unless every label is a class id in [0, num_classes)."""
    if len(labels) == 0:
        raise DataError("the data set is empty: give at least one sample")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        raise DataError(
            f"labels range over [{lo}, {hi}] but the model has {num_classes} classes "
            f"(0..{num_classes - 1}); relabel the data or use the matching model"
        )


def check_mask(mask: np.ndarray, shape: tuple[int, int], what: str = "mask") -> np.ndarray:
    """`mask` as an (H, W) boolean array of the images' size, or a DataError saying what is wrong."""
    mask = np.asarray(mask)
    if mask.shape != tuple(shape):
        raise DataError(f"the {what} has shape {mask.shape} but the images are {shape[0]}x{shape[1]}; give an (H, W) array of that size")
    if mask.dtype != bool:
        if not np.issubdtype(mask.dtype, np.number) or not np.isin(mask, (0, 1)).all():
            raise DataError(f"the {what} must hold only 0/1 or True/False values")
        mask = mask.astype(bool)
    if not mask.any():
        raise DataError(f"the {what} is empty (no pixel set); mark the pixels it covers with 1")
    return mask


@dataclass(frozen=True)
class Outputs:
    """What a model did on a data set: one row per sample.

    A classifier's outputs have labels, predictions and probabilities, and a row fails where
    the prediction is wrong. Any other model's (a regressor, a recommender, an LLM evaluated
    per prompt) have only a loss per row, and where the outcome says so a binary failure
    (`failed`: an evaluation's fail, a loss over a threshold the user gave). Finders and tests
    read `failures` and `losses`, whichever the outcome is; they never ask which task it is.

    Attributes:
        labels: (N,) int64 true classes, or None for outputs without classes.
        preds: (N,) int64 predicted classes, or None.
        probs: (N, C) float32 predicted class probabilities, or None.
        losses: (N,) float32 per-sample loss: a classifier's cross-entropy -log probs[i, labels[i]];
            any other model's own loss (a squared error, a negated score, 1 for a failed task).
        embeddings: (N, D) float32 representation the finders search in.
        class_names: C names, index = class id; () without classes.
        source: which table this is about ("test", "train", ...).
        logits: (N, C) float32 raw model outputs where a model was run, else None.
        failed: (N,) bool failures given with the outcome (outputs without classes only), or None.
        threshold: outputs with neither classes nor `failed`: a row fails where its loss is
            above this; None: above the median loss.
    """

    labels: np.ndarray | None
    preds: np.ndarray | None
    probs: np.ndarray | None
    losses: np.ndarray
    embeddings: np.ndarray
    class_names: tuple[str, ...]
    source: str = "test"
    logits: np.ndarray | None = None
    failed: np.ndarray | None = None
    threshold: float | None = None

    def __post_init__(self) -> None:
        n = len(self.losses)
        if n == 0:
            raise DataError("the data set is empty: give at least one sample")
        classed = [name for name in ("labels", "preds", "probs") if getattr(self, name) is not None]
        if classed and len(classed) != 3:
            raise DataError("labels, predictions and probabilities come together: give all three or none")
        if classed and (self.failed is not None or self.threshold is not None):
            raise DataError("a classifier's failures are its wrong predictions: give failed or a threshold only for outputs without classes")
        if self.failed is not None and self.threshold is not None:
            raise DataError("give failed or a loss threshold, not both")
        for name in ("embeddings", *classed, *(["failed"] if self.failed is not None else [])):
            if len(getattr(self, name)) != n:
                raise DataError(
                    f"{name} has {len(getattr(self, name))} rows but losses has {n}: "
                    "every array needs one row per sample"
                )
        if self.embeddings.ndim != 2:
            raise DataError(f"embeddings must be 2-D (samples, features), got shape {self.embeddings.shape}")
        if classed and (self.probs.ndim != 2 or self.probs.shape[1] != len(self.class_names)):
            raise DataError(
                f"probs has shape {self.probs.shape} but there are {len(self.class_names)} class names"
            )
        if not classed and self.class_names:
            raise DataError("class names are for outputs with classes (labels, predictions and probabilities)")
        if self.losses.ndim != 1:
            raise DataError(f"losses must be a vector, one per sample, got shape {self.losses.shape}")
        for name in ("embeddings", "losses", *(["probs"] if classed else [])):
            rows = nonfinite_rows(getattr(self, name))
            if len(rows):
                raise DataError(
                    f"{name} contain NaN or infinite values in {len(rows)} rows "
                    f"(first: {rows[:5].tolist()}); remove or repair those samples"
                )
        if classed:
            check_label_range(self.labels, len(self.class_names))

    @classmethod
    def from_losses(
        cls,
        losses: np.ndarray,
        embeddings: np.ndarray,
        failed: np.ndarray | None = None,
        threshold: float | None = None,
        source: str = "test",
    ) -> Outputs:
        """Outputs without classes: a per-row loss (lower is better) and embeddings, and
        optionally a binary failure per row (an evaluation's fail) or a loss above which a row
        fails. With neither, a row fails where its loss is above the median loss (`failures`)."""
        losses = real_array(losses, "losses")
        if losses.ndim != 1:
            raise DataError(f"losses must be a vector, one per sample, got shape {losses.shape}")
        if failed is not None:
            failed = np.asarray(failed)
            if failed.ndim != 1 or not (failed.dtype == bool or (failed.dtype.kind in "iuf" and np.isin(failed, (0, 1)).all())):
                raise DataError("failed must hold one 0/1 or true/false value per sample")
            failed = failed.astype(bool)
        return cls(labels=None, preds=None, probs=None, losses=losses.astype(np.float32, copy=False),
                   embeddings=real_array(embeddings, "embeddings"), class_names=(), source=source, failed=failed,
                   threshold=None if threshold is None else float(threshold))

    @classmethod
    def from_probs(
        cls,
        labels: np.ndarray,
        probs: np.ndarray,
        embeddings: np.ndarray,
        class_names: tuple[str, ...] | None = None,
        source: str = "test",
        logits: np.ndarray | None = None,
    ) -> Outputs:
        """Build Outputs from labels, predicted probabilities and embeddings (and logits, if known).

        Predictions are the arg-max of `probs`; losses are the cross-entropy -log p(label),
        with probabilities clipped at 1e-12 so a confident mistake costs at most ~27.6.
        """
        labels = as_labels(labels)
        probs = real_array(probs, "probs")
        if probs.ndim != 2:
            raise DataError(f"probs must be 2-D (samples, classes), got shape {probs.shape}")
        if len(labels) != len(probs):
            raise DataError(f"labels has {len(labels)} rows but probs has {len(probs)}: give one row per sample")
        check_label_range(labels, probs.shape[1])
        check_probabilities(probs)
        names = as_class_names(class_names)
        if names is None:
            names = tuple(str(i) for i in range(probs.shape[1]))
        embeddings = real_array(embeddings, "embeddings")
        losses = -np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None))
        return cls(
            labels=labels,
            preds=probs.argmax(axis=1).astype(np.int64),
            probs=probs,
            losses=losses,
            embeddings=embeddings,
            class_names=names,
            source=source,
            logits=None if logits is None else np.asarray(logits, np.float32),
        )

    @property
    def n(self) -> int:
        return len(self.losses)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def has_classes(self) -> bool:
        """Whether these are a classifier's outputs (labels, predictions, probabilities)."""
        return self.labels is not None

    @functools.cached_property
    def failures(self) -> np.ndarray:
        """(N,) bool: where the model fails. A classifier's wrong predictions; else the
        `failed` given with the outcome; else the rows whose loss is above `threshold`, or
        above the median loss (the tests on failures are then Mood's median test)."""
        if self.labels is not None:
            return self.labels != self.preds
        if self.failed is not None:
            return self.failed
        return self.losses > self.loss_threshold

    @functools.cached_property
    def loss_threshold(self) -> float | None:
        """The loss above which a row fails, for outputs with neither classes nor `failed`."""
        if self.labels is not None or self.failed is not None:
            return None
        return float(np.median(self.losses)) if self.threshold is None else self.threshold

    @property
    def failure_kind(self) -> str:
        """What a failure is here, in words: "wrong", "failed", "loss above 0.53 (the median)"."""
        if self.labels is not None:
            return "wrong"
        if self.failed is not None:
            return "failed"
        return f"loss above {self.loss_threshold:.3g}" + (" (the median)" if self.threshold is None else "")

    @property
    def correct(self) -> np.ndarray:
        return ~self.failures

    @property
    def accuracy(self) -> float:
        """The share of rows that do not fail (a classifier's accuracy)."""
        return float(self.correct.mean())

    def overview(self) -> dict[str, Any]:
        """Accuracy (the share of rows that do not fail), failure count, mean loss, and per-class
        failure counts where there are classes."""
        per_class = {}
        for c, name in enumerate(self.class_names):
            rows = self.labels == c
            n, errors = int(rows.sum()), int((self.preds[rows] != c).sum())
            per_class[name] = {"samples": n, "errors": errors, "error_rate": errors / n if n else 0.0}
        return {
            "samples": self.n,
            "accuracy": self.accuracy,
            "errors": int(self.failures.sum()),
            "mean_loss": float(self.losses.mean()),
            "per_class": per_class,
        }

    def headline(self) -> str:
        """The outcome in a few words: "accuracy 0.9474", "failure rate 0.1200, mean loss 0.12",
        "mean loss 3.2"."""
        if self.labels is not None:
            return f"accuracy {self.accuracy:.4f}"
        if self.failed is not None:
            rate = f"failure rate {1 - self.accuracy:.4f}"
            return rate if np.array_equal(self.losses, self.failed) else f"{rate}, mean loss {float(self.losses.mean()):.4g}"
        return f"mean loss {float(self.losses.mean()):.4g}"

    def subset(self, rows: np.ndarray) -> Outputs:
        """The same outputs restricted to `rows` (indices or a boolean mask)."""
        pick = lambda a: None if a is None else a[rows]  # noqa: E731
        return Outputs(
            labels=pick(self.labels),
            preds=pick(self.preds),
            probs=pick(self.probs),
            losses=self.losses[rows],
            embeddings=self.embeddings[rows],
            class_names=self.class_names,
            source=self.source,
            logits=pick(self.logits),
            failed=pick(self.failed),
            threshold=self.loss_threshold if self.failed is None and self.labels is None else None,  # the whole table's
        )


@dataclass(frozen=True)
class FailureMode:
    """One systematic failure, in the same shape whichever method found it.

    Attributes:
        id: stable id, e.g. "spotlight-0".
        method: the finder ("spotlight", "defuse", "density", "perturb", ...).
        summary: one human sentence about the mode.
        members: row indices into the table named by `source`, most typical first.
        weights: soft membership of each member (same length as `members`), or None.
        source: which table `members` indexes ("test", "generated", ...).
        metrics: numbers: size, error_rate, mean_loss, purity, ...
        evidence: what the report shows: typical members, breakdowns, centres.
    """

    id: str
    method: str
    summary: str
    members: np.ndarray
    weights: np.ndarray | None = None
    source: str = "test"
    metrics: dict[str, float] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.weights is not None and len(self.weights) != len(self.members):
            raise ValueError("weights must have one entry per member")

    def to_pandas(self, outputs: Outputs | None = None):
        """The members as a DataFrame, most typical first: row, weight (NaN without weights),
        and with `outputs` (the table the mode indexes) label, pred, correct and loss."""
        pd = _pandas()
        rows = np.asarray(self.members, np.int64)
        frame = {"row": rows, "weight": self.weights if self.weights is not None else np.full(len(rows), np.nan, np.float32)}
        if outputs is not None:
            if outputs.source != self.source:
                raise DataError(f"{self.id} indexes the {self.source!r} table, not these {outputs.source!r} outputs")
            if outputs.has_classes:
                names = np.asarray(outputs.class_names, dtype=object)
                frame |= {"label": names[outputs.labels[rows]], "pred": names[outputs.preds[rows]]}
            frame |= {"correct": outputs.correct[rows], "loss": outputs.losses[rows]}
        return pd.DataFrame(frame)

    def glance(self) -> dict[str, Any]:
        """The numbers a table of modes shows (None where the mode has none): finder, size, the
        error rate where its significance was measured with its interval, lift, q-value,
        whether it is significant, and its commonest confusion (true, predicted, count)."""
        m = self.metrics
        confusions = self.evidence.get("confusions") or []
        return {"finder": self.method, "size": len(self.members),
                "rate": m.get("tested_error_rate", m.get("error_rate")), "low": m.get("error_low"), "high": m.get("error_high"),
                "lift": m.get("tested_lift", m.get("error_lift")), "q": m.get("q_value"), "significant": significant(self),
                "confusion": tuple(confusions[0]) if confusions else None}

    def _repr_html_(self) -> str:
        shown = {k: v for k, v in self.metrics.items() if isinstance(v, (int, float))}
        verdict = self.evidence.get("significance", {}).get("sentence", "")
        head = "".join(f"<th>{html.escape(k)}</th>" for k in shown)
        cells = "".join(f"<td>{v:.4g}</td>" for v in shown.values())
        members = ", ".join(str(int(i)) for i in self.members[:20]) + (" ..." if len(self.members) > 20 else "")
        return (f"<div><b>{html.escape(self.id)}</b> ({html.escape(self.method)}, {len(self.members)} members of the "
                f"{html.escape(self.source)} table)<br>{html.escape(self.summary)}<br><i>{html.escape(verdict)}</i>"
                f"<table><tr>{head}</tr><tr>{cells}</tr></table>members: {members}</div>")


@dataclass
class ScanResult:
    """Everything one scan produced: the outputs it scanned, the modes found, and how.

    Attributes:
        outputs: the probed table the modes index.
        modes: failure modes, in the order the finders returned them.
        config: how the scan was run (finders and their settings, data, model, seed).
        previews: images or texts for the samples the report shows, by row index.
        texts: one text per row where the data is text, else None.
        tables: other tables the modes refer to, by name, each a dict of arrays:
            "generated" (Defuse's region samples), "defuse_hits", "vae", "perturb_maps"
            (sensitivity maps), "perturb_swaps" (swap-test images), ...
        repairs: what `faultlines fix` did to the model, by repair ("defuse", "xbl": the
            before/after tables), read from the run folder.
        analyses: JSON-able results of analyses beyond the modes, by name ("density": the
            feature-density tests and detector tables; "perturb": the global perturbations
            and the swap tests of every candidate region), stored in scan.json.
        heldout: (N,) True for the rows held out to confirm the modes of finders that choose
            by errors (`faultlines.significance`), or None when no rows were held out.
        metadata: a pyarrow Table of other facts about each scanned row (the data's metadata:
            a site, a file path...), or None.
    """

    outputs: Outputs
    modes: list[FailureMode]
    config: dict[str, Any] = field(default_factory=dict)
    previews: dict[int, Preview] = field(default_factory=dict)
    texts: list[str] | None = None
    tables: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    repairs: dict[str, Any] = field(default_factory=dict)
    analyses: dict[str, Any] = field(default_factory=dict)
    heldout: np.ndarray | None = None
    metadata: Any = None

    def membership(self) -> tuple[np.ndarray, np.ndarray]:
        """Which modes each scanned row belongs to, without a Python loop over rows: (offsets,
        ids), the ids of row i's modes being ids[offsets[i]:offsets[i + 1]], in the run's mode order."""
        own = [m for m in self.modes if m.source == self.outputs.source]
        rows = np.concatenate([m.members for m in own]) if own else np.zeros(0, np.int64)
        which = np.repeat(np.arange(len(own)), [len(m.members) for m in own])
        offsets = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=self.outputs.n))])
        return offsets, np.array([m.id for m in own], dtype=object)[which[np.lexsort((which, rows))]]

    def to_pandas(self):
        """One row per scanned sample: row, label, pred, correct, loss, probs (a list; label, pred
        and probs only for outputs with classes), modes
        (the ids of the modes it belongs to), heldout (if rows were held out), text (for text
        data), and the data's metadata columns."""
        pd = _pandas()
        out = self.outputs
        names = np.asarray(out.class_names, dtype=object)
        offsets, ids = self.membership()
        membership = [ids[a:b].tolist() for a, b in zip(offsets[:-1], offsets[1:])]
        frame = {"row": np.arange(out.n)}
        if out.has_classes:
            frame |= {"label": names[out.labels], "pred": names[out.preds]}
        frame |= {"correct": out.correct, "loss": out.losses}
        if out.has_classes:
            frame["probs"] = list(out.probs)
        frame["modes"] = membership
        if self.heldout is not None:
            frame["heldout"] = np.asarray(self.heldout, bool)
        if self.texts is not None:
            frame["text"] = self.texts
        frame = pd.DataFrame(frame)
        if self.metadata is not None:
            renamed = {name: shown for shown, name in metadata_columns(self.metadata, list(frame.columns))}
            frame = pd.concat([frame, self.metadata.to_pandas().rename(columns=renamed)], axis=1)
        return frame

    def _repr_html_(self) -> str:
        """The summary a notebook shows: accuracy, and a table of the modes (significant first)
        with their tested error rate and interval, lift, q-value, description and a typical member."""
        from faultlines.images import png_bytes

        out = self.outputs
        rows = []
        for mode in ranked(self.modes):
            g, typical = mode.glance(), mode.evidence.get("typical", [])
            preview = self.previews.get(typical[0]) if typical and mode.source == out.source else None
            if isinstance(preview, np.ndarray):
                uri = base64.b64encode(png_bytes(preview, scale=2)).decode("ascii")
                shown = f'<img src="data:image/png;base64,{uri}" style="image-rendering:pixelated" alt="">'
            else:
                shown = html.escape(str(preview)[:80]) if preview is not None else ""
            number = lambda v, f: "" if v is None else format(v, f)  # noqa: E731
            interval = f"{g['low']:.2f}-{g['high']:.2f}" if g["low"] is not None else ""
            a, b, n = g["confusion"] or ("", "", 0)
            confusion = f"{html.escape(str(a))} &rarr; {html.escape(str(b))} ({int(n)})" if g["confusion"] else ""
            rows.append(f"<tr><td>{html.escape(mode.id)}</td><td>{g['size']}</td><td>{number(g['rate'], '.2f')}</td><td>{interval}</td>"
                        f"<td>{number(g['lift'], '.2f')}</td><td>{number(g['q'], '.2g')}</td><td>{'yes' if g['significant'] else 'no'}</td>"
                        f"<td>{confusion}</td><td>{html.escape(described(mode))}</td><td>{shown}</td></tr>")
        head = "".join(f"<th>{h}</th>" for h in ("mode", "size", "error rate", "interval", "lift", "q", "significant",
                                                 "commonest confusion", "description", "typical"))
        return (f"<div><b>faultlines scan</b>: {html.escape(out.headline())} on {out.n} {html.escape(out.source)} samples, "
                f"{len(self.modes)} modes<table><tr>{head}</tr>{''.join(rows)}</table></div>")


def metadata_columns(metadata, taken: list[str]) -> list[tuple[str, str]]:
    """(the name shown beside the run's own columns, the data's own name) of each metadata column:
    its own name, or "meta.NAME" where one of the `taken` columns has that name."""
    if metadata is None:
        return []
    return [(f"meta.{name}" if name in taken else name, name) for name in metadata.column_names]


def described(mode: FailureMode, limit: int = 160) -> str:
    """The mode's description sentence (`faultlines.descriptions`), cut at `limit` characters; "" without one."""
    found = mode.evidence.get("description")
    sentence = str(found.get("sentence") or "") if isinstance(found, dict) else ""
    return sentence if len(sentence) <= limit else sentence[: limit - 1] + "…"


def significant(mode: FailureMode) -> bool:
    """Whether `mode` reached its run's alpha on rows its finder did not choose it by (`faultlines.significance`)."""
    return bool(mode.evidence.get("significance", {}).get("significant", False))


def ranked(modes: list[FailureMode]) -> list[FailureMode]:
    """Modes as a person should read them: significant ones first, then by q-value, p-value, id order."""
    def key(item: tuple[int, FailureMode]) -> tuple:
        i, m = item
        return (not significant(m), m.metrics.get("q_value", 2.0), m.metrics.get("p_value", 2.0), i)

    return [m for _, m in sorted(enumerate(modes), key=key)]


def _pandas():
    try:
        import pandas
    except ImportError as e:
        raise ImportError("to_pandas needs pandas: pip install pandas") from e
    return pandas
