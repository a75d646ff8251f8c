"""faultlines: find, explain and fix the systematic errors of trained classifiers.

    import faultlines as fl
    ds = fl.data.digits(seed=0)
    clf = fl.Classifier(module)                       # embeddings: input of the last nn.Linear
    out = fl.probe(clf, ds.test)                      # Outputs: labels, probs, losses, embeddings
    modes = fl.Spotlight(size=0.05, n_spotlights=5).find(out)
    result = fl.scan(clf, ds, finders="all"); fl.save_run(result, "runs/a")
"""

from faultlines import data, errors, train
from faultlines.detect import KNN, MSP, Detector, Energy, FeatureDensity, Mahalanobis, TrustScore
from faultlines.find import Defuse, ErrorMixture, Finder, PerturbationProbe, Spotlight
from faultlines.generative import VAE
from faultlines.model import Classifier
from faultlines.probe import probe
from faultlines.report import report
from faultlines.scan import scan
from faultlines.store import load_run, save_run
from faultlines.types import FailureMode, Outputs, ScanResult

__version__ = "0.1.0"

__all__ = [
    "KNN",
    "MSP",
    "VAE",
    "Classifier",
    "Defuse",
    "Detector",
    "Energy",
    "ErrorMixture",
    "FailureMode",
    "FeatureDensity",
    "Finder",
    "Mahalanobis",
    "Outputs",
    "PerturbationProbe",
    "ScanResult",
    "Spotlight",
    "TrustScore",
    "data",
    "errors",
    "load_run",
    "probe",
    "report",
    "save_run",
    "scan",
    "train",
]
