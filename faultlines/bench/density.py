"""The density analysis: FeatureDensity and the baseline detectors on mistakes, adversarial
inputs and out-of-distribution inputs of one model, as AUROC/AUPR/FPR tables. Used by
`faultlines scan --density` (for the report) and by benchmarks/density.py."""

from __future__ import annotations

import time

import numpy as np

from faultlines.bench.attacks import adversarial
from faultlines.bench.detectors import BASELINES
from faultlines.bench.metrics import detection_metrics
from faultlines.bench.planted import ood_images
from faultlines.data.sources import ArraySource
from faultlines.find.density import FeatureDensity
from faultlines.model import Classifier
from faultlines.probe import probe
from faultlines.types import Outputs

ATTACKS = (("fgsm", 0.1), ("pgd", 0.05), ("pgd", 0.1), ("pgd", 0.2))


def join(a: Outputs, b: Outputs) -> Outputs:
    """Two tables of outputs, one after the other."""
    cat = lambda f: None if getattr(a, f) is None or getattr(b, f) is None else np.concatenate([getattr(a, f), getattr(b, f)])  # noqa: E731
    return Outputs(cat("labels"), cat("preds"), cat("probs"), cat("losses"), cat("embeddings"), a.class_names, "joined", cat("logits"))


def fit_detectors(train: Outputs, val: Outputs, seed: int = 0, quiet: bool = True) -> tuple[dict, dict[str, float]]:
    """The flow, the class-conditional flow, the mixture and every baseline fitted on `train`;
    and the two flows' fitting seconds."""
    fitted, seconds = {}, {}
    for name, conditional in (("flow", False), ("class-flow", True)):
        start = time.perf_counter()
        fitted[name] = FeatureDensity(conditional=conditional, seed=seed, quiet=quiet).fit(train, val)
        seconds[name] = time.perf_counter() - start
    fitted["gmm"] = FeatureDensity(model="gmm", seed=seed).fit(train, val)
    for baseline in BASELINES:
        fitted[baseline.name] = baseline().fit(train)
    return fitted, seconds


def failure_sources(clf: Classifier, test: ArraySource, seed: int = 0) -> dict[str, Outputs]:
    """Outputs of the clean test images, their FGSM and PGD attacks, and OOD image sets."""
    rng = np.random.default_rng(seed)
    sources = {"clean": probe(clf, test, quiet=True)}
    for method, eps in ATTACKS:
        sources[f"{method.upper()} eps={eps:g}"] = probe(clf, adversarial(clf, test, method, eps), quiet=True)
    for name, x in ood_images(test.x, rng).items():
        sources[name] = probe(clf, ArraySource(x, np.zeros(len(x), np.int64), test.class_names, name=name), quiet=True)
    return sources


def analyse(clf: Classifier, train: ArraySource, val: ArraySource, test: ArraySource, seed: int = 0, quiet: bool = True) -> dict:
    """Fit every detector on `train` and score it on every failure source of `test`.

    Returns a JSON-able dict: "metrics" (task -> detector -> auroc/aupr/fpr95), "test" (the
    Mann-Whitney and KS result), "log_density" (group -> the flow's log-densities:
    correct, misclassified, adversarial (PGD eps=0.1), OOD (uniform noise)), "seconds" (each
    flow's fitting time).
    """
    fitted, seconds = fit_detectors(probe(clf, train, quiet=True), probe(clf, val, quiet=True), seed, quiet)
    sources = failure_sources(clf, test, seed)
    clean = sources.pop("clean")
    tasks = {"misclassified vs correct": (clean, ~clean.correct)}
    for name, outputs in sources.items():
        tasks[f"{name} vs clean"] = (join(clean, outputs), np.r_[np.zeros(clean.n, bool), np.ones(outputs.n, bool)])
    metrics = {task: {name: detection_metrics(d.score(o), positive) for name, d in fitted.items()} for task, (o, positive) in tasks.items()}
    flow = fitted["flow"]
    logp = flow.log_density(clean)
    groups = {"correct": logp[clean.correct], "misclassified": logp[~clean.correct],
              "adversarial (PGD eps=0.1)": flow.log_density(sources["PGD eps=0.1"]),
              "OOD (uniform noise)": flow.log_density(sources["uniform-noise"])}
    return {"metrics": metrics, "test": flow.test(clean), "seconds": seconds,
            "log_density": {k: [float(v) for v in vals] for k, vals in groups.items()}}
