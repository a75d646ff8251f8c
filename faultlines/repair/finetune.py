"""Correct Defuse's regions: fine-tune the user's model on its training data plus labelled
region samples, and measure the effect on region samples it never trained on.

    loss = CE(training batch) + lambda * CE(batch of labelled region samples)

Fine-tuning starts from the model's own weights. lambda is chosen from a small sweep on the
validation data: the highest accuracy on validation region samples among the settings that
keep accuracy on the validation split within `max_val_drop` of the original model's.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn

from faultlines.data.sources import ArraySource, Source
from faultlines.errors import DataError
from faultlines.train import accuracy, cross_entropy, fit


@dataclass
class RegionSamples:
    """Labelled region samples, split as Defuse split them."""

    x: dict[str, np.ndarray]  # split -> (n, C, H, W)
    y: dict[str, np.ndarray]  # split -> (n,) the labels people gave
    region: dict[str, np.ndarray]  # split -> (n,) region ids


@dataclass
class FixResult:
    module: nn.Module
    lam: float
    sweep: list[dict[str, float]] = field(default_factory=list)
    before: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)


def region_samples(table: dict[str, np.ndarray], labels: dict[int, int | None]) -> RegionSamples:
    """Labelled samples of each region (labels: region index, as in table["region"] -> class id; None = skip)."""
    keep = np.array([labels.get(int(r)) is not None for r in table["region"]])
    if not keep.any():
        raise DataError("no region is labelled with a class (all skipped): nothing to correct")
    y = np.array([labels.get(int(r)) if labels.get(int(r)) is not None else -1 for r in table["region"]])
    parts = {name: keep & (table["split"] == code) for name, code in (("train", 0), ("val", 1), ("heldout", 2))}
    return RegionSamples(
        {k: table["images"][m] for k, m in parts.items()},
        {k: y[m] for k, m in parts.items()},
        {k: table["region"][m] for k, m in parts.items()},
    )


def _accuracy(module: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    return accuracy(module, ArraySource(x, y)) if len(y) else float("nan")


def evaluate(module: nn.Module, test: Source, samples: RegionSamples) -> dict:
    """Test accuracy, and accuracy on held-out region samples overall and per region."""
    x, y, r = samples.x["heldout"], samples.y["heldout"], samples.region["heldout"]
    return {
        "test_accuracy": accuracy(module, test),
        "heldout_region_accuracy": _accuracy(module, x, y),
        "per_region": {int(k): _accuracy(module, x[r == k], y[r == k]) for k in np.unique(r)},
    }


def finetune(
    module: nn.Module,
    train: Source,
    val: Source,
    test: Source,
    samples: RegionSamples,
    lambdas: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0),
    epochs: int = 10,
    lr: float = 1e-3,
    batch_size: int = 64,
    max_val_drop: float = 0.005,
    seed: int = 0,
    quiet: bool = True,
) -> FixResult:
    """Fine-tune a copy of `module` for each lambda; keep the one chosen on validation data."""
    if len(samples.y["train"]) == 0:
        raise DataError("no labelled region samples to train on")
    region_x, region_y = torch.from_numpy(samples.x["train"]), torch.from_numpy(samples.y["train"])
    base_val = accuracy(module, val)
    best, sweep = None, []
    for lam in lambdas:
        candidate = copy.deepcopy(module)
        gen = torch.Generator().manual_seed(seed)

        def region_term(m: nn.Module, x: torch.Tensor, y: torch.Tensor, lam: float = lam) -> torch.Tensor:
            rows = torch.randint(len(region_y), (batch_size,), generator=gen)
            return lam * cross_entropy(m, region_x[rows], region_y[rows])

        fit(candidate, train, None, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, loss_fn=cross_entropy,
            extra_loss=region_term, quiet=quiet, description=f"fine-tuning, lambda={lam:g}")
        row = {"lambda": lam, "val_accuracy": accuracy(candidate, val),
               "val_region_accuracy": _accuracy(candidate, samples.x["val"], samples.y["val"])}
        sweep.append(row)
        allowed = row["val_accuracy"] >= base_val - max_val_drop
        key = (allowed, row["val_region_accuracy"] if allowed else row["val_accuracy"])
        if best is None or key > best[0]:
            best = (key, lam, candidate)
    _, lam, chosen = best
    return FixResult(chosen, lam, sweep, evaluate(module, test, samples), evaluate(chosen, test, samples))
