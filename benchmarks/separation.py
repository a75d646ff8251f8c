"""Three failure blobs at several separations, sizes and widths: is each blob the top of a mode
of its own? Spotlight as `faultlines scan`'s default (`fl.Spotlight()`, on every row, not
confirmed), on `faultlines.bench.blobs.write_scale_table` tables with the blob centres
`--separations` blob radii apart.

    python benchmarks/separation.py [--n 20000] [--dims 16,64] [--separations 1,2,3] [--seeds 1,2]

Prints one row per table: the modes' sizes, and for each blob the precision / recall of the
mode that holds most of it, and the largest overlap between two modes (of the smaller).
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np

import faultlines as fl
from faultlines.bench.blobs import write_scale_table
from faultlines.data.files import load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--dims", default="16,64")
    parser.add_argument("--separations", default="1,2,3")
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--blobs", default="600,400,300")
    args = parser.parse_args()
    blobs = tuple(int(b) for b in args.blobs.split(","))
    print(f"`python benchmarks/separation.py --n {args.n} --dims {args.dims} --separations {args.separations} "
          f"--seeds {args.seeds} --blobs {args.blobs}`\n")
    print("| dim | separation | seed | modes (rows) | " + " | ".join(f"blob {b} ({size}): precision / recall" for b, size in enumerate(blobs))
          + " | largest overlap |")
    print("|---|---|---|---|" + "---|" * len(blobs) + "---|")
    for dim in (int(d) for d in args.dims.split(",")):
        for separation in (float(s) for s in args.separations.split(",")):
            for seed in (int(s) for s in args.seeds.split(",")):
                with tempfile.TemporaryDirectory() as folder:
                    blob_of = write_scale_table(folder, n=args.n, dim=dim, blobs=blobs, seed=seed, separation=separation)
                    modes = fl.Spotlight().find(load(folder).to_outputs())
                cells = []
                for b in range(len(blobs)):
                    truth = blob_of == b
                    best = max(modes, key=lambda m: truth[m.members].sum()) if modes else None
                    cells.append("-" if best is None else f"{truth[best.members].mean():.2f} / {truth[best.members].sum() / truth.sum():.2f}")
                sets = [m.members for m in modes]
                overlap = max((len(np.intersect1d(a, c)) / min(len(a), len(c)) for i, a in enumerate(sets) for c in sets[i + 1:]),
                              default=0.0)
                print(f"| {dim} | {separation:g} | {seed} | {', '.join(str(len(m)) for m in sets)} | " + " | ".join(cells)
                      + f" | {overlap:.2f} |", flush=True)


if __name__ == "__main__":
    main()
