"""Spotlight at scale: 100,000 x 128 Gaussian embeddings with one planted high-loss blob.

    python benchmarks/spotlight_scale.py [--n 100000] [--dim 128] [--repeats 1]

Prints a markdown table: wall time for 5 spotlights, and the precision and recall of the top
spotlight's members against the planted blob (1% of the points). Run on 2 CPU cores for
the figure in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import time

import torch

from faultlines.bench.blobs import planted_blob
from faultlines.find.spotlight import Spotlight


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    print(f"torch threads: {torch.get_num_threads()}\n")
    print("| n | dim | kernel | seed | 5 spotlights (s) | top precision | top recall | top size |")
    print("|---|---|---|---|---|---|---|---|")
    for seed in range(args.repeats):
        out, blob = planted_blob(n=args.n, dim=args.dim, seed=seed)
        for kernel in ("linear", "gaussian"):
            start = time.perf_counter()
            modes = Spotlight(size=0.01, n_spotlights=5, kernel=kernel, seed=seed).find(out)
            seconds = time.perf_counter() - start
            top = modes[0].members
            precision, recall = blob[top].mean(), blob[top].sum() / blob.sum()
            print(f"| {args.n} | {args.dim} | {kernel} | {seed} | {seconds:.1f} | {precision:.3f} | {recall:.3f} | {len(top)} |")


if __name__ == "__main__":
    main()
