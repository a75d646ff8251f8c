"""Spurious regions and explanation-based learning on the decoy planted problem.

    python benchmarks/spurious_decoy.py [--seeds 3] [--cache DIR]

The decoy problem puts 3x3 patches in the four corners whose shade encodes the label in
training and is random at test. For each seed:
- PerturbationProbe on the decoy model's test split: what it flags, and the IoU of the
  flagged pixels with the true patch mask (also the best IoU with each corner's patch);
- PerturbationProbe on a SmallCNN trained on the clean digits (same splits), on the clean
  test split and on the decoy test split: how many regions it flags (none, if it is right);
- XBL with the probe's flagged mask (not the true one), the occlusion baseline, the decoy
  model, and the clean model, all on the decoy-randomised test split; the clean model also on
  the clean test split;
- the probe's time on 1,000 images (decoy train + test);
- the layout of Decoy-MNIST, one patch in a random corner: how far it fools a SmallCNN.
Prints one markdown table per part.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import faultlines as fl
from faultlines.bench.planted import decoy, make_problem
from faultlines.data.digits import digits
from faultlines.data.sources import ArraySource
from faultlines.find.perturb import PerturbationProbe
from faultlines.repair.xbl import xbl


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def flagged_mask(modes, shape) -> np.ndarray:
    mask = np.zeros(shape, bool)
    for mode in modes:
        mask |= np.array(mode.evidence["mask"], bool)
    return mask


def probe_regions(clf, data, **settings):
    """PerturbationProbe's flagged regions on `data`, the data probed first (as `scan` does)."""
    return PerturbationProbe(**settings).find(fl.probe(clf, data, quiet=True), clf=clf, data=data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--cache", default=None)
    args = parser.parse_args()

    probe_rows, fix_rows, single_rows = [], [], []
    for seed in range(args.seeds):
        problem = make_problem("decoy", seed=seed)
        s = problem.splits
        truth = problem.patch_masks["test"][0]
        patch = problem.facts["patch"]
        decoy_clf = fl.Classifier(problem.model(args.cache))
        clean_splits = digits(seed=seed, val_fraction=0.15, test_fraction=0.35)
        clean_module = fl.train.train_small_cnn(clean_splits.train, clean_splits.val, seed=seed)
        clean_clf = fl.Classifier(clean_module)

        modes = probe_regions(decoy_clf, s.test, seed=seed)
        found = flagged_mask(modes, truth.shape)
        corners = []  # IoU of the flagged pixels in each quarter of the image with that corner's patch
        h, w = truth.shape
        for r, rows in ((0, slice(0, h // 2)), (h - patch, slice(h // 2, h))):
            for c, cols in ((0, slice(0, w // 2)), (w - patch, slice(w // 2, w))):
                corner, quarter = np.zeros_like(truth), np.zeros_like(truth)
                corner[r : r + patch, c : c + patch] = True
                quarter[rows, cols] = True
                corners.append(iou(found & quarter, corner))
        clean_on_clean = probe_regions(clean_clf, clean_splits.test, seed=seed)
        clean_on_decoy = probe_regions(clean_clf, s.test, seed=seed)
        both = ArraySource(np.concatenate([s.train.x, s.test.x]), np.concatenate([s.train.y, s.test.y]))
        start = time.perf_counter()
        probe_regions(decoy_clf, both, seed=seed, max_samples=1000)
        seconds = time.perf_counter() - start
        probe_rows.append((seed, len(modes), modes[0].metrics["flip_rate"] if modes else float("nan"), iou(found, truth),
                           min(corners), len(clean_on_clean), len(clean_on_decoy), seconds))

        single = decoy(seed=seed, corners="random")
        single_acc = fl.probe(fl.Classifier(single.model(args.cache)), single.splits.test, quiet=True).accuracy
        single_rows.append((seed, single_acc, fl.probe(clean_clf, single.splits.test, quiet=True).accuracy))

        if not found.any():
            print(f"seed {seed}: the probe flagged nothing; XBL has no mask to use")
            continue
        fixed = xbl(decoy_clf.module, s.train, s.val, s.test, found, seed=seed)
        clean_acc = fl.probe(clean_clf, s.test, quiet=True).accuracy
        clean_clean = fl.probe(clean_clf, clean_splits.test, quiet=True).accuracy
        t = fixed.table
        fix_rows.append((seed, t["original"]["test_accuracy"], t["occlusion"]["test_accuracy"], t["xbl"]["test_accuracy"],
                         fixed.lam, clean_acc, clean_clean, t["original"]["gradient_share_in_mask"], t["xbl"]["gradient_share_in_mask"]))

    print("\n**Probe** (decoy model on the decoy-randomised test split; clean model on clean and decoy test)\n")
    print("| seed | regions flagged | flip rate | IoU with true mask | worst corner IoU | clean model, clean test: flagged | clean model, decoy test: flagged | probe on 1,000 images (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for row in probe_rows:
        print("| {} | {} | {:.2f} | {:.2f} | {:.2f} | {} | {} | {:.1f} |".format(*row))
    print("\n**Accuracy on the decoy-randomised test split** (XBL and the baseline use the probe's flagged mask)\n")
    print("| seed | decoy model | occlusion retrain | XBL | XBL lambda | clean model | clean model on clean test | gradient share in mask: decoy model | XBL |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in fix_rows:
        print("| {} | {:.3f} | {:.3f} | {:.3f} | {:g} | {:.3f} | {:.3f} | {:.3f} | {:.4f} |".format(*row))
    if fix_rows:
        a = np.array([r[1:] for r in fix_rows], float)
        print("| mean | {:.3f} | {:.3f} | {:.3f} | | {:.3f} | {:.3f} | {:.3f} | {:.4f} |".format(*a[:, [0, 1, 2, 4, 5, 6, 7]].mean(0)))

    print("\n**One patch in a random corner** (Decoy-MNIST's layout), accuracy on its randomised test split\n")
    print("| seed | decoy model | clean model |")
    print("|---|---|---|")
    for row in single_rows:
        print("| {} | {:.3f} | {:.3f} |".format(*row))


if __name__ == "__main__":
    main()
