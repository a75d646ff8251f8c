"""`scan`: probe a model on data, run the finders, and gather what the report needs."""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Any, Protocol

from faultlines.data.sources import EmbeddingTable, Source, Splits
from faultlines.errors import ModelError
from faultlines.find.spotlight import Spotlight
from faultlines.model import Classifier
from faultlines.probe import probe
from faultlines.types import FailureMode, Outputs, ScanResult


class Finder(Protocol):
    """What `scan` needs of a finder: its settings, and failure modes from outputs.

    A finder that must run the model itself (Defuse, PerturbationProbe) sets
    `needs_model = True`; `scan` then calls `find(clf, data)` and stores the finder's
    `tables_` (arrays) and `analyses_` (JSON-able figures) with the run.
    """

    def get_params(self) -> dict[str, Any]: ...

    def find(self, outputs: Outputs) -> list[FailureMode]: ...


def versions() -> dict[str, str]:
    """Versions of Python and of the packages a result depends on, for the run record."""
    found = {"python": platform.python_version()}
    for name in ("faultlines", "torch", "numpy", "scikit-learn", "scipy"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def scan(
    clf: Classifier | None,
    data: Source | EmbeddingTable | Splits,
    finders: list[Finder] | None = None,
    *,
    batch_size: int = 256,
    quiet: bool = False,
    seed: int = 0,
) -> ScanResult:
    """Probe `clf` on `data` (the test split of `Splits`) and run every finder on the outputs.

    Args:
        clf: the classifier; None when `data` is an EmbeddingTable.
        data: what to scan.
        finders: default `[Spotlight(seed=seed)]`.
        seed: passed to the default finder and recorded.

    Returns:
        ScanResult with the outputs, the modes of every finder in order, the config, and
        previews (images or texts) of each mode's typical members.
    """
    if isinstance(data, Splits):
        data = data.test
    outputs = probe(clf, data, batch_size=batch_size, quiet=quiet)
    finders = finders if finders is not None else [Spotlight(seed=seed, quiet=quiet)]
    modes: list[FailureMode] = []
    tables: dict[str, dict] = {}
    analyses: dict[str, dict] = {}
    for finder in finders:
        if getattr(finder, "needs_model", False):
            if clf is None or not isinstance(data, Source):
                raise ModelError(f"{type(finder).__name__} runs the model on the inputs: give a model and input data")
            modes += finder.find(clf, data)
            tables |= getattr(finder, "tables_", {})
            analyses |= getattr(finder, "analyses_", {})
        else:
            modes += finder.find(outputs)
    shown = sorted({i for mode in modes if mode.source == outputs.source for i in mode.evidence.get("typical", [])})
    config = {
        "data": {"name": data.name, "samples": outputs.n, "classes": list(outputs.class_names)},
        "model": None
        if clf is None
        else {"class": type(clf.module).__name__, "embedding_layer": clf.layer_name},
        "finders": [{"name": type(f).__name__, **f.get_params()} for f in finders],
        "seed": seed,
        "versions": versions(),
    }
    return ScanResult(outputs, modes, config, previews=data.preview(shown), texts=data.texts, tables=tables, analyses=analyses)
