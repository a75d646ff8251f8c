"""Are Spotlight's modes a property of the model, or of the sixth decimal of its embeddings?
Each table is scanned as `faultlines scan` scans it (default settings, found on half the rows,
measured on the other half), once as it is and once with every embedding moved by noise of
`--noise` times the embeddings' standard deviation (the Ray probe's outputs differ from the
local probe's by about 1e-5). Prints, per table, the modes each time, whether the counts agree
and the Jaccard overlap of each mode with its best match in the other run. With --ray, the
second run of each SpotCheck table is instead the outputs of the Ray probe
(`faultlines.distributed.probe_ray`, what `faultlines scan --engine ray` runs, on a local Ray
instance), and the blob tables (which have no model to run) are left out.

    python benchmarks/stability.py [--spotcheck 10] [--noise 1e-5] [--ray] [--cache DIR]

Tables: the SpotCheck-style family's test splits (seeds 0 to --spotcheck - 1, models cached
under --cache as `benchmarks/spotcheck.py` trains them) and 100,000 x 128 blob tables
(`faultlines.bench.blobs.write_scale_table`) with centres at random and 2 and 1 blob radii apart.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace

import numpy as np

import faultlines as fl
from faultlines.bench.blobs import write_scale_table
from faultlines.bench.runner import confirmed_matches
from faultlines.bench.spotcheck import spotcheck
from faultlines.data.files import load
from faultlines.distributed import probe_ray
from faultlines.significance import significant


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    return len(np.intersect1d(a, b)) / max(1, len(np.union1d(a, b)))


def moved(outputs, seed: int, noise: float):
    """`outputs` with every embedding moved by Gaussian noise of `noise` times their standard deviation."""
    rng = np.random.default_rng(seed)
    emb = np.asarray(outputs.embeddings)
    return replace(outputs, embeddings=(emb + noise * emb.std() * rng.standard_normal(emb.shape, dtype=np.float32)).astype(np.float32))


def compare(name: str, outputs, other, truth: np.ndarray, seed: int) -> tuple[bool, float]:
    """Scan `outputs` and `other` (the same rows, moved or probed another way; `truth`: the
    planted rows, which the bench's matching needs, not used here); print and return (same
    count of significant modes, the worst best-match Jaccard among them, 1.0 when neither has any)."""
    print(f"<!-- {name}: embeddings differ by at most {np.abs(np.asarray(outputs.embeddings) - np.asarray(other.embeddings)).max():.2g} -->", flush=True)
    runs = []
    for out in (outputs, other):
        run = confirmed_matches([fl.Spotlight(seed=seed)], out, truth, seed)["spotlight"]
        runs.append([m.members for m in run.modes if significant(m)])
    a, b = runs
    worst = min([max((jaccard(m, o) for o in b), default=0.0) for m in a] + [max((jaccard(m, o) for o in a), default=0.0) for m in b],
                default=1.0)
    print(f"| {name} | {[len(m) for m in a]} | {[len(m) for m in b]} | {len(a) == len(b)} | {worst:.3f} |", flush=True)
    return len(a) == len(b), worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spotcheck", type=int, default=10)
    parser.add_argument("--noise", type=float, default=1e-5)
    parser.add_argument("--ray", action="store_true", help="compare the local probe with the Ray probe instead of with noise")
    parser.add_argument("--cache", default=None)
    args = parser.parse_args()
    print(f"`python benchmarks/stability.py --spotcheck {args.spotcheck}{' --ray' if args.ray else f' --noise {args.noise:g}'}`\n")
    print(f"| table | significant modes' sizes | {'Ray probe' if args.ray else 'with noise'} | same count | worst matched Jaccard |\n|---|---|---|---|---|")
    results = []
    for seed in range(args.spotcheck):
        problem = spotcheck(seed)
        clf = fl.Classifier(problem.model(args.cache), class_names=problem.splits.test.class_names)
        truth = problem.facts["masks"]["test"].any(1)
        local = fl.probe(clf, problem.splits.test, quiet=True)
        other = probe_ray(clf, problem.splits.test, quiet=True) if args.ray else moved(local, seed, args.noise)
        results.append(compare(f"spotcheck seed {seed}", local, other, truth, seed))
    for separation in () if args.ray else (None, 2.0, 1.0):
        with tempfile.TemporaryDirectory() as folder:
            blob_of = write_scale_table(folder, n=100_000, dim=128, blobs=(500, 200, 100), seed=0, separation=separation)
            placed = "at random" if separation is None else f"{separation:g} radii apart"
            table = load(folder).to_outputs()
            results.append(compare(f"100,000 x 128, blobs {placed}", table, moved(table, 0, args.noise), blob_of >= 0, 0))
    same = sum(s for s, _ in results)
    print(f"\n{same} of {len(results)} tables give the same count; the worst matched Jaccard is {min(j for _, j in results):.3f}; "
          f"{sum(j >= 0.9 for _, j in results)} of {len(results)} tables match every mode at >= 0.9")


if __name__ == "__main__":
    main()
