"""Planted-failure problems on the digits, each with its ground truth.

Every problem has train / val / test splits (50 / 15 / 35%, stratified), an in-slice mask
for every sample of every split, a generator with a `seed` and a strength `alpha` (default
1.0, the "default strength" of the benchmark), and a SmallCNN trained on it by
`faultlines.train`, cached on disk under a hash of its settings and training data.

    rare     one class's digits rotated 30-45 degrees counter-clockwise, strokes thickened:
             2% of that class in training, 60% at test
    decoy    3x3 patches in the four corners (or one random corner) whose shade encodes
             the label in training (Decoy-MNIST, Ross et al. 2017) and is random at test;
             slice = shade disagrees with the label
    noisy    one k-means subgroup of a class has its training (and validation) labels flipped
             to one other class; test labels are clean; slice = the subgroup
    shift    15% of test images blurred and noised (a corrupted style never seen in training;
             noise std SHIFT_NOISE alpha)
    heldout  one class removed from training; slice = that class at test

`alpha` scales each effect: the rotation angle (strokes are thickened at any strength), the share of training images whose decoy
encodes the label, the share of the subgroup flipped, the corruption's noise, the share of
the held-out class removed. `ood` holds extra out-of-distribution images (uniform and
Gaussian noise, every test image corrupted) for detectors.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from scipy import ndimage
from sklearn.cluster import KMeans

from faultlines.data.digits import CLASS_NAMES, digits
from faultlines.data.sources import ArraySource, Splits
from faultlines.detect.ood import corrupt, ood_images
from faultlines.errors import SettingsError
from faultlines.model import load_module, save_checkpoint
from faultlines.train import fit, train_small_cnn

PROBLEMS = ("rare", "decoy", "noisy", "shift", "heldout")
#: Classes the rare style is planted in. A SmallCNN trained on clean digits misreads 86-100%
#: of restyled 1, 2, 5, 6, 7, 8, 56-86% of 3s and 24-37% of 9s, but only 3-5% of restyled 4s
#: and 32-44% of 0s (seeds 0 and 1), so a "rare subclass" of 4s or 0s would plant little or
#: no failure to find.
RARE_CLASSES = (1, 2, 3, 5, 6, 7, 8, 9)
#: The rare style turns one way. Turned either way at random it was two subclasses with
#: different confusions: the SmallCNN misread nearly every clockwise-turned digit (so Defuse,
#: which starts from correctly classified inputs, had no seed inside that subclass) and read
#: most counter-clockwise ones right, each subclass mistaken for a different class.
RARE_TURN = 1.0
SPLITS = ("train", "val", "test")
#: The shift's noise (std) at full strength. At 0.3, the density analysis's corrupted style,
#: the model misread 13-18% of the shifted digits against 4% of the rest: measured as `scan`
#: measures a mode (its held-out half against the rest of that half), the shifted slice itself
#: was not a significant failure in seed 0 (p 0.08), so no finder could be asked to confirm it.
#: 0.4 is the least of 0.3, 0.4, 0.5 at which that slice's p-value is at most 0.01 (what a mode
#: equal to it needs to pass Benjamini-Hochberg across five modes at 0.05) in seeds 0, 1, 2;
#: `tests/test_bench_planted.py` checks it in seed 0.
SHIFT_NOISE = 0.4


def cache_dir(path: str | Path | None = None) -> Path:
    """Where trained benchmark models are kept: `path`, $FAULTLINES_CACHE, or ~/.cache/faultlines."""
    return Path(path or os.environ.get("FAULTLINES_CACHE") or Path.home() / ".cache" / "faultlines")


@dataclass
class PlantedProblem:
    """A data set with a planted failure and its ground truth.

    Attributes:
        name, seed, alpha: what generated it.
        description: one sentence on what was planted where.
        splits: train / val / test ArraySources.
        in_slice: per split, the (N,) boolean mask of the planted slice.
        patch_masks: decoy only: per split, (N, H, W) masks of each image's decoy patch.
        ood: extra out-of-distribution image sets, by name.
        facts: the problem's own choices (the class styled, the flipped pair, ...).
        make_model: builds the untrained classifier; None: a SmallCNN for 10 digit classes.
    """

    name: str
    seed: int
    alpha: float
    description: str
    splits: Splits
    in_slice: dict[str, np.ndarray]
    patch_masks: dict[str, np.ndarray] | None = None
    ood: dict[str, np.ndarray] = field(default_factory=dict)
    facts: dict[str, object] = field(default_factory=dict)
    make_model: Callable[[], nn.Module] | None = None

    def key(self) -> str:
        """Hash of everything that determines the trained model: its settings and its data."""
        arch = type(self.make_model()).__name__ if self.make_model else "SmallCNN"
        digest = hashlib.sha256(json.dumps({"problem": self.name, "seed": self.seed, "model": arch}).encode())
        for split in (self.splits.train, self.splits.val):
            digest.update(split.x.tobytes())
            digest.update(split.y.tobytes())
        return digest.hexdigest()[:16]

    def model(self, cache: str | Path | None = None, quiet: bool = True) -> nn.Module:
        """The classifier trained on this problem's train split, from the cache when there."""
        path = cache_dir(cache) / f"bench-{self.name}-{self.key()}.pt"
        if path.exists():
            return load_module(path)[0]
        if self.make_model is None:
            model = train_small_cnn(self.splits.train, self.splits.val, num_classes=10, seed=self.seed, quiet=quiet)
        else:
            torch.manual_seed(self.seed)
            model = self.make_model()
            fit(model, self.splits.train, self.splits.val, seed=self.seed, quiet=quiet, description=f"training on {self.name}")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        save_checkpoint(model, tmp, self.splits.test.class_names)
        os.replace(tmp, path)
        return model


def _base(seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    s = digits(seed=seed, val_fraction=0.15, test_fraction=0.35)
    return {name: (getattr(s, name).x.copy(), getattr(s, name).y.copy()) for name in SPLITS}


def _pack(name, seed, alpha, description, data, in_slice, **kwargs) -> PlantedProblem:
    splits = Splits(*(ArraySource(data[s][0], data[s][1], CLASS_NAMES, name=f"{name}/{s}") for s in SPLITS))
    return PlantedProblem(name, seed, alpha, description, splits, in_slice, **kwargs)


def restyle(image: np.ndarray, degrees: float) -> np.ndarray:
    """The rare subclass's style: rotated by `degrees`, strokes thickened by a 2x2 dilation."""
    rotated = ndimage.rotate(image[0], degrees, reshape=False, order=1, mode="constant", cval=0.0)
    return np.clip(ndimage.grey_dilation(rotated, size=(2, 2)), 0, 1)[None]


def rare(seed: int = 0, alpha: float = 1.0) -> PlantedProblem:
    rng = np.random.default_rng(seed)
    data, cls = _base(seed), int(rng.choice(RARE_CLASSES))
    in_slice = {}
    for split, share in (("train", 0.02), ("val", 0.02), ("test", 0.6)):
        x, y = data[split]
        rows = np.flatnonzero(y == cls)
        styled = rng.choice(rows, int(np.floor(share * len(rows))), replace=False)
        for i in styled:
            x[i] = restyle(x[i], RARE_TURN * rng.uniform(30, 45) * alpha)
        in_slice[split] = np.isin(np.arange(len(y)), styled)
    text = f"digit {cls} rotated 30-45 degrees counter-clockwise with thick strokes: {in_slice['train'].sum()} in training, {in_slice['test'].sum()} at test"
    return _pack("rare", seed, alpha, text, data, in_slice, facts={"class": cls})


def decoy_shade(labels: np.ndarray) -> np.ndarray:
    """The gray level that encodes each label: 1.0 for 0 down to 0.1 for 9."""
    return 1.0 - 0.1 * np.asarray(labels)


def decoy(seed: int = 0, alpha: float = 1.0, patch: int = 3, corners: str = "all") -> PlantedProblem:
    """The decoy problem; `corners="random"` puts one patch in a random corner instead, as
    Decoy-MNIST does. A SmallCNN on 16x16 digits mostly ignores that single patch
    (benchmarks/spurious_decoy.py prints how much), so by default all four corners carry it."""
    if corners not in ("all", "random"):
        raise SettingsError(f"corners must be 'all' or 'random', not {corners!r}")
    rng = np.random.default_rng(seed)
    data = _base(seed)
    in_slice, masks, shades = {}, {}, {}
    for split in SPLITS:
        x, y = data[split]
        h, w = x.shape[-2:]
        encoded = rng.random(len(y)) < (alpha if split != "test" else 0.0)
        shade_class = np.where(encoded, y, rng.integers(0, 10, len(y)))
        places = np.zeros((4, h, w), bool)
        for k, (r, c) in enumerate((r, c) for r in (0, h - patch) for c in (0, w - patch)):
            places[k, r : r + patch, c : c + patch] = True
        mask = np.repeat(places.any(0)[None], len(y), 0) if corners == "all" else places[rng.integers(0, 4, len(y))]
        x[:, 0][mask] = np.repeat(decoy_shade(shade_class), mask.sum(axis=(1, 2)))
        in_slice[split], masks[split], shades[split] = shade_class != y, mask, shade_class
    text = f"corner patches ({corners}) whose shade encodes the label in training and is random at test"
    return _pack("decoy", seed, alpha, text, data, in_slice, patch_masks=masks,
                 facts={"patch": patch, "corners": corners, "shade_class": shades})


def noisy(seed: int = 0, alpha: float = 1.0) -> PlantedProblem:
    rng = np.random.default_rng(seed)
    data = _base(seed)
    cls, to = (int(v) for v in rng.choice(10, 2, replace=False))
    pixels = np.concatenate([data[s][0][data[s][1] == cls].reshape(-1, data[s][0][0].size) for s in SPLITS])
    km = KMeans(n_clusters=2, n_init=10, random_state=seed).fit(pixels)
    group = int(np.argmin(np.bincount(km.labels_)))  # the smaller subgroup
    in_slice = {}
    for split in SPLITS:
        x, y = data[split]
        rows = np.flatnonzero(y == cls)
        members = rows[km.predict(x[rows].reshape(len(rows), -1)) == group] if len(rows) else rows
        in_slice[split] = np.isin(np.arange(len(y)), members)
        if split != "test":
            flipped = members[rng.random(len(members)) < alpha]
            y[flipped] = to
    text = f"a subgroup of digit {cls} labelled {to} in training ({in_slice['train'].sum()} images); clean at test"
    return _pack("noisy", seed, alpha, text, data, in_slice, facts={"class": cls, "flipped_to": to})


def shift(seed: int = 0, alpha: float = 1.0, share: float = 0.15) -> PlantedProblem:
    rng = np.random.default_rng(seed)
    data = _base(seed)
    x, y = data["test"]
    rows = rng.choice(len(y), int(share * len(y)), replace=False)
    x[rows] = corrupt(x[rows], rng, alpha, noise=SHIFT_NOISE)
    in_slice = {"train": np.zeros(len(data["train"][1]), bool), "val": np.zeros(len(data["val"][1]), bool)}
    in_slice["test"] = np.isin(np.arange(len(y)), rows)
    ood = ood_images(_base(seed)["test"][0], rng, alpha=alpha)
    text = f"{len(rows)} test images blurred and noised, a style never seen in training"
    return _pack("shift", seed, alpha, text, data, in_slice, ood=ood)


def heldout(seed: int = 0, alpha: float = 1.0) -> PlantedProblem:
    rng = np.random.default_rng(seed)
    data, cls = _base(seed), int(rng.integers(10))
    in_slice = {}
    for split in SPLITS:
        x, y = data[split]
        if split != "test":
            rows = np.flatnonzero(y == cls)
            drop = rows[rng.random(len(rows)) < alpha]
            keep = ~np.isin(np.arange(len(y)), drop)
            data[split] = (x[keep], y[keep])
        in_slice[split] = data[split][1] == cls
    text = f"digit {cls} left out of training, present at test"
    return _pack("heldout", seed, alpha, text, data, in_slice, ood={"held-out-class": data["test"][0][in_slice["test"]]}, facts={"class": cls})


GENERATORS = {"rare": rare, "decoy": decoy, "noisy": noisy, "shift": shift, "heldout": heldout}


def make_problem(name: str, seed: int = 0, alpha: float = 1.0) -> PlantedProblem:
    """The planted problem `name` (one of PROBLEMS) generated from `seed` at strength `alpha`."""
    if name not in GENERATORS:
        raise SettingsError(f"unknown problem {name!r}; choose from {', '.join(PROBLEMS)}")
    if not 0 < alpha <= 1:
        raise SettingsError(f"alpha must be in (0, 1], not {alpha}")
    return GENERATORS[name](seed=seed, alpha=alpha)
