"""The density analysis: FeatureDensity's flows and mixture and the baseline detectors on the
model's mistakes and, for an image model, on adversarial and out-of-distribution inputs, as
AUROC/AUPR/FPR tables, with the hypothesis test and the log-densities the report plots.
Run by `FeatureDensity.find` (for the report) and by benchmarks/density.py."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from faultlines.detect.attacks import adversarial
from faultlines.detect.baselines import BASELINES
from faultlines.detect.base import Detector
from faultlines.detect.metrics import detection_metrics
from faultlines.detect.ood import ood_images
from faultlines.data.sources import ArraySource, Source
from faultlines.model import Classifier
from faultlines.probe import probe
from faultlines.types import Outputs

ATTACKS = (("fgsm", 0.1), ("pgd", 0.05), ("pgd", 0.1), ("pgd", 0.2))
#: The density models compared, by the name the tables give them: FeatureDensity settings.
DENSITIES = {"flow": {"model": "flow", "conditional": False}, "class-flow": {"model": "flow", "conditional": True},
             "gmm": {"model": "gmm", "conditional": False}}


def join(a: Outputs, b: Outputs) -> Outputs:
    """Two tables of outputs, one after the other."""
    cat = lambda f: None if getattr(a, f) is None or getattr(b, f) is None else np.concatenate([getattr(a, f), getattr(b, f)])  # noqa: E731
    return Outputs(cat("labels"), cat("preds"), cat("probs"), cat("losses"), cat("embeddings"), a.class_names, "joined", cat("logits"))


def _is(density, settings: dict) -> bool:
    return all(getattr(density, k) == v for k, v in settings.items())


def fit_detectors(density, train: Outputs, val: Outputs | None, quiet: bool = True) -> tuple[dict[str, Detector], dict[str, float]]:
    """Every density model of DENSITIES and every baseline, fitted on `train` (the flows
    early-stop and calibrate on `val`); and each density model's fitting seconds.

    `density` is a FeatureDensity: it takes its own place in the table (fitted first if it is
    not), and the other density models are its clones with the other settings.
    """
    fitted: dict[str, Detector] = {}
    for name, settings in DENSITIES.items():
        detector = density if _is(density, settings) else density.clone(**settings, quiet=quiet)
        if not hasattr(detector, "n_features_in_"):
            detector.fit(train, val)
        fitted[name] = detector
    seconds = {name: float(d.fit_seconds_) for name, d in fitted.items() if name != "gmm"}
    for baseline in BASELINES:
        fitted[baseline.name] = baseline().fit(train)
    return fitted, seconds


def failure_sources(clf: Classifier, test: Source, seed: int = 0) -> dict[str, Outputs]:
    """Outputs of FGSM and PGD attacks on the test images, and of OOD image sets."""
    rng = np.random.default_rng(seed)
    sources = {}
    for method, eps in ATTACKS:
        sources[f"{method.upper()} eps={eps:g}"] = probe(clf, adversarial(clf, test, method, eps), quiet=True)
    clean, _ = test.arrays()
    for name, x in ood_images(clean, rng).items():
        sources[name] = probe(clf, ArraySource(x, np.zeros(len(x), np.int64), test.class_names, name=name), quiet=True)
    return sources


def analyse(density, outputs: Outputs, train: Outputs, val: Outputs | None, clf: Classifier | None = None,
            data: Source | None = None, compare: bool = True, seed: int = 0, quiet: bool = True,
            peers: dict[str, Callable[[Outputs], np.ndarray]] | None = None) -> dict:
    """Score `density` (a fitted FeatureDensity) and, with `compare`, every other detector on
    the mistakes in `outputs` and, given the image model `clf` and its test images `data`, on
    attacks and OOD images made from them.

    Returns a JSON-able dict: "metrics" (task -> detector -> auroc/aupr/fpr95), "test" (the
    Mann-Whitney and KS result, when `outputs` holds mistakes and correct samples),
    "log_density" (group -> log-densities: correct, misclassified, and with images
    adversarial (PGD eps=0.1) and OOD (uniform noise)), "seconds" (each flow's fitting time).
    The class-agnostic "flow" gives the test and the log-densities, as in the paper (without
    `compare`, `density` itself gives them). `peers` adds other detectors' score functions
    (fitted already; higher = more suspect) to the tables, by name.
    """
    if compare:
        fitted, seconds = fit_detectors(density, train, val, quiet)
    else:
        own = next(n for n, settings in DENSITIES.items() if _is(density, settings))
        fitted, seconds = {own: density}, {own: float(density.fit_seconds_)}
    fitted = {name: d for name, d in fitted.items() if not (d.needs_logits and outputs.logits is None)}
    wrong = ~outputs.correct
    tasks = {"misclassified vs correct": (outputs, wrong)} if 0 < wrong.sum() < outputs.n else {}
    sources = failure_sources(clf, data, seed) if clf is not None and data is not None else {}
    for name, other in sources.items():
        tasks[f"{name} vs clean"] = (join(outputs, other), np.r_[np.zeros(outputs.n, bool), np.ones(other.n, bool)])
    scorers = {name: d.score for name, d in fitted.items()} | (peers or {})
    metrics = {task: {name: detection_metrics(score(o), positive) for name, score in scorers.items()} for task, (o, positive) in tasks.items()}
    flow = fitted.get("flow", density)
    logp = flow.log_density(outputs)
    groups = {"correct": logp[~wrong], "misclassified": logp[wrong]}
    if sources:
        groups |= {"adversarial (PGD eps=0.1)": flow.log_density(sources["PGD eps=0.1"]),
                   "OOD (uniform noise)": flow.log_density(sources["uniform-noise"])}
    found = {"metrics": metrics, "seconds": seconds, "log_density": {k: [float(v) for v in vals] for k, vals in groups.items()}}
    if "misclassified vs correct" in tasks:
        found["test"] = flow.test(outputs)
    return found
