"""The full demo's time per stage, here and (with --before REV) at an earlier commit, side by side.

    python benchmarks/demo_stages.py [--before REV] [--threads N]

For each checkout (this one, and REV checked out into a temporary git worktree), in a fresh
process each: the whole command `faultlines demo --finders all --density` (wall seconds), and
the same steps through the Python API, each timed (training the CNN, training Defuse's VAE,
each stage of `scan` from its recorded timings, writing the run folder with its report).
Prints a markdown table: one row per stage, seconds before and after, and their ratio.
`--threads N` runs both with OMP_NUM_THREADS=N (torch's thread pool), as on a machine that
shows torch more CPUs than the process may use.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Runs in the checkout under test (on its PYTHONPATH): the demo's steps, each timed; prints JSON.
STEPS = r"""
import json, sys, tempfile, time
from faultlines.data.digits import CLASS_NAMES, digits
from faultlines.generative import VAE
from faultlines.model import Classifier, checkpoint_bytes
from faultlines.registry import build
from faultlines.scan import scan
from faultlines.store import save_run
from faultlines.train import train_small_cnn

seconds = {}
clock = time.perf_counter()
def lap(name):
    global clock
    now = time.perf_counter()
    seconds[name] = now - clock
    clock = now

splits = digits(seed=0)
finders = build("all", seed=0, quiet=True)
model = train_small_cnn(splits.train, splits.val, seed=0, quiet=True)
lap("training the model")
defuse = next(f for f in finders if f.name == "defuse")
defuse.set_params(vae=VAE().fit(splits.train, epochs=defuse.vae_epochs, seed=0, quiet=True))
lap("training the VAE")
result = scan(Classifier(model, class_names=CLASS_NAMES), splits, finders, strict=False, quiet=True, seed=0)
lap("scan")
seconds |= {f"scan: {k}": v for k, v in result.config["timings"].items()}
with tempfile.TemporaryDirectory() as out:
    save_run(result, out + "/run", model=checkpoint_bytes(model, CLASS_NAMES), vae=checkpoint_bytes(defuse.vae_))
lap("writing the run folder and report")
print(json.dumps(seconds))
"""


def measure(checkout: Path, threads: int | None = None) -> dict[str, float]:
    """Seconds per stage in `checkout`, and the whole command's."""
    env = os.environ | {"PYTHONPATH": str(checkout)} | ({"OMP_NUM_THREADS": str(threads)} if threads else {})
    found = json.loads(subprocess.run([sys.executable, "-c", STEPS], env=env, capture_output=True, text=True, check=True,
                                      cwd=checkout).stdout.strip().splitlines()[-1])
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "faultlines", "demo", "--finders", "all", "--density", "--out", f"{out}/run", "--quiet"],
                       env=env, cwd=checkout, check=True, capture_output=True)
        found["the whole command (faultlines demo --finders all --density)"] = time.perf_counter() - start
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="an earlier commit to compare with")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS for both runs")
    args = parser.parse_args()
    runs = {}
    if args.before:
        with tempfile.TemporaryDirectory() as folder:
            tree = Path(folder) / "before"
            subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), args.before], cwd=ROOT, check=True)
            try:
                runs["before"] = measure(tree, args.threads)
            finally:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=True)
    runs["now"] = measure(ROOT, args.threads)
    stages = list(dict.fromkeys([*runs["now"], *runs.get("before", {})]))
    head = " | ".join(f"{name} (s)" for name in runs) + (" | now / before" if len(runs) == 2 else "")
    print(f"| stage | {head} |\n|---|" + "---:|" * (len(runs) + (len(runs) == 2)))
    for stage in stages:
        cells = [f"{runs[name][stage]:.1f}" if stage in runs[name] else "-" for name in runs]
        if len(runs) == 2:
            a, b = runs["before"].get(stage), runs["now"].get(stage)
            cells.append(f"{b / a:.2f}" if a and b and a > 0.05 else "-")
        print(f"| {stage} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
