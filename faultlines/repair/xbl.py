"""Explanation-based learning: retrain a classifier so that it stops using a region of its
inputs, with the "right for the right reasons" penalty (Ross, Hughes, Doshi-Velez 2017):

    loss = CE + lambda * sum over masked pixels of (d sum_k log p_k / dx)^2

(per image, averaged over the batch). The mask comes from PerturbationProbe's flagged regions
or from the user. The baseline it is compared with retrains the same way on images whose
masked region is occluded (set to zero), a data augmentation.

lambda is chosen from a sweep on the validation data with the masked region swapped between
images (each image gets another's region), so that a model that still reads the region is
caught without knowing what the region encodes: the highest accuracy there wins, the
smaller lambda on a tie. Every model is judged the same way on the test data: accuracy as
it is, accuracy with the region swapped, and the share of the input gradient's energy that
falls inside the mask.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from faultlines.data.sources import ArraySource, Source
from faultlines.errors import DataError, SettingsError
from faultlines.train import accuracy, fit, logits, reset_weights
from faultlines.types import check_mask


def input_gradients(module: nn.Module, x: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    """d sum_k log p_k / dx for every input of the batch, shape of `x`."""
    x = x.detach().requires_grad_(True)
    log_probs = F.log_softmax(logits(module, x), dim=1)
    return torch.autograd.grad(log_probs.sum(), x, create_graph=create_graph)[0]


def rrr_penalty(module: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The right-for-the-right-reasons term: squared input gradients summed over the masked
    pixels (every channel), averaged over the batch. `mask` is (H, W) boolean."""
    grads = input_gradients(module, x, create_graph=True)
    return (grads.pow(2) * mask).sum(dim=(1, 2, 3)).mean()


def gradient_share(module: nn.Module, data: Source, mask: np.ndarray, batch_size: int = 256) -> float:
    """Share of the squared input gradients (of sum_k log p_k) that falls inside `mask`."""
    module.eval()
    inside = total = 0.0
    m = torch.from_numpy(mask)
    for x, _ in data.batches(batch_size):
        g = input_gradients(module, x).pow(2)
        inside, total = inside + float((g * m).sum()), total + float(g.sum())
    return inside / total if total > 0 else 0.0


def occlude(data: Source, mask: np.ndarray, value: float = 0.0) -> ArraySource:
    """`data` with the masked pixels of every image set to `value`."""
    x, y = data.arrays()
    x = x.copy()
    x[:, :, mask] = value
    return ArraySource(x, y, data.class_names, name=f"{data.name}/occluded")


def swap_region(data: Source, mask: np.ndarray, seed: int = 0) -> ArraySource:
    """`data` with the masked region of every image replaced by another image's (a random
    derangement), so that what the region says no longer goes with the label."""
    x, y = data.arrays()
    n = len(x)
    order = np.random.default_rng(seed).permutation(n)
    other = np.roll(order, 1)  # image order[i] receives the region of order[i - 1]: nobody keeps its own
    region = x[:, :, mask]
    moved = region.copy()
    moved[order] = region[other]
    swapped = x.copy()
    swapped[:, :, mask] = moved
    return ArraySource(swapped, y, data.class_names, name=f"{data.name}/region-swapped")


def reinitialise(module: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of `module` with fresh weights (see `train.reset_weights`)."""
    fresh = copy.deepcopy(module)
    if not reset_weights(fresh, seed):
        raise SettingsError("the model has no layers with reset_parameters, so it cannot be retrained from fresh weights")
    return fresh


@dataclass
class XBLResult:
    """The retrained models and how every model fares.

    Attributes:
        module: the model retrained with the chosen lambda.
        baseline: the model retrained on occluded images.
        lam: the chosen lambda.
        sweep: per lambda, its validation accuracy as is and with the region swapped.
        table: model name ("original", "occlusion", "xbl") -> its test figures.
    """

    module: nn.Module
    baseline: nn.Module
    lam: float
    sweep: list[dict[str, float]] = field(default_factory=list)
    table: dict[str, dict[str, float]] = field(default_factory=dict)


def judge(module: nn.Module, test: Source, swapped: Source, mask: np.ndarray) -> dict[str, float]:
    """Test accuracy, accuracy with the region swapped, and the gradient share inside the mask."""
    return {"test_accuracy": accuracy(module, test), "swapped_accuracy": accuracy(module, swapped),
            "gradient_share_in_mask": gradient_share(module, test, mask)}


def xbl(
    module: nn.Module,
    train: Source,
    val: Source,
    test: Source,
    mask: np.ndarray,
    lambdas: tuple[float, ...] = (0.1, 1.0, 10.0),
    epochs: int = 30,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    quiet: bool = True,
) -> XBLResult:
    """Retrain `module` with the RRR penalty on `mask` for each lambda, and the occlusion baseline.

    Args:
        module: the model to correct; left unchanged.
        train, val, test: image sources (N, C, H, W); val chooses lambda and early-stops.
        mask: (H, W) pixels the model must not use (True/1).
        lambdas: weights of the penalty to try.

    Every model starts from fresh weights (`reinitialise`), as Ross et al. train theirs:
    fine-tuning the decoy model of the benchmark under the penalty instead left it at 0.29
    test accuracy (seed 0), its features too bound to the region to unlearn in 30 epochs.

    Returns:
        XBLResult with the chosen model, the baseline, the sweep and the test table.
    """
    x0, _ = next(iter(train.batches(1)))
    if x0.ndim != 4:
        raise DataError(f"explanation-based learning needs images (N, C, H, W), got inputs of shape {tuple(x0.shape)}")
    mask = check_mask(mask, tuple(x0.shape[-2:]))
    if not lambdas or min(lambdas) <= 0:
        raise SettingsError("give at least one lambda, every one positive")
    m = torch.from_numpy(mask)
    start = reinitialise(module, seed)
    val_swapped = swap_region(val, mask, seed)
    best, sweep = None, []
    for lam in lambdas:
        candidate = copy.deepcopy(start)
        fit(candidate, train, val, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, quiet=quiet,
            extra_loss=lambda mod, x, y, lam=lam: lam * rrr_penalty(mod, x, m), description=f"XBL, lambda={lam:g}")
        row = {"lambda": lam, "val_accuracy": accuracy(candidate, val), "val_swapped_accuracy": accuracy(candidate, val_swapped)}
        sweep.append(row)
        if best is None or row["val_swapped_accuracy"] > best[0]:
            best = (row["val_swapped_accuracy"], lam, candidate)
    _, lam, chosen = best
    baseline = copy.deepcopy(start)
    fit(baseline, occlude(train, mask), occlude(val, mask), epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
        quiet=quiet, description="retraining on occluded images")
    test_swapped = swap_region(test, mask, seed)
    table = {name: judge(mod, test, test_swapped, mask) for name, mod in (("original", module), ("occlusion", baseline), ("xbl", chosen))}
    return XBLResult(chosen, baseline, lam, sweep, table)
