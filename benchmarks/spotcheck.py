"""Several blindspots per data set, after SpotCheck (`faultlines.bench.spotcheck`): discovery and
false-discovery rates of `faultlines scan` (public CLI, default settings), ErrorMixture and the
peers (PlaneSpot, k-means on the errors, SliceLine, cleanlab's groups), all on the same embeddings.

    python benchmarks/spotcheck.py [--seeds 10] [--first-seed 0] [--cache DIR] [--json FILE]

Each seed draws 1-3 blindspots and trains a SmallCNN on its data (about 40 s, cached under
--cache, default ~/.cache/faultlines); a blindspot counts when the model gets at least half of
its test images wrong. Prints the summary table and one row per data set and method.
"""

from __future__ import annotations

import argparse
import json
import time

from faultlines.bench.spotcheck import scan_blindspots, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--cache", default=None)
    parser.add_argument("--json", default=None, help="also write every row to this file")
    args = parser.parse_args()
    start, rows = time.perf_counter(), []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        rows += scan_blindspots(seed, args.cache)
    print(f"`python benchmarks/spotcheck.py --seeds {args.seeds} --first-seed {args.first_seed}` "
          f"({time.perf_counter() - start:.0f} s)\n")
    print("| method | data sets | blindspots learned | discovered | discovery rate | modes reported | false-discovery rate |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for s in summary(rows):
        print(f"| {s['method']} | {s['data sets']} | {s['blindspots']} | {s['discovered']} | {s['discovery rate']:.2f} | "
              f"{s['modes']} | {s['false-discovery rate']:.2f} |")
    print("\n| seed | method | planted | learned | accuracy | discovered | modes | false |\n|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['seed']} | {r['method']} | {r['planted']} | {r['learned']} | {r['accuracy']:.3f} | {r['discovered']} | "
              f"{r['modes']} | {r['false']} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
