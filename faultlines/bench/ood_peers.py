"""pytorch-ood's detectors on the same features and logits as ours, for `benchmarks/density.py`.

pytorch-ood (0.4) is the library the OOD field uses. It is not a dependency of faultlines,
not even an optional one: it requires torchvision, and there is no torchvision for the CPU
build of torch 2.13.0 (pip would replace torch with a multi-GB CUDA build to satisfy it, and
PyPI's torchvision 0.28, built for torch 2.13.0, fails to load its operators on the CPU build:
"operator torchvision::nms does not exist"). Install it without its dependencies:

    pip install --no-deps pytorch-ood==0.4.0

Its package `__init__` imports its model zoo, which imports torchvision; its detectors need
only torch. So when the plain import fails, `load` imports the detector modules under stand-in
parent packages that skip those `__init__` files (the detectors' code runs unchanged).

Each detector is fitted on the training outputs (features = `Outputs.embeddings`, labels)
and scores `Outputs`: higher = more suspect, as pytorch-ood's outlier scores are.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Callable

import numpy as np
import torch

from faultlines.errors import SettingsError
from faultlines.types import Outputs

#: pytorch-ood's name for each detector compared with one of ours ("msp" ...), then the
#: detectors that work on features and logits alone and have no counterpart here.
SAME = {"msp": "MaxSoftmax", "energy": "EnergyBased", "mahalanobis": "Mahalanobis", "knn": "KNN"}
EXTRA = ("ViM", "RMD", "MaxLogit", "Entropy", "GEN")
_MODULES = {"MaxSoftmax": "softmax", "EnergyBased": "energy", "Mahalanobis": "mahalanobis", "KNN": "knn", "ViM": "vim",
            "RMD": "rmd", "MaxLogit": "maxlogit", "Entropy": "entropy", "GEN": "gen"}


def load() -> dict[str, type]:
    """pytorch-ood's detector classes by name (SAME's and EXTRA's), however it is installed."""
    try:
        import pytorch_ood.detector as detector

        return {name: getattr(detector, name) for name in _MODULES}
    except ModuleNotFoundError as e:
        if e.name != "torchvision":
            raise SettingsError("pytorch-ood is not installed: pip install --no-deps pytorch-ood==0.4.0") from e
    spec = importlib.util.find_spec("pytorch_ood")
    root = spec.submodule_search_locations[0]
    for name, path in (("pytorch_ood", root), ("pytorch_ood.detector", f"{root}/detector")):
        if name not in sys.modules:
            stand_in = types.ModuleType(name)
            stand_in.__path__ = [path]
            sys.modules[name] = stand_in
    return {name: getattr(importlib.import_module(f"pytorch_ood.detector.{module}"), name) for name, module in _MODULES.items()}


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, np.float32))


def fit_detectors(train: Outputs, head: tuple[np.ndarray, np.ndarray] | None, vim_dim: int | None = None) -> dict[str, Callable[[Outputs], np.ndarray]]:
    """pytorch-ood's detectors fitted on `train`, as functions Outputs -> scores (higher = more suspect).

    Args:
        train: the model's outputs on its training data (embeddings and logits).
        head: (W, b) of the layer that turns the embeddings into logits, for ViM; None leaves ViM out.
        vim_dim: ViM's principal subspace dimension; default half the embedding width (at most 512).
    """
    classes = load()
    z, y = _tensor(train.embeddings), torch.from_numpy(train.labels)
    fitted: dict[str, Callable[[Outputs], np.ndarray]] = {}
    for name in ("MaxSoftmax", "EnergyBased", "MaxLogit", "Entropy", "GEN"):
        detector = classes[name](None)
        fitted[name] = lambda out, d=detector: d.predict_logits(_tensor(out.logits)).double().numpy()
    # pytorch-ood's Mahalanobis and RMD assert that every class 0..C-1 occurs in the training
    # labels: a model that never saw one class (the `heldout` problem) gets no score from them
    every_class = len(np.unique(train.labels)) == train.labels.max() + 1
    for name in ("Mahalanobis", "RMD", "KNN") if every_class else ("KNN",):
        detector = classes[name](None).fit_features(z, y)
        fitted[name] = lambda out, d=detector: d.predict_features(_tensor(out.embeddings)).double().numpy()
    if head is not None:
        dim = vim_dim or min(512, z.shape[1] // 2)
        detector = classes["ViM"](None, d=dim, w=_tensor(head[0]), b=_tensor(head[1])).fit_features(z, y)
        fitted["ViM"] = lambda out, d=detector: d.predict_features(_tensor(out.embeddings)).double().numpy()
    return fitted
