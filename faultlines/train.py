"""The one training loop (fit, fine-tune, extra loss terms) and the demo's small CNN."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from faultlines.data.sources import Source
from faultlines.errors import DataError
from faultlines.progress import track

#: loss_fn(module, x, y) -> scalar loss of one batch.
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def logits(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A classifier's logits, whether it returns them alone or as (logits, embeddings)."""
    out = module(x)
    return out[0] if isinstance(out, tuple) else out


def cross_entropy(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of a classifier's logits: the default `loss_fn`."""
    return F.cross_entropy(logits(module, x), y)


@dataclass
class History:
    """What `fit` did: mean loss per epoch, and the epoch whose weights were kept."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = -1


def fit(
    module: nn.Module,
    train: Source,
    val: Source | None = None,
    *,
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    loss_fn: LossFn = cross_entropy,
    extra_loss: LossFn | None = None,
    patience: int = 5,
    on_epoch: Callable[[int], None] | None = None,
    quiet: bool = True,
    description: str = "training",
) -> History:
    """Train `module` in place with AdamW; keep the weights with the lowest validation loss.

    Args:
        module: the model to train (already initialised, or pre-trained to fine-tune).
        train: training data; shuffled every epoch from `seed`.
        val: validation data for early stopping on `loss_fn`; None trains all `epochs`.
        loss_fn: the loss of one batch; default cross-entropy on the module's logits.
        extra_loss: a term added to the training loss only (e.g. an explanation penalty).
        patience: epochs without a better validation loss before stopping.
        on_epoch: called with the epoch number before each epoch (schedules, annealing).

    Returns:
        History of the per-epoch losses and the epoch kept.
    """
    if len(train) == 0:
        raise DataError("the training set is empty")
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay)
    history = History()
    best, best_state, since_best = math.inf, None, 0
    for epoch in track(range(epochs), description, total=epochs, quiet=quiet):
        if on_epoch is not None:
            on_epoch(epoch)
        module.train()
        total, count = 0.0, 0
        for x, y in train.batches(batch_size, shuffle=True, seed=seed * 100_003 + epoch):
            loss = loss_fn(module, x, y)
            if extra_loss is not None:
                loss = loss + extra_loss(module, x, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, count = total + loss.item() * len(y), count + len(y)
        history.train_loss.append(total / count)
        score = evaluate(module, val, loss_fn, batch_size) if val is not None else history.train_loss[-1]
        if val is not None:
            history.val_loss.append(score)
        if score < best:
            best, best_state, since_best, history.best_epoch = score, copy.deepcopy(module.state_dict()), 0, epoch
        else:
            since_best += 1
            if val is not None and since_best >= patience:
                break
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    return history


def reset_weights(module: nn.Module, seed: int = 0) -> int:
    """Give `module` fresh weights in place: every sub-module's `reset_parameters`, seeded.
    Returns how many sub-modules were reset."""
    torch.manual_seed(seed)
    reset = [m for m in module.modules() if m is not module and hasattr(m, "reset_parameters")]
    for m in reset:
        m.reset_parameters()
    return len(reset)


def evaluate(module: nn.Module, data: Source, loss_fn: LossFn = cross_entropy, batch_size: int = 256) -> float:
    """Mean `loss_fn` over `data`, without gradients."""
    module.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for x, y in data.batches(batch_size):
            total, count = total + float(loss_fn(module, x, y)) * len(y), count + len(y)
    return total / max(count, 1)


def accuracy(module: nn.Module, data: Source, batch_size: int = 256) -> float:
    """Share of `data` a bare classifier module gets right, in eval mode, from its logits alone
    (any module that returns logits, or (logits, embeddings): no embedding layer is needed)."""
    module.eval()
    right = count = 0
    with torch.no_grad():
        for x, y in data.batches(batch_size):
            right += int((logits(module, x).argmax(1) == y).sum())
            count += len(y)
    if count == 0:
        raise DataError("the data set is empty: give at least one sample")
    return right / count


class SmallCNN(nn.Module):
    """Two conv blocks and two linear layers: trains on 16x16 digits in seconds on a CPU.

    The embedding layer faultlines reads by default is the input of `fc2`: the 64 ReLU
    features that `fc1` produces.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, size: int = 16, width: int = 16, hidden: int = 64):
        super().__init__()
        self.config = dict(in_channels=in_channels, num_classes=num_classes, size=size, width=width, hidden=hidden)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.fc1 = nn.Linear(2 * width * (size // 4) ** 2, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(self.features(x).flatten(1))))


class LinearClassifier(nn.Module):
    """A linear classifier over fixed features (e.g. sentence embeddings); embeddings = its input."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.config = dict(in_features=in_features, num_classes=num_classes)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def train_small_cnn(train: Source, val: Source, num_classes: int = 10, seed: int = 0, quiet: bool = True, **kwargs) -> SmallCNN:
    """A SmallCNN initialised from `seed` and fitted on `train` with early stopping on `val`."""
    x, _ = next(iter(train.batches(1)))
    torch.manual_seed(seed)
    model = SmallCNN(in_channels=x.shape[1], num_classes=num_classes, size=x.shape[-1])
    fit(model, train, val, seed=seed, quiet=quiet, description="training SmallCNN", **kwargs)
    return model
