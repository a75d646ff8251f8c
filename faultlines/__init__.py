"""faultlines: find, explain and fix the systematic errors of trained classifiers.

    import faultlines as fl
    ds = fl.data.digits(seed=0)
    clf = fl.Classifier(module)                       # embeddings: input of the last nn.Linear
    out = fl.probe(clf, ds.test)                      # Outputs: labels, probs, losses, embeddings
    modes = fl.Spotlight(size=0.05, n_spotlights=5).find(out)
    result = fl.scan(clf, ds, finders="all"); fl.save_run(result, "runs/a")

The names below are imported on first use (PEP 562), so that `import faultlines` and the
command line start at once and do not load torch before a command needs it.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType as _ModuleType
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_EXPORTS = {
    "KNN": "faultlines.detect",
    "MSP": "faultlines.detect",
    "Detector": "faultlines.detect",
    "Energy": "faultlines.detect",
    "FeatureDensity": "faultlines.detect",
    "Mahalanobis": "faultlines.detect",
    "TrustScore": "faultlines.detect",
    "Defuse": "faultlines.find",
    "ErrorMixture": "faultlines.find",
    "Finder": "faultlines.find",
    "PerturbationProbe": "faultlines.find",
    "Spotlight": "faultlines.find",
    "VAE": "faultlines.generative",
    "Classifier": "faultlines.model",
    "Estimator": "faultlines.model",
    "Preprocess": "faultlines.preprocess",
    "probe": "faultlines.probe",
    "report": "faultlines.report",
    "scan": "faultlines.scan",
    "load_run": "faultlines.store",
    "save_run": "faultlines.store",
    "FailureMode": "faultlines.types",
    "Outputs": "faultlines.types",
    "ScanResult": "faultlines.types",
}
_SUBMODULES = ("data", "errors", "train")

__all__ = sorted([*_EXPORTS, *_SUBMODULES])


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"faultlines.{name}")
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'faultlines' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


class _Package(_ModuleType):
    """`faultlines.probe`, `.scan` and `.report` are functions that share their names with
    the submodules defining them: importing such a submodule must not replace the function."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _EXPORTS and isinstance(value, _ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


if TYPE_CHECKING:
    from faultlines import data, errors, train
    from faultlines.detect import (
        KNN,
        MSP,
        Detector,
        Energy,
        FeatureDensity,
        Mahalanobis,
        TrustScore,
    )
    from faultlines.find import (
        Defuse,
        ErrorMixture,
        Finder,
        PerturbationProbe,
        Spotlight,
    )
    from faultlines.generative import VAE
    from faultlines.model import Classifier, Estimator
    from faultlines.probe import probe
    from faultlines.report import report
    from faultlines.scan import scan
    from faultlines.store import load_run, save_run
    from faultlines.types import FailureMode, Outputs, ScanResult
