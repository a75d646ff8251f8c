"""Why the planted slice's best mode is or is not confirmed: that mode and the slice, seed by seed.

    python benchmarks/confirmation.py [--problems shift,rare,decoy] [--seeds 3] [--first-seed 0]
                                      [--size S] [--layer NAME] [--all-modes]
                                      [--sentiment-dir DIR]

`faultlines bench` counts, per problem, the seeds in which the mode that best matches the
planted slice (average precision) is significant as `scan` measures it: for the finders that
choose by errors (spotlight, error-mixture) found on half of the test split and measured on the
other half; for the density finder, fitted on the training split and measured on every test
row; for `scan`, all three in one run (one Benjamini-Hochberg correction across their modes).
This prints what stands behind each count. Per problem and seed:

- the planted slice: its rows, its held-out p-value (the most any mode could show), and how
  contiguous it is where the finders look, in the standardised embedding: the share of slice
  rows among the 10 nearest neighbours of slice rows (against the slice's share of all rows:
  equal means no region at all), the share of those neighbours that have the same label, and
  how well the density finder's score (-log p of the features under the flow fitted on the
  training split) tells the slice's rows from the others (AUROC);
- per finder, then for the three together (as `scan` runs them; the finder of the best mode in
  brackets): how many modes, then the best-matching mode's average precision against the
  slice, rows, rows measured on (held-out rows; every row for the density finder), share of
  its rows in the slice, error rate on the rows measured against the other measured rows', its
  q-value, and whether it is significant.
  `--all-modes` prints every mode so, the best-matching one marked with a *.

`--first-seed 3 --seeds 5` runs seeds the BENCHMARKS tables do not use (each new seed trains
its models first, about 10 s each); `--size` sets Spotlight's size, to see whether a miss is a
matter of that setting; `--layer` reads the embeddings at another layer of the model (for the
digits' SmallCNN, `features`: the 512 outputs of its convolutions).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

from faultlines.arrays import fit_space, to_space
from faultlines.bench.runner import (
    ALL_PROBLEMS,
    OURS,
    SCAN,
    confirmed_matches,
    load_problem,
    make_finder,
    planted_p,
)
from faultlines.model import Classifier
from faultlines.probe import probe
from faultlines.significance import measured_rows, significant

SENTIMENT = Path("../shared/data/sentiment-labelled-sentences")


def neighbourhood(outputs, truth: np.ndarray, k: int = 10) -> tuple[float, float]:
    """Share of slice rows, and of same-label rows, among the `k` nearest neighbours of slice rows,
    in the standardised space Spotlight searches (`faultlines.arrays.fit_space`, no PCA)."""
    x = to_space(outputs.embeddings, *fit_space(outputs.embeddings, None, None))
    idx = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x[truth], return_distance=False)[:, 1:]
    return float(truth[idx].mean()), float((outputs.labels[idx] == outputs.labels[truth][:, None]).mean())


def _measured(mode, outputs, truth: np.ndarray, heldout: np.ndarray) -> str:
    """A mode's rows, rows it is measured on, share in the slice, error there (the rest's), q, significance: table cells."""
    wrong = ~outputs.correct
    inside, measured = measured_rows(mode, outputs, heldout, mode.evidence["significance"]["rows"])
    rest = np.setdiff1d(measured, inside)
    error = f"{wrong[inside].mean():.2f}" if len(inside) else "-"
    return (f"{len(mode.members)} | {len(inside)} | {truth[mode.members].mean():.2f} | {error} ({wrong[rest].mean():.2f}) | "
            f"{mode.metrics['q_value']:.2g} | {'yes' if significant(mode) else 'no'} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default=",".join(p for p in ALL_PROBLEMS if p != "text" or SENTIMENT.is_dir()))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--size", type=float, default=None, help="Spotlight's size (default: its own)")
    parser.add_argument("--layer", default=None, help="the layer to read embeddings at (default: the model's last nn.Linear's input)")
    parser.add_argument("--all-modes", action="store_true", help="print every mode, not only the best-matching one")
    parser.add_argument("--sentiment-dir", type=Path, default=SENTIMENT)
    args = parser.parse_args()

    counts: dict[tuple[str, str], list[bool]] = defaultdict(list)
    print("| problem | seed | slice rows | slice held-out p | slice share of slice rows' neighbours (of all rows) | same label | "
          "flow's AUROC, slice vs rest | finder | modes | mode's AP | rows | rows measured | share in slice | error measured (rest) | q | significant |")
    print("|" + "---|" * 16)
    for name in args.problems.split(","):
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            problem = load_problem(name, seed, sentiment_dir=args.sentiment_dir)
            clf = Classifier(problem.model(), layer=args.layer)
            outputs = probe(clf, problem.splits.test, quiet=True)
            fitting = {"train": probe(clf, problem.splits.train, quiet=True, source="train"),
                       "val": probe(clf, problem.splits.val, quiet=True, source="val")}
            truth = problem.in_slice["test"]
            near, same = neighbourhood(outputs, truth)
            finders = {f: make_finder(f, seed, **({"size": args.size} if f == "spotlight" and args.size is not None else {})) for f in OURS}
            # fitted once here (its finds then use it as it is): how well -log p(features) tells the slice apart
            auroc = roc_auc_score(truth, finders["density"].fit(fitting["train"], fitting["val"]).score(outputs))
            for finder_name, run in confirmed_matches(list(finders.values()), outputs, truth, seed, fitting).items():
                counts[name, finder_name].append(run.best is not None and significant(run.best))
                lead = (f"| {name} | {seed} | {truth.sum()} | {planted_p(outputs, truth, run.heldout):.2g} | {near:.2f} ({truth.mean():.2f}) | "
                        f"{same:.2f} | {auroc:.3f} | {finder_name}")
                if run.best is None:
                    print(lead + " | 0 | - | - | - | - | - | - | - | no |")
                for mode, ap in zip(run.modes, run.aps):
                    if mode is run.best or args.all_modes:
                        mark = "*" if args.all_modes and mode is run.best else ""
                        which = f" ({mode.method})" if finder_name == SCAN else ""
                        print(f"{lead}{which} | {len(run.modes)} | {ap:.3f}{mark} | {_measured(mode, outputs, truth, run.heldout)}", flush=True)
    print()
    for (name, finder_name), hits in counts.items():
        print(f"{name}, {finder_name}: best mode significant in {sum(hits)} of {len(hits)} seeds")


if __name__ == "__main__":
    main()
