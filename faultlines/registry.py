"""Every finder of faultlines by name: the one registry the CLI, `scan`, the bench and the run
record use. (It sits above `find/` and `detect/`, not in `find/base.py`: FeatureDensity, a
finder and a detector, lives in `detect/`, which imports the Finder base.)"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from faultlines.detect.density import FeatureDensity
from faultlines.errors import SettingsError
from faultlines.find.base import Finder
from faultlines.find.defuse import Defuse
from faultlines.find.error_mixture import ErrorMixture
from faultlines.find.perturb import PerturbationProbe
from faultlines.find.spotlight import Spotlight

#: name -> finder class, in the order `all` runs them.
FINDERS: dict[str, type[Finder]] = {cls.name: cls for cls in (Spotlight, ErrorMixture, Defuse, FeatureDensity, PerturbationProbe)}


def finder_names(spec: str | Sequence[str]) -> list[str]:
    """Finder names from "all", "spotlight,defuse" or a list; a SettingsError for unknown ones."""
    names = [n.strip() for n in (spec.split(",") if isinstance(spec, str) else spec) if n.strip()]
    if names == ["all"]:
        return list(FINDERS)
    unknown = [n for n in names if n not in FINDERS]
    if unknown or not names:
        raise SettingsError(f"unknown finders {unknown}; choose from {', '.join(FINDERS)}, or all")
    return list(dict.fromkeys(names))


def build(spec: str | Sequence[str], **settings: Any) -> list[Finder]:
    """Finders by name ("all", "spotlight,defuse", or a list), each given the `settings` it takes.

    A setting goes to every named finder that has a parameter of that name (seed and quiet to
    all of them, size only to Spotlight...). Settings are checked here, before any work.
    """
    return [FINDERS[n](**{k: v for k, v in settings.items() if k in FINDERS[n].param_names()}) for n in finder_names(spec)]
