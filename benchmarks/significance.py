"""How many modes hold up on held-out rows: the demo's digits over seeds, and tables with no failure.

    python benchmarks/significance.py [--seeds 5] [--null-seeds 100]

For each seed, the demo's SmallCNN (trained on the digits' train split) is scanned on its
test split as `faultlines demo --finders spotlight,error-mixture` does: modes found on half of
the test digits and measured on the other half. Printed per seed: the test errors, the modes,
how many look alarming where they were found (in-sample error lift of 3 or more), and how
many are significant at alpha 0.05 on the held-out half.

Then the same finders on tables where nothing is wrong systematically: random embeddings, the
model wrong on a random 10% of rows (`faultlines.bench.blobs.random_errors`: 400 rows,
3 classes, as in tests/test_significance.py): the share of seeds with any significant mode is the run-wise
false-positive rate, which Benjamini-Hochberg holds at or below alpha.
"""

from __future__ import annotations

import argparse

import faultlines as fl
from faultlines.bench.blobs import random_errors
from faultlines.significance import significant


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--null-seeds", type=int, default=100)
    args = parser.parse_args()

    print("| seed | test errors | modes | in-sample lift >= 3 | significant on held-out rows |")
    print("|---|---|---|---|---|")
    for seed in range(args.seeds):
        splits = fl.data.digits(seed=seed)
        clf = fl.Classifier(fl.train.train_small_cnn(splits.train, splits.val, seed=seed, quiet=True))
        result = fl.scan(clf, splits, "spotlight,error-mixture", quiet=True, seed=seed)
        alarming = sum(m.metrics["error_lift"] >= 3 for m in result.modes)
        print(f"| {seed} | {(~result.outputs.correct).sum()} of {result.outputs.n} | {len(result.modes)} | {alarming} | "
              f"{sum(significant(m) for m in result.modes)} |")

    runs = 0
    for seed in range(args.null_seeds):
        result = fl.scan(None, random_errors(seed), "spotlight,error-mixture", quiet=True, seed=seed)
        runs += any(significant(m) for m in result.modes)
    print(f"\nrandom-error tables: {runs} of {args.null_seeds} runs have a significant mode (alpha 0.05)")


if __name__ == "__main__":
    main()
