"""Render a ScanResult as one self-contained HTML page."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import Environment, PackageLoader, select_autoescape

from faultlines.report import figures
from faultlines.types import FailureMode, ScanResult

_env = Environment(loader=PackageLoader("faultlines.report", "templates"), autoescape=select_autoescape(default=True))

#: Metrics shown first, in this order, when a mode has them.
KEY_METRICS = ("size", "error_rate", "error_lift", "mean_loss", "weighted_loss", "purity")


def _examples(result: ScanResult, mode: FailureMode) -> list[dict[str, Any]]:
    out, names = result.outputs, result.outputs.class_names
    examples = []
    for i in mode.evidence.get("typical", []):
        preview = result.previews.get(i)
        examples.append(
            {
                "index": i,
                "label": names[out.labels[i]],
                "pred": names[out.preds[i]],
                "loss": float(out.losses[i]),
                "wrong": bool(out.labels[i] != out.preds[i]),
                "image": figures.image_uri(preview) if isinstance(preview, np.ndarray) else None,
                "text": preview if isinstance(preview, str) else None,
            }
        )
    return examples


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.0f}" if value.is_integer() and abs(value) >= 10 else f"{value:.3g}"
    return str(value)


def render(result: ScanResult) -> str:
    """The report page for `result`, as an HTML string."""
    out = result.outputs
    modes = []
    for mode in result.modes:
        ordered = [k for k in KEY_METRICS if k in mode.metrics] + sorted(k for k in mode.metrics if k not in KEY_METRICS)
        modes.append(
            {
                "mode": mode,
                "metrics": [(k, _fmt(mode.metrics[k])) for k in ordered],
                "examples": _examples(result, mode) if mode.source == out.source else [],
                "confusions": mode.evidence.get("confusions", []),
                "label_counts": list(mode.evidence.get("label_counts", {}).items())[:6],
            }
        )
    return _env.get_template("report.html.j2").render(
        config=result.config,
        overview=out.overview(),
        modes=modes,
        confusion=figures.confusion_matrix(out),
        embedding_map=figures.embedding_map(out, result.modes, seed=int(result.config.get("seed", 0))),
        source=out.source,
    )


def report(result: ScanResult, path: str | Path) -> Path:
    """Write the report for `result` to `path` (atomically) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(render(result))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
