"""Why Spotlight's modes miss SpotCheck-style blindspots: each mode as the scan measures it, and
the discovery figures of two variants, on the family of `benchmarks/spotcheck.py`.

    python benchmarks/spotcheck_modes.py [--seeds 10] [--show 3] [--cache DIR]

For the first --show seeds, one line per Spotlight mode (default settings, found on half the
rows and measured on the other half, as `faultlines scan` does): its rows, whether significant,
error rate, the blindspot it is most precise on with precision and recall, the share of its
*errors* in that blindspot, and how many of its rows are outside every blindspot and read right.
Then discovery and false discovery over all --seeds for Spotlight as it is, without member
growth (grow=False), and at size 0.02.
"""

from __future__ import annotations

import argparse

import numpy as np

import faultlines as fl
from faultlines.bench.runner import confirmed_matches
from faultlines.bench.spotcheck import learned_blindspots, match, score, spotcheck
from faultlines.significance import significant

VARIANTS = {"default": {}, "grow=False": {"grow": False}, "size=0.02": {"size": 0.02}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--show", type=int, default=3)
    parser.add_argument("--cache", default=None)
    args = parser.parse_args()
    totals = {name: np.zeros(4, int) for name in VARIANTS}
    for seed in range(args.seeds):
        problem = spotcheck(seed)
        model = problem.model(args.cache)
        out = fl.probe(fl.Classifier(model, class_names=problem.splits.test.class_names), problem.splits.test, quiet=True)
        masks, wrong = problem.facts["masks"]["test"], ~out.correct
        learned = learned_blindspots(wrong, masks)
        for name, settings in VARIANTS.items():
            run = confirmed_matches([fl.Spotlight(seed=seed, **settings)], out, masks.any(1), seed)["spotlight"]
            s = score([m.members for m in run.modes if significant(m)], masks, learned)
            totals[name] += [s["blindspots"], s["discovered"], s["modes"], s["false"]]
            if name != "default" or seed >= args.show:
                continue
            print(f"seed {seed}: blindspots of {masks.sum(0).tolist()} test images, "
                  f"{[round(float(wrong[masks[:, b]].mean()), 2) for b in range(masks.shape[1])]} wrong")
            for m in run.modes:
                precision, recall = match(m.members, masks)
                among_errors = match(m.members[wrong[m.members]], masks)[0]
                b = int(np.argmax(precision))
                outside_right = int((~masks.any(1)[m.members] & ~wrong[m.members]).sum())
                print(f"  {m.id}: {len(m.members)} rows, {'significant' if significant(m) else 'not significant'}, "
                      f"{wrong[m.members].mean():.2f} wrong; blindspot {b}: precision {precision[b]:.2f}, recall {recall[b]:.2f}, "
                      f"{among_errors[b]:.2f} of its errors; {outside_right} rows outside every blindspot read right")
    print(f"\nSpotlight over seeds 0-{args.seeds - 1}:")
    for name, (spots, found, modes, false) in totals.items():
        print(f"  {name}: {found} of {spots} blindspots discovered; {false} of {modes} significant modes match none")


if __name__ == "__main__":
    main()
