"""Render a ScanResult as one self-contained HTML page: the overview, the embedding map, one
section per finder that left analyses behind (`faultlines.report.sections`), one card per
failure mode, and how the run was made."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import Environment, PackageLoader, TemplateNotFound, select_autoescape

from faultlines.atomic import disk_error, write_file
from faultlines.descriptions import mean_images
from faultlines.errors import InstallError
from faultlines.images import to_image_uint8
from faultlines.report import figures, sections
from faultlines.significance import ranked, significant
from faultlines.types import FailureMode, ScanResult

_env = Environment(loader=PackageLoader("faultlines.report", "templates"), autoescape=select_autoescape(default=True))
#: The page's own template; each finder section's is `sections.template(name)`.
PAGE_TEMPLATE = "report.html.j2"


def _missing(name: str) -> InstallError:
    return InstallError(f"the report template {name} is missing from the installed faultlines package "
                        f"({Path(__file__).parent / 'templates'}); reinstall faultlines")


def check_templates() -> None:
    """Load the page's template and every finder section's now, so that a broken install is one
    line before any model runs, not after the work (`faultlines scan` and `demo` call it first).
    jinja2's TemplateNotFound is an OSError, which a run's writer would report as a disk that
    cannot be written: it becomes an InstallError naming the template."""
    for name in (PAGE_TEMPLATE, *(sections.template(s) for s in sections.SECTIONS)):
        try:
            _env.get_template(name)
        except TemplateNotFound as e:
            raise _missing(name) from e


#: Members of one mode listed in its table at most, and of all modes together: the page stays
#: usable (and a few MB) however large the run; the page says when a list is cut.
MEMBER_ROWS = 2000
PAGE_MEMBER_ROWS = 20_000
#: Metadata columns a member table shows, at most (samples.parquet keeps them all).
META_COLUMNS = 8
#: Thumbnails the map can show on hover, at most.
MAP_THUMBS = 5000

#: Metrics shown first, in this order, when a mode has them.
KEY_METRICS = ("q_value", "p_value", "tested_size", "tested_errors", "tested_error_rate", "error_low", "error_high", "tested_lift",
               "size", "error_rate", "error_lift", "mean_loss", "weighted_loss", "purity")


def _example(index: int, label: str, pred: str, loss: float, preview: Any) -> dict[str, Any]:
    return {"index": index, "label": label, "pred": pred, "loss": loss, "wrong": label != pred,
            "image": figures.image_uri(preview) if isinstance(preview, np.ndarray) else None,
            "text": preview if isinstance(preview, str) else None}


def outcome_names(out, i: int) -> tuple[str, str]:
    """Row i's (label, prediction) as the report shows them; for outputs without classes
    ("passes", "passes" or "fails"), so that a failing row reads as wrong as a misread one does."""
    if out.has_classes:
        return out.class_names[out.labels[i]], out.class_names[out.preds[i]]
    return "passes", "fails" if out.failures[i] else "passes"


def _examples(result: ScanResult, mode: FailureMode) -> list[dict[str, Any]]:
    """The mode's typical members, from the scanned outputs or from the table the mode indexes
    (a table with "images", "pred" and, where known, "label" columns)."""
    out, names = result.outputs, result.outputs.class_names
    typical = mode.evidence.get("typical", [])
    if mode.source == out.source:
        return [_example(i, *outcome_names(out, i), float(out.losses[i]), result.previews.get(i)) for i in typical]
    table = result.tables.get(mode.source)
    if table is None or "images" not in table or "pred" not in table:
        return []
    label = lambda i: names[int(table["label"][i])] if "label" in table else "?"  # noqa: E731
    return [_example(i, label(i), names[int(table["pred"][i])], float("nan"), to_image_uint8(table["images"][i])) for i in typical]


def _shown_metadata(result: ScanResult) -> list[str]:
    """The metadata columns the member tables show: those of numbers, strings, booleans or dates, at most META_COLUMNS."""
    import pyarrow as pa

    if result.metadata is None:
        return []
    plain = lambda t: pa.types.is_primitive(t) or pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t)  # noqa: E731
    return [f.name for f in result.metadata.schema if plain(f.type)][:META_COLUMNS]


def _members(result: ScanResult, mode: FailureMode, budget: int, meta: list[str]) -> list[dict[str, Any]]:
    """The rows of the mode's member table (most typical first, at most `budget`): row, label,
    prediction, loss, weight, the metadata columns `meta`, and a thumbnail or text where the run has one."""
    out = result.outputs
    if mode.source != out.source:
        return []
    rows = mode.members[:budget]
    weights = mode.weights[:budget] if mode.weights is not None else [None] * len(rows)
    facts = {c: result.metadata.column(c).take(rows).to_pylist() for c in meta}
    listed = []
    for k, (i, w) in enumerate(zip(rows.tolist(), weights)):
        preview = result.previews.get(i)
        label, pred = outcome_names(out, i)
        listed.append({"row": i, "label": label, "pred": pred, "loss": round(float(out.losses[i]), 4),
                       "weight": None if w is None else round(float(w), 4),
                       "meta": [None if facts[c][k] is None else str(facts[c][k]) for c in meta],
                       "img": figures.image_uri(preview) if isinstance(preview, np.ndarray) else None,
                       "text": (result.texts[i] if result.texts is not None else preview if isinstance(preview, str) else None)})
    return listed


def _description(result: ScanResult, mode: FailureMode) -> dict[str, Any] | None:
    """The mode's description (`faultlines.descriptions`) as the card shows it, with its mean
    image against its class's where the run keeps pictures."""
    found = mode.evidence.get("description")
    try:  # as the card reads it; a run folder edited by hand may hold anything here
        rows = lambda key, name: [{name: str(r[name]), **{k: float(r[k]) for k in ("share_mode", "share_all", "lift", "p_value")}}  # noqa: E731
                                  | ({"column": str(r["column"])} if key == "metadata" else {}) for r in found.get(key) or []]
        found = {"metadata": rows("metadata", "value"), "words": rows("words", "word"),
                 "tried": int(found.get("tried") or 0), "alpha": float(found.get("alpha") or 0.05)}
    except (AttributeError, TypeError, ValueError, KeyError):
        return None
    means = mean_images(mode, result.outputs, result.previews) if mode.source == result.outputs.source else None
    images = None
    if means is not None:
        own, rest, name = means
        to8 = lambda a: np.clip(a * 255, 0, 255).astype(np.uint8)  # noqa: E731
        diff = own - rest
        shade = np.clip(0.5 + (diff.mean(axis=2) if diff.ndim == 3 else diff), 0, 1)  # grey: no difference
        images = {"mode": figures.image_uri(to8(own)), "rest": figures.image_uri(to8(rest)), "diff": figures.image_uri(to8(shade)), "class": name}
    return found | {"images": images}


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.0f}" if value.is_integer() and abs(value) >= 10 else f"{value:.3g}"
    return str(value)


def _page_config(config: dict[str, Any]) -> dict[str, Any]:
    """The run's config as the page reads it: entries of another type than a run writes (a run
    folder edited by hand) are left out rather than break the page."""
    kinds = {"data": dict, "model": dict, "finders": list, "skipped": dict, "versions": dict, "confirm": dict}
    page = {k: v for k, v in config.items() if k not in kinds or isinstance(v, kinds[k])}
    page["finders"] = [f for f in page.get("finders", []) if isinstance(f, dict)]
    return page


def render(result: ScanResult) -> str:
    """The report page for `result`, as an HTML string."""
    out = result.outputs
    modes = []
    budget = PAGE_MEMBER_ROWS
    meta = _shown_metadata(result)
    config = _page_config(result.config)
    for mode in ranked(result.modes):
        listed = _members(result, mode, min(MEMBER_ROWS, budget), meta)
        budget -= len(listed)
        ordered = [k for k in KEY_METRICS if k in mode.metrics] + sorted(k for k in mode.metrics if k not in KEY_METRICS)
        modes.append(
            {
                "mode": mode,
                "significant": significant(mode),
                "sentence": mode.evidence.get("significance", {}).get("sentence", ""),
                "metrics": [(k, _fmt(mode.metrics[k])) for k in ordered],
                "examples": _examples(result, mode),
                "confusions": mode.evidence.get("confusions", []),
                "label_counts": list(mode.evidence.get("label_counts", {}).items())[:6],
                "row": mode.glance(),
                "description": _description(result, mode),
                "members": listed,
                "classes": sorted({r["label"] for r in listed}),
            }
        )
    seed = int(result.config.get("seed", 0))
    interactive = figures.interactive_map(out, ranked(result.modes), result.texts, seed=seed)
    context = dict(
        sections=sections.contexts(result),
        config=config,
        confirm=config.get("confirm"),
        overview=out.overview(),
        modes=modes,
        confusion=figures.confusion_matrix(out) if out.has_classes else figures.loss_histogram(out),
        has_classes=out.has_classes,
        failure_kind=out.failure_kind,
        interactive_map=interactive,
        map_thumbs={i: figures.image_uri(p) for i, p in list(result.previews.items())[:MAP_THUMBS] if isinstance(p, np.ndarray)}
        if interactive else {},
        embedding_map=None if interactive else figures.embedding_map(out, result.modes, seed=seed),
        source=out.source,
        member_rows=MEMBER_ROWS,
        meta_columns=meta,
    )
    try:
        return _env.get_template(PAGE_TEMPLATE).render(**context)
    except TemplateNotFound as e:  # a section's template, included by the page
        raise _missing(e.name) from e


def report(result: ScanResult, path: str | Path) -> Path:
    """Write the report for `result` to `path` (atomically) and return the path."""
    path = Path(path)
    page = render(result)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise disk_error(path, e) from e
    return write_file(path, page)
