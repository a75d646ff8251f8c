"""The embedded default data: scikit-learn's real handwritten digits (ships with scikit-learn)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from faultlines.data.sources import ArraySource, Splits

CLASS_NAMES = tuple(str(d) for d in range(10))


def digits(seed: int = 0, size: int = 16, val_fraction: float = 0.2, test_fraction: float = 0.2) -> Splits:
    """The 1,797 UCI handwritten digits, upsampled from 8x8 to `size` x `size`.

    Images are float32 in [0, 1] with shape (N, 1, size, size), upsampled bilinearly.
    The splits are stratified by class and depend only on `seed`.

    Returns:
        Splits with train (60%), val (20%) and test (20%) by default: 1077 / 360 / 360.
    """
    raw = load_digits()
    x = torch.from_numpy(raw.images.astype(np.float32) / 16.0).unsqueeze(1)
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = x.clamp(0, 1).numpy()
    y = raw.target.astype(np.int64)
    idx = np.arange(len(y))
    rest, test = train_test_split(idx, test_size=test_fraction, stratify=y, random_state=seed)
    train, val = train_test_split(
        rest, test_size=val_fraction / (1 - test_fraction), stratify=y[rest], random_state=seed
    )
    make = lambda rows, name: ArraySource(x[rows], y[rows], CLASS_NAMES, name=f"digits/{name}")  # noqa: E731
    return Splits(train=make(train, "train"), val=make(val, "val"), test=make(test, "test"))
