"""The report's per-finder sections, registered under the finder's name.

A finder that leaves more than modes behind (its `analyses_` and `tables_`, and the repairs
made from its modes) has a section here: a function from the ScanResult to the section's
context (None when the run holds nothing for it), rendered by the template
`templates/sections/<name>.html.j2`. The report knows finders only by these names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from faultlines.images import tile, to_image_uint8
from faultlines.report import figures
from faultlines.types import ScanResult

#: What the navigation bar calls each section.
TITLES = {"density": "Feature density", "perturb": "Spurious regions", "defuse": "Defuse"}

#: name -> the section's context, in the order the page shows them.
SECTIONS: dict[str, Callable[[ScanResult], dict[str, Any] | None]] = {}


def section(name: str):
    """Register a section builder under a finder's name."""

    def register(build: Callable[[ScanResult], dict[str, Any] | None]):
        SECTIONS[name] = build
        return build

    return register


def template(name: str) -> str:
    """The template of the section registered under `name`, relative to the report's templates."""
    return f"sections/{name}.html.j2"


def contexts(result: ScanResult) -> list[dict[str, Any]]:
    """The sections this run has: {"name", "template", "context"} each, in page order."""
    found = []
    for name, build in SECTIONS.items():
        context = build(result)
        if context is not None:
            found.append({"name": name, "title": TITLES.get(name, name), "template": template(name), "context": context})
    return found


@section("density")
def density(result: ScanResult) -> dict[str, Any] | None:
    analysis = result.analyses.get("density")
    if analysis is None:
        return None
    groups = {k: v for k, v in analysis["log_density"].items() if len(v)}
    return {"analysis": analysis, "plot": figures.density_histograms(groups) if groups else None,
            "detectors": list(next(iter(analysis["metrics"].values()), {}))}


@section("perturb")
def perturb(result: ScanResult) -> dict[str, Any] | None:
    """Spurious regions: heat maps, swap tests, swap examples, global perturbations; and XBL."""
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
            region = int(swaps["region"][i])
            pairs.append({"region": flagged[region].id if region < len(flagged) else "?",
                          "before": figures.image_uri(to_image_uint8(swaps["before"][i])),
                          "after": figures.image_uri(to_image_uint8(swaps["after"][i])),
                          "pred_before": names[int(swaps["pred_before"][i])], "pred_after": names[int(swaps["pred_after"][i])]})
    return {"heatmaps": figures.sensitivity_maps(maps["maps"], titles, masks), "analysis": analysis,
            "flagged": flagged, "pairs": pairs, "xbl": result.repairs.get("xbl")}


@section("defuse")
def defuse(result: ScanResult) -> dict[str, Any] | None:
    """The VAE Defuse searched, and the correction made from its labelled regions."""
    vae, fix = result.tables.get("vae"), result.repairs.get("defuse")
    if vae is None and fix is None:
        return None
    grids = {}
    if vae is not None:
        grids = {name: figures.image_uri(tile(vae[key])) for name, key in
                 (("inputs", "originals"), ("reconstructions", "reconstructions"), ("samples from the prior", "samples"))}
    return {"vae_grids": grids, "fix": fix}
