"""Spurious regions (Hagos, Curran, Mac Namee 2022, arXiv 2211.08285): image regions whose
perturbation moves the model's certainty although they carry little of the object.

Sensitivity. Every image has a sliding window occluded (captum's `Occlusion`; the window is
replaced by zero, the data's mean, or a blurred copy) and the drop in the predicted class's
probability is recorded, per pixel (captum averages the drops of the windows covering it).
The mean over the images is the sensitivity map, overall and per class. Global perturbations
(blur, noise, brightness) are measured too: how much certainty and accuracy they cost.

Flagging. A window is a candidate when
- its mean certainty drop (the sensitivity map averaged over the window) is at least
  `min_drop`, and
- it carries little of the object: it holds the object of at most `max_object` of the
  classes. A window holds a class's object when, over the class's images, it is usually
  bright (median of its mean intensity at least 10% of the data's range), it varies from
  image to image (standard deviation of its mean at least 2% of the range), and it has shape
  (median spread of its pixels at least 5% of the range). So empty background, a region
  constant across the class, and a flat patch all carry no object. Medians, so that
  something in a minority of the images does not count. A user's object mask replaces this
  test: then the share is the window's share of pixels inside the mask.
Overlapping candidates are reduced to the most sensitive one (non-maximum suppression).

Confirmation, the counterfactual swap test: the window's content is pasted into `swaps`
images from images of another predicted class that depend on the window themselves (their
own drop at least `min_drop`), and, as a control, from such images of the same predicted
class. The flip rate is the share of predictions the first paste changes beyond the share
the control changes; the follow rate, the share that become the donor's class. A candidate
with a flip rate of at least `min_flip` is a flagged region: a FailureMode whose members are
the images whose certainty depends on it.
The candidates that fail alone are then swapped together: a decoy repeated in several places
is outvoted by its other copies when one is swapped, so together they form one region.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from scipy import ndimage

from faultlines.data.sources import Source
from faultlines.errors import DataError, SettingsError
from faultlines.find.base import SEED, Finder, Interval, IsA, OneOf
from faultlines.model import Classifier
from faultlines.types import FailureMode, Outputs, check_mask

BASELINES = ("zero", "mean", "blur")
#: Global perturbations: name -> what it does, in units of the data's value range.
GLOBAL = {"blur": "Gaussian blur, sigma 1 pixel", "noise": "Gaussian noise, std 10% of the range",
          "brightness": "brighter by 20% of the range, clipped"}


def source_images(source: Source, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """All inputs (N, C, H, W) and labels of an image source; a DataError if it holds no images."""
    x, y = source.arrays(batch_size)
    if x.ndim != 4:
        raise DataError(f"the perturbation probe needs images (N, C, H, W), got inputs of shape {x.shape}")
    return x.astype(np.float32), y


def window_means(maps: np.ndarray, size: int) -> np.ndarray:
    """Mean of `maps` (..., H, W) over every size x size window: (..., H - size + 1, W - size + 1)."""
    c = np.cumsum(np.cumsum(np.pad(maps, [(0, 0)] * (maps.ndim - 2) + [(1, 0), (1, 0)]), -1), -2)
    s = c[..., size:, size:] - c[..., :-size, size:] - c[..., size:, :-size] + c[..., :-size, :-size]
    return s / (size * size)


@dataclass(eq=False, repr=False)
class PerturbationProbe(Finder):
    """Find image regions the classifier depends on although they carry little of the object.

    Args:
        patch: side of the square occlusion window, in pixels.
        stride: step of the sliding window.
        baseline: what replaces an occluded window: "zero", "mean" (the data's mean image) or
            "blur" (the image blurred, sigma = patch / 2).
        max_samples: images probed at most (a random subset of the source, from `seed`).
        min_drop: least mean drop of the predicted class's probability for a candidate region,
            and least drop for an image to count as depending on it.
        max_object: most share of a candidate's pixels that may be object pixels.
        min_flip: least swap-test flip rate (beyond the control's) for a candidate to be flagged.
        swaps: images pasted into per candidate in the swap test.
        max_regions: regions flagged at most.
        object_mask: optional (H, W) mask of where the object is; replaces the median test.
        batch_size: images per forward pass.
        seed: seed of the subset and the swap pairs.
        quiet: hide the progress bars.
    """

    name: ClassVar[str] = "perturb"
    #: regions are chosen by occlusion and swaps, which use the predictions, never the errors
    looks_at_errors: ClassVar[bool] = False
    requires: ClassVar[tuple[str, ...]] = ("model", "images")
    constraints: ClassVar[dict] = {
        "patch": Interval(1, None, integer=True),
        "stride": Interval(1, None, integer=True),
        "baseline": OneOf(BASELINES),
        "max_samples": Interval(2, None, integer=True, none=True),
        "min_drop": Interval(0, 1, open_low=True, open_high=True),
        "max_object": Interval(0, 1),
        "min_flip": Interval(0, 1, open_low=True),
        "swaps": Interval(1, None, integer=True),
        "max_regions": Interval(1, None, integer=True),
        "object_mask": IsA(np.ndarray, none=True),
        "batch_size": Interval(1, None, integer=True),
        "seed": SEED,
    }

    patch: int = 3
    stride: int = 1
    baseline: str = "zero"
    max_samples: int | None = 1000
    min_drop: float = 0.05
    max_object: float = 0.25
    min_flip: float = 0.1
    swaps: int = 500
    max_regions: int = 8
    object_mask: np.ndarray | None = None
    batch_size: int = 1024
    seed: int = 0
    quiet: bool = True

    # -- sensitivity -----------------------------------------------------------------------

    def _baseline(self, x: np.ndarray) -> torch.Tensor | float:
        if self.baseline == "zero":
            return 0.0
        if self.baseline == "mean":
            return torch.from_numpy(np.broadcast_to(x.mean(0, keepdims=True), x.shape).copy())
        return torch.from_numpy(ndimage.gaussian_filter(x, sigma=(0, 0, self.patch / 2, self.patch / 2)))

    def sensitivity(self, clf: Classifier, x: np.ndarray, preds: np.ndarray) -> np.ndarray:
        """Per-image occlusion maps (N, H, W): the drop of the predicted class's probability
        when a window covering the pixel is occluded (averaged over those windows)."""
        from captum.attr import Occlusion

        from faultlines.progress import track

        occlusion = Occlusion(lambda b: clf.probs(b))
        base = self._baseline(x)
        c = x.shape[1]
        maps = []
        # small chunks of images, several windows per forward pass: the same batch size, and a
        # progress bar that moves
        chunk = min(128, self.batch_size)
        starts = range(0, len(x), chunk)
        for i in track(starts, "occluding windows", total=len(starts), quiet=self.quiet):
            xb = torch.from_numpy(x[i : i + chunk])
            bb = base[i : i + chunk] if isinstance(base, torch.Tensor) else base
            a = occlusion.attribute(xb, sliding_window_shapes=(c, self.patch, self.patch), strides=(c, self.stride, self.stride),
                                    baselines=bb, target=torch.from_numpy(preds[i : i + chunk]),
                                    perturbations_per_eval=max(1, self.batch_size // chunk))
            maps.append(a.mean(1).numpy())
        return np.concatenate(maps)

    def global_perturbations(self, clf: Classifier, x: np.ndarray, y: np.ndarray, probs: np.ndarray) -> list[dict[str, object]]:
        """Certainty and accuracy under blur, noise and brightness (see GLOBAL)."""
        rng = np.random.default_rng(self.seed)
        lo, hi = float(x.min()), float(x.max())
        span = hi - lo or 1.0
        changed = {
            "blur": ndimage.gaussian_filter(x, sigma=(0, 0, 1, 1)),
            "noise": np.clip(x + rng.normal(0, 0.1 * span, x.shape), lo, hi),
            "brightness": np.clip(x + 0.2 * span, lo, hi),
        }
        preds, rows = probs.argmax(1), np.arange(len(x))
        results = []
        for name, xp in changed.items():
            p = clf.predict_probs(xp.astype(np.float32), self.batch_size)
            pred = p.argmax(1)
            results.append({"perturbation": name, "what": GLOBAL[name],
                            "certainty_drop": float((probs[rows, preds] - p[rows, preds]).mean()),
                            "changed": float((pred != preds).mean()),
                            "accuracy_before": float((preds == y).mean()), "accuracy_after": float((pred == y).mean())})
        return results

    # -- flagging --------------------------------------------------------------------------

    def object_share(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """(H', W'): for every window, the share of classes whose object it holds (see the
        module docstring), or its share of pixels inside the user's object mask."""
        h, w = x.shape[-2:]
        if self.object_mask is not None:
            return window_means(check_mask(self.object_mask, (h, w), "object mask").astype(np.float64), self.patch)
        gray = x.mean(1).astype(np.float64)
        span = float(gray.max() - gray.min()) or 1.0
        mean = window_means(gray, self.patch)
        spread = np.sqrt(np.maximum(window_means(gray**2, self.patch) - mean**2, 0.0))
        held = [(np.median(mean[y == c], 0) >= 0.1 * span) & (mean[y == c].std(0) >= 0.02 * span)
                & (np.median(spread[y == c], 0) >= 0.05 * span) for c in np.unique(y)]
        return np.mean(held, axis=0)

    def _candidates(self, mean_map: np.ndarray, share: np.ndarray) -> list[tuple[int, int, float, float]]:
        """Windows (row, col, mean drop, object share), most sensitive first, not overlapping."""
        drop = window_means(mean_map, self.patch)
        rows, cols = np.meshgrid(np.arange(drop.shape[0]), np.arange(drop.shape[1]), indexing="ij")
        ok = (drop >= self.min_drop) & (share <= self.max_object)
        ok &= (rows % self.stride == 0) & (cols % self.stride == 0)
        chosen: list[tuple[int, int, float, float]] = []
        for r, c in sorted(zip(rows[ok], cols[ok]), key=lambda rc: -drop[rc]):
            if all(abs(r - r0) >= self.patch or abs(c - c0) >= self.patch for r0, c0, _, _ in chosen):
                chosen.append((int(r), int(c), float(drop[r, c]), float(share[r, c])))
        return chosen

    def _mask(self, windows: list[tuple[int, int]], shape: tuple[int, int]) -> np.ndarray:
        mask = np.zeros(shape, bool)
        for r, c in windows:
            mask[r : r + self.patch, c : c + self.patch] = True
        return mask

    def _swap_region(self, clf: Classifier, x: np.ndarray, preds: np.ndarray, per_window: np.ndarray,
                     windows: list[tuple[int, int]], rng: np.random.Generator) -> dict[str, object]:
        """The swap test of the region made of `windows`.

        Donors are images whose own certainty drops by `min_drop` or more when the region is
        occluded. The region is pasted into `swaps` random images twice: from a donor of
        another predicted class, and, as the control, from a donor of the same predicted
        class. The flip rate is the share of predictions the first paste changes minus the
        share the control changes: a region that carries nothing of the class changes
        predictions no more from another class than from the same one. The follow rate is the
        share whose prediction becomes the other donor's.
        """
        mask = self._mask(windows, x.shape[-2:])
        own = np.max([per_window[:, r, c] for r, c in windows], axis=0)
        donors = np.flatnonzero(own >= self.min_drop)
        trios = []
        for r in rng.choice(len(x), min(self.swaps, len(x)), replace=False):
            other = donors[preds[donors] != preds[r]]
            same = donors[(preds[donors] == preds[r]) & (donors != r)]
            if len(other) and len(same):
                trios.append((r, rng.choice(other), rng.choice(same)))
        test = {"windows": [(int(r), int(c)) for r, c in windows], "mask": mask, "own": own, "flip_rate": 0.0,
                "follow_rate": 0.0, "recipients": np.array([], int), "after": np.array([], int),
                "pasted": x[:0], "examples": []}
        if not trios:
            return test
        rec, other, same = (np.array(v) for v in zip(*trios))
        pasted, control = x[rec].copy(), x[rec].copy()
        pasted[:, :, mask] = x[other][:, :, mask]
        control[:, :, mask] = x[same][:, :, mask]
        after = clf.predict_probs(pasted, self.batch_size).argmax(1)
        after_control = clf.predict_probs(control, self.batch_size).argmax(1)
        changed = after != preds[rec]
        followed = after == preds[other]
        # examples for the report: pasted images whose prediction followed the donor first
        test.update(flip_rate=float(changed.mean() - (after_control != preds[rec]).mean()), follow_rate=float(followed.mean()),
                    recipients=rec, after=after, pasted=pasted,
                    examples=np.lexsort((~changed, ~followed))[:8].tolist())
        return test

    def _region_mode(self, test: dict, k: int, outputs: Outputs, rows: np.ndarray, per_window: np.ndarray, share: np.ndarray) -> FailureMode:
        """The FailureMode of a flagged region: the probed images whose certainty depends on it."""
        own, flip, follow = test["own"], test["flip_rate"], test["follow_rate"]
        members = np.flatnonzero(own >= self.min_drop)
        members = members[np.argsort(-own[members], kind="stable")]
        drop = float(np.mean([per_window[:, r, c].mean() for r, c in test["windows"]]))
        obj = float(np.mean([share[r, c] for r, c in test["windows"]]))
        where = "; ".join(f"rows {r}-{r + self.patch - 1}, columns {c}-{c + self.patch - 1}" for r, c in test["windows"])
        summary = (f"the model depends on the region at {where} (mean certainty drop {drop:.2f} when occluded) though it "
                   f"holds little of the object; pasted from another class it changes {flip:.0%} more predictions than from the "
                   f"same class ({follow:.0%} become the donor's class). " + ("" if len(members) else "no single image depends on it"))
        return self._mode(k, rows[members], outputs, summary=summary,
                          metrics={"mean_drop": drop, "object_share": obj, "flip_rate": flip, "follow_rate": follow},
                          evidence={"mask": test["mask"].tolist(), "windows": [[r, c, self.patch, self.patch] for r, c in test["windows"]]})

    def _find(self, outputs: Outputs, *, clf: Classifier, data: Source, **_) -> list[FailureMode]:
        """Occlude the images of `data`; return one FailureMode per flagged region.

        Each mode's evidence holds its "mask" (H, W), its "windows" (row, column, height,
        width) and "swap_rows": rows of `tables_["perturb_swaps"]`, the images before and
        after the swap. After the call: `maps_` (overall and per-class mean sensitivity),
        `global_` (the global perturbations), `candidates_` (every candidate with its swap
        test), `joint_` (the candidates that failed alone, tested together), `tables_` and
        `analyses_` for the run folder and the report.
        """
        x_all, y_all = source_images(data, self.batch_size)
        h, w = x_all.shape[-2:]
        if self.patch > min(h, w):
            raise SettingsError(f"the window ({self.patch} pixels) is larger than the images ({h}x{w})")
        rng = np.random.default_rng(self.seed)
        rows = np.arange(len(x_all))
        if self.max_samples is not None and len(rows) > self.max_samples:
            rows = np.sort(rng.choice(len(rows), self.max_samples, replace=False))
        x, y = x_all[rows], y_all[rows]
        probs, preds = outputs.probs[rows], outputs.preds[rows]
        maps = self.sensitivity(clf, x, preds)
        classes = np.unique(y)
        self.maps_ = {"overall": maps.mean(0), "classes": classes, "per_class": np.stack([maps[y == c].mean(0) for c in classes])}
        self.global_ = self.global_perturbations(clf, x, y, probs)
        share = self.object_share(x, y)
        per_window = window_means(maps, self.patch)  # (N, H', W'): each image's drop per window
        self.candidates_, tested = [], []
        for r, c, drop, obj in self._candidates(self.maps_["overall"], share):
            test = self._swap_region(clf, x, preds, per_window, [(r, c)], rng)
            self.candidates_.append({"row": r, "col": c, "size": self.patch, "mean_drop": drop, "object_share": obj,
                                     "flip_rate": test["flip_rate"], "follow_rate": test["follow_rate"]})
            tested.append(test)
        # Regions that encode the same thing (a decoy in several places) may each be outvoted
        # by the others when swapped alone: the candidates that fail alone are tested together.
        alone = [t for t in tested if t["flip_rate"] >= self.min_flip]
        rest = [t for t in tested if t["flip_rate"] < self.min_flip]
        if len(rest) > 1:
            joint = self._swap_region(clf, x, preds, per_window, [w for t in rest for w in t["windows"]], rng)
            self.joint_ = {"windows": joint["windows"], "flip_rate": joint["flip_rate"], "follow_rate": joint["follow_rate"]}
            if joint["flip_rate"] >= self.min_flip:
                alone.append(joint)
        else:
            self.joint_ = None
        modes: list[FailureMode] = []
        swaps: dict[str, list] = {"before": [], "after": [], "region": [], "pred_before": [], "pred_after": []}
        for test in sorted(alone, key=lambda t: -t["flip_rate"])[: self.max_regions]:
            first = len(swaps["before"])
            mode = self._region_mode(test, len(modes), outputs, rows, per_window, share)
            mode.evidence["swap_rows"] = list(range(first, first + len(test["examples"])))
            modes.append(mode)
            for i in test["examples"]:
                swaps["before"].append(x[test["recipients"][i]])
                swaps["after"].append(test["pasted"][i])
                swaps["region"].append(len(modes) - 1)
                swaps["pred_before"].append(preds[test["recipients"][i]])
                swaps["pred_after"].append(test["after"][i])
        self.tables_ = {"perturb_maps": {"maps": np.concatenate([self.maps_["overall"][None], self.maps_["per_class"]]).astype(np.float32),
                                          "classes": np.r_[-1, classes].astype(np.int64)}}
        if swaps["before"]:
            self.tables_["perturb_swaps"] = {k: np.asarray(v) for k, v in swaps.items()}
        self.analyses_ = {"perturb": {"global": self.global_, "candidates": self.candidates_, "joint": self.joint_,
                                      "settings": self.settings(), "samples": int(len(rows))}}
        return modes
