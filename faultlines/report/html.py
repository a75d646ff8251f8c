"""Render a ScanResult as one self-contained HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import Environment, PackageLoader, select_autoescape

from faultlines.atomic import write_file
from faultlines.data.sources import to_image_uint8
from faultlines.report import figures
from faultlines.types import FailureMode, ScanResult

_env = Environment(loader=PackageLoader("faultlines.report", "templates"), autoescape=select_autoescape(default=True))

#: Metrics shown first, in this order, when a mode has them.
KEY_METRICS = ("size", "error_rate", "error_lift", "mean_loss", "weighted_loss", "purity")


def _generated_examples(result: ScanResult, mode: FailureMode) -> list[dict[str, Any]]:
    table, names = result.tables.get("generated"), result.outputs.class_names
    if table is None:
        return []
    examples = []
    for i in mode.evidence.get("typical", []):
        pred = names[int(table["pred"][i])]
        examples.append({"index": i, "label": mode.evidence.get("label", "?"), "pred": pred, "loss": float("nan"),
                         "wrong": pred != mode.evidence.get("label"), "text": None,
                         "image": figures.image_uri(to_image_uint8(table["images"][i]))})
    return examples


def _examples(result: ScanResult, mode: FailureMode) -> list[dict[str, Any]]:
    out, names = result.outputs, result.outputs.class_names
    if mode.source == "generated":
        return _generated_examples(result, mode)
    if mode.source != out.source:
        return []
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


def _perturb(result: ScanResult) -> dict[str, Any] | None:
    """The spurious-region section: heat maps, swap tests, swap examples, global perturbations."""
    analysis, maps = result.analyses.get("perturb"), result.tables.get("perturb_maps")
    if analysis is None or maps is None:
        return None
    names = result.outputs.class_names
    titles = ["all images"] + [f"class {names[c]}" for c in maps["classes"][1:]]
    flagged = [m for m in result.modes if m.method == "perturb"]
    masks = [np.array(m.evidence["mask"], bool) for m in flagged]
    swaps, pairs = result.tables.get("perturb_swaps"), []
    if swaps is not None:
        for i in range(len(swaps["region"])):
            pairs.append({"region": flagged[int(swaps["region"][i])].id if int(swaps["region"][i]) < len(flagged) else "?",
                          "before": figures.image_uri(to_image_uint8(swaps["before"][i])),
                          "after": figures.image_uri(to_image_uint8(swaps["after"][i])),
                          "pred_before": names[int(swaps["pred_before"][i])], "pred_after": names[int(swaps["pred_after"][i])]})
    return {"heatmaps": figures.sensitivity_maps(maps["maps"], titles, masks), "analysis": analysis,
            "flagged": flagged, "pairs": pairs}


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
                "examples": _examples(result, mode),
                "confusions": mode.evidence.get("confusions", []),
                "label_counts": list(mode.evidence.get("label_counts", {}).items())[:6],
            }
        )
    vae = result.tables.get("vae")
    vae_grids = None
    if vae is not None:
        vae_grids = {name: figures.image_uri(figures.tile(vae[key])) for name, key in
                     (("inputs", "originals"), ("reconstructions", "reconstructions"), ("samples from the prior", "samples"))}
    density = result.analyses.get("density")
    return _env.get_template("report.html.j2").render(
        perturb=_perturb(result),
        xbl=result.repairs.get("xbl"),
        density=density,
        density_plot=figures.density_histograms(density["log_density"]) if density else None,
        fix=result.repairs.get("defuse"),
        vae_grids=vae_grids,
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
    return write_file(path, render(result))
