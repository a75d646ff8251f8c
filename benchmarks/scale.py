"""Scan a large embedding table through the command line: time per stage, peak memory, run
folder size, and whether each planted blob is found.

    python benchmarks/scale.py                        # 1,000,000 x 512, blobs of 5,000, 2,000, 1,000 rows
    python benchmarks/scale.py --n 100000 --dim 128   # blobs scaled with n: 500, 200, 100 rows
    python benchmarks/scale.py --size 0.001           # a spotlight size other than the command's default
    python benchmarks/scale.py --separation 2         # blob centres two blob radii apart: nearer each other than the bulk

The table (`faultlines.bench.blobs.write_scale_table`: N(0, I) float32 embeddings, 10 classes,
the model wrong on 10% of rows at random, each blob wrong on 90% of its rows) is written once
as a folder of .npy files under --cache, then scanned as a user would:

    faultlines scan --data TABLE --out RUN --quiet [--size SIZE]

Peak RSS is the scan process's (getrusage of the child); it counts the pages of the
memory-mapped embeddings the scan touched. The run folder's size counts embeddings.npy at 0
when it is a hard link to the table's own file (the same bytes on disk once).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from faultlines.bench.blobs import write_scale_table


def folder_bytes(run: Path, table: Path) -> int:
    """Bytes the run folder adds on disk: a file that is a hard link to the table's is not counted."""
    linked = {(f.stat().st_dev, f.stat().st_ino) for f in table.iterdir()}
    return sum(f.stat().st_size for f in run.rglob("*") if f.is_file() and (f.stat().st_dev, f.stat().st_ino) not in linked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--size", type=float, default=None, help="--size for the scan (default: the command's own)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/faultlines-scale"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--separation", type=float, default=None,
                        help="blob centres this many blob radii apart (default: each centre drawn at random)")
    args = parser.parse_args()

    blobs = tuple(round(b * args.n / 1_000_000) for b in (5000, 2000, 1000))
    apart = "" if args.separation is None else f"-sep{args.separation:g}"
    table = args.cache / f"table-{args.n}x{args.dim}-s{args.seed}{apart}"
    truth_file = table / "blob_of.npy"
    if not truth_file.exists():
        blob_of = write_scale_table(table, n=args.n, dim=args.dim, blobs=blobs, seed=args.seed, separation=args.separation)
        np.save(truth_file, blob_of)  # not read by the scan: it reads embeddings, labels, probs
    blob_of = np.load(truth_file)
    run = args.cache / f"run-{args.n}x{args.dim}"
    command = [sys.executable, "-m", "faultlines", "scan", "--data", str(table), "--out", str(run), "--quiet"]
    command += [] if args.size is None else ["--size", str(args.size)]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    emb_bytes = (table / "embeddings.npy").stat().st_size
    record = json.loads((run / "scan.json").read_text())
    members = pq.read_table(run / "members.parquet").to_pydict()
    rows, ids = np.asarray(members["row"]), np.asarray(members["mode"])
    modes = {m["id"]: m for m in record["modes"]}
    sets = {mode_id: rows[ids == mode_id] for mode_id in modes}
    timings = record["config"]["timings"]

    placed = "centres at random" if args.separation is None else f"centres {args.separation:g} blob radii apart"
    print(f"{args.n:,} x {args.dim} float32 ({emb_bytes / 1e9:.2f} GB), blobs {', '.join(map(str, blobs))} ({placed}); "
          f"`faultlines scan{'' if args.size is None else f' --size {args.size:g}'}` on {os.cpu_count()} cores\n")
    staged = sum(timings.values())
    print("| wall (s) | " + " | ".join(f"{k} (s)" for k in timings) + " | load, store, report, start-up (s) | peak RSS (GB) | RSS / embedding bytes | run folder / embedding bytes |")
    print("|---|" + "---|" * (len(timings) + 4))
    print(f"| {wall:.1f} | " + " | ".join(f"{v:.1f}" for v in timings.values())
          + f" | {wall - staged:.1f} | {peak / 1e9:.2f} | {peak / emb_bytes:.2f} | {folder_bytes(run, table) / emb_bytes:.3f} |\n")
    print("| blob | rows | best mode | its members | recall | precision | significant (held-out q) |")
    print("|---|---|---|---|---|---|---|")
    for b, size in enumerate(blobs):
        truth = blob_of == b
        best = max(sets, key=lambda i: truth[sets[i]].sum() / truth.sum()) if sets else None
        if best is None:
            print(f"| {b} | {size} | - | - | 0 | - | - |")
            continue
        hits = truth[sets[best]].sum()
        sig = modes[best]["evidence"]["significance"]
        print(f"| {b} | {size} | {best} | {len(sets[best])} | {hits / truth.sum():.3f} | {hits / len(sets[best]):.3f} | "
              f"{sig['significant']} ({modes[best]['metrics'].get('q_value', float('nan')):.2g}) |")
    ids_ = list(sets)
    overlap = max((len(np.intersect1d(sets[a], sets[b])) / min(len(sets[a]), len(sets[b]))
                   for i, a in enumerate(ids_) for b in ids_[i + 1:] if len(sets[a]) and len(sets[b])), default=0.0)
    significant = [i for i in ids_ if modes[i]["evidence"]["significance"]["significant"]]
    print(f"\nmodes: {len(ids_)} ({', '.join(f'{i}: {len(sets[i])} rows' for i in ids_)}); significant: {len(significant)}; "
          f"largest overlap between two modes: {overlap:.2f} of the smaller")


if __name__ == "__main__":
    main()
