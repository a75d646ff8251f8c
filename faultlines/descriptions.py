"""Describe each failure mode in words a person can act on, from what the data holds.

    modes = describe_modes(modes, outputs, texts=texts, metadata=table, previews=previews)

- **Metadata** (a site, a camera, a file's folder: any column the data brought beside its
  labels): the values over-represented among the mode's rows, each with its share in the mode
  and overall, its lift, and a one-sided hypergeometric (Fisher exact) p-value against the rest.
- **Text**: the words most distinctive of the mode's texts: a word's document frequency in the
  mode against the other rows, tested the same way (English stop words left out).
- **Images**: the class and commonest confusion (already in the summary), and where the mode's
  mean image differs most from the mean image of its commonest class (`mean_images`).

A value or word is reported when its p-value is below alpha divided by the number of values
and words tried for that mode (Bonferroni), and it is more common in the mode than overall.
Each mode gets `evidence["description"]` (the sentence, and the tables behind it) and the
sentence is added to its summary. Modes about another table (Defuse's generated samples) are
left as they are.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from faultlines.significance import over_represented
from faultlines.types import FailureMode, Outputs

#: At most this many metadata values and words make a mode's sentence; the tables keep up to TABLE_ROWS.
SENTENCE_ITEMS = 3
TABLE_ROWS = 10
#: A metadata column with more distinct values than this is binned (numbers) or left out (text such as ids or paths).
MAX_CATEGORIES = 50
#: Numbers with more distinct values are cut at these quantiles.
QUANTILES = (0.25, 0.5, 0.75)
#: Words: kept when they appear in at least this many texts overall.
MIN_DOCS = 3
#: Images: a region of the 3x3 grid is named when the mode's mean differs from the class mean by this much (of the pixel range).
MIN_CONTRAST = 0.08
GRID = ("in the top left", "at the top", "in the top right", "on the left", "in the centre", "on the right", "in the bottom left",
        "at the bottom", "in the bottom right")


def _categories(column) -> tuple[np.ndarray, list[str]] | None:
    """A metadata column as (codes (N,), the name of each code), or None when it cannot be
    described by a few values (lists, long free text, ids)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if pa.types.is_dictionary(kind):
        column, kind = column.cast(kind.value_type), kind.value_type
    if pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_decimal(kind):
        values = column.to_numpy(zero_copy_only=False).astype(np.float64)
        distinct = np.unique(values[np.isfinite(values)])
        if len(distinct) > min(MAX_CATEGORIES, 12):
            cuts = np.unique(np.nanquantile(values, QUANTILES))
            codes = np.where(np.isfinite(values), np.searchsorted(cuts, values, side="right"), len(cuts) + 1)
            edges = [values[np.isfinite(values)].min(), *cuts, values[np.isfinite(values)].max()]
            names = [f"in [{edges[i]:.4g}, {edges[i + 1]:.4g}{']' if i == len(cuts) else ')'}" for i in range(len(cuts) + 1)] + ["missing"]
            return codes, names
    elif not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_boolean(kind)
              or pa.types.is_temporal(kind)):
        return None
    encoded = pc.dictionary_encode(column.combine_chunks() if hasattr(column, "combine_chunks") else column)
    if len(encoded.dictionary) > MAX_CATEGORIES:
        return None
    codes = encoded.indices.fill_null(len(encoded.dictionary)).to_numpy(zero_copy_only=False).astype(np.int64)
    names = [f"= {v}" for v in encoded.dictionary.to_pylist()] + ["missing"]
    return codes, names


class _Words:
    """Which texts hold which words (a binary document-term matrix), computed once per run."""

    def __init__(self, texts: list[str]) -> None:
        from sklearn.feature_extraction.text import CountVectorizer

        vectorizer = CountVectorizer(binary=True, stop_words="english", min_df=MIN_DOCS, token_pattern=r"(?u)\b[^\W\d_][\w']*[^\W_]\b")
        try:
            self.matrix = vectorizer.fit_transform(["" if t is None else str(t) for t in texts]).tocsr()
            self.words = vectorizer.get_feature_names_out()
        except ValueError:  # no word appears often enough
            self.matrix, self.words = None, np.array([])
        self.docs = np.asarray(self.matrix.sum(axis=0)).ravel() if self.matrix is not None else np.zeros(0)


def describe_modes(modes: list[FailureMode], outputs: Outputs, *, texts: list[str] | None = None, metadata: Any = None,
                   previews: dict[int, Any] | None = None, alpha: float = 0.05) -> list[FailureMode]:
    """`modes` with `evidence["description"]` and the description added to each summary (module docstring)."""
    n = outputs.n
    columns = []
    if metadata is not None:
        for name in metadata.column_names:
            found = _categories(metadata.column(name))
            if found is not None:
                codes, names = found
                columns.append((name, codes, names, np.bincount(codes, minlength=len(names))))
    words = _Words(texts) if texts is not None else None
    described = []
    for mode in modes:
        if mode.source != outputs.source or not len(mode.members):
            described.append(mode)
            continue
        members = np.asarray(mode.members)
        size = len(members)
        found: list[dict[str, Any]] = []
        for name, codes, names, totals in columns:
            inside = np.bincount(codes[members], minlength=len(names))
            p = over_represented(inside, size, totals, n)
            found += [_row(column=name, value=names[v], inside=inside[v], size=size, total=totals[v], n=n, p=p[v])
                      for v in np.flatnonzero(inside)]
        tried = len(found)
        terms: list[dict[str, Any]] = []
        if words is not None and words.matrix is not None:
            inside = np.asarray(words.matrix[members].sum(axis=0)).ravel()
            candidates = np.flatnonzero(inside >= 2)  # a word in one text of the mode says nothing of the mode
            tried += len(candidates)
            p = over_represented(inside[candidates], size, words.docs[candidates], n)
            lift = inside[candidates] * n / (size * words.docs[candidates])
            strong = np.flatnonzero((p <= alpha / max(tried, 1)) & (lift > 1))
            terms = [_row(word=str(words.words[candidates[k]]), inside=inside[candidates[k]], size=size,
                          total=words.docs[candidates[k]], n=n, p=p[k]) for k in strong]
        found, terms = _strongest(found, alpha / max(tried, 1)), _strongest(terms, alpha / max(tried, 1))
        image = _image_contrast(mode, outputs, previews or {})
        parts = [f"{r['column']} {r['value']} ({r['share_mode']:.0%} of the mode vs {r['share_all']:.0%} overall, lift {r['lift']:.1f}, "
                 f"p = {r['p_value']:.2g})" for r in found[:SENTENCE_ITEMS]]
        if terms:
            parts.append("distinctive words: " + ", ".join(f"{r['word']} ({r['share_mode']:.0%} vs {r['share_all']:.0%})"
                                                            for r in terms[:SENTENCE_ITEMS + 2]))
        if image is not None and image.get("region"):
            parts.append(f"{'brighter' if image['difference'] > 0 else 'darker'} {image['region']} than the other {image['class']}s (mean images)")
        sentence = "; ".join(parts)
        evidence = dict(mode.evidence) | {"description": {"sentence": sentence, "metadata": found, "words": terms, "image": image,
                                                          "tried": tried, "alpha": alpha}}
        summary = f"{mode.summary}; {sentence}" if sentence else mode.summary
        described.append(replace(mode, summary=summary, evidence=evidence))
    return described


def _strongest(items: list[dict[str, Any]], cut: float) -> list[dict[str, Any]]:
    """The items more common in the mode than overall at p <= cut, smallest p first, at most TABLE_ROWS."""
    return sorted((r for r in items if r["p_value"] <= cut and r["lift"] > 1), key=lambda r: (r["p_value"], -r["lift"]))[:TABLE_ROWS]


def _row(*, inside: int, size: int, total: int, n: int, p: float, **what: str) -> dict[str, Any]:
    return what | {"in_mode": int(inside), "share_mode": float(inside / size), "share_all": float(total / n),
                   "lift": float(inside * n / (size * total)), "p_value": float(p)}


def mean_images(mode: FailureMode, outputs: Outputs, previews: dict[int, Any]) -> tuple[np.ndarray, np.ndarray, str] | None:
    """(the mean image of the mode's members of its commonest class, the mean image of that
    class's other rows, the class name) over the rows the run keeps pictures of, as float
    arrays in [0, 1]; None without pictures of both."""
    members = np.asarray(mode.members)
    if not len(members) or not previews or not outputs.has_classes:
        return None
    label = int(np.bincount(outputs.labels[members]).argmax())
    own = [i for i in members.tolist() if outputs.labels[i] == label and isinstance(previews.get(i), np.ndarray)]
    inside = set(members.tolist())
    rest = [i for i, p in previews.items() if isinstance(p, np.ndarray) and outputs.labels[i] == label and i not in inside]
    if not own or not rest:
        return None
    shapes = {previews[i].shape for i in own + rest}
    if len(shapes) != 1:
        return None
    mean = lambda rows: np.mean([previews[i] for i in rows], axis=0, dtype=np.float64) / 255.0  # noqa: E731
    return mean(own), mean(rest), outputs.class_names[label]


def _image_contrast(mode: FailureMode, outputs: Outputs, previews: dict[int, Any]) -> dict[str, Any] | None:
    """Where, on a 3x3 grid, the mode's mean image differs most from its class's (`mean_images`)."""
    means = mean_images(mode, outputs, previews)
    if means is None:
        return None
    own, rest, name = means
    diff = own - rest
    if diff.ndim == 3:
        diff = diff.mean(axis=2)
    h, w = diff.shape
    cells = [diff[h * r // 3: h * (r + 1) // 3, w * c // 3: w * (c + 1) // 3].mean() for r in range(3) for c in range(3)]
    k = int(np.argmax(np.abs(cells)))
    return {"class": name, "region": GRID[k] if abs(cells[k]) >= MIN_CONTRAST else None, "difference": float(cells[k])}
