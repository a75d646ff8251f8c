"""The wall-clock times the README quotes: the demo, the demo with every finder, and the test
suite, on this machine as it is and, with --busy, beside one CPU-bound neighbour process.

    python benchmarks/readme_timings.py [--runs demo,all,tests] [--busy]

Each command runs in a fresh process from this checkout's environment (the README's install),
in a temporary folder for its output. Prints a markdown table: command, seconds, exit code.
The README gives the quiet figures and says that a busy machine is slower; run it once quiet
(nothing else running) and once with --busy to see by how much.
"""

from __future__ import annotations

import argparse
import multiprocessing
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAULTLINES = str(Path(sys.executable).parent / "faultlines")

#: name -> (what the README calls it, the command; {out} is a fresh folder)
RUNS = {
    "demo": ("faultlines demo", [FAULTLINES, "demo", "--out", "{out}", "-q"]),
    "all": ("faultlines demo --finders all --density", [FAULTLINES, "demo", "--finders", "all", "--density", "--out", "{out}", "-q"]),
    "tests": ("python -m pytest (the README's test command, after the install)", [sys.executable, "-m", "pytest"]),
}


def _spin() -> None:  # the CPU-bound neighbour: one core, busy until killed
    while True:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="demo,all", help="comma-separated: " + ", ".join(RUNS))
    parser.add_argument("--busy", action="store_true", help="with one CPU-bound process running beside each command")
    args = parser.parse_args()
    names = [n.strip() for n in args.runs.split(",")]
    unknown = [n for n in names if n not in RUNS]
    if unknown:
        parser.error(f"unknown run(s) {unknown}; choose from {', '.join(RUNS)}")
    neighbour = multiprocessing.Process(target=_spin, daemon=True) if args.busy else None
    if neighbour is not None:
        neighbour.start()
    rows = []
    try:
        for name in names:
            title, command = RUNS[name]
            with tempfile.TemporaryDirectory() as tmp:
                command = [part.replace("{out}", str(Path(tmp) / "run")) for part in command]
                start = time.perf_counter()
                done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
                rows.append((title, time.perf_counter() - start, done.returncode))
            if done.returncode:
                sys.stderr.write(done.stderr[-2000:] + done.stdout[-2000:])
    finally:
        if neighbour is not None:
            neighbour.kill()
    machine = "beside one CPU-bound process" if args.busy else "as it is (run it on a quiet machine)"
    print(f"`python benchmarks/readme_timings.py --runs {','.join(names)}{' --busy' if args.busy else ''}`: "
          f"{multiprocessing.cpu_count()} CPUs, {machine}\n")
    print("| command | seconds | exit |\n|---|---:|---:|")
    for title, seconds, code in rows:
        print(f"| {title} | {seconds:.1f} | {code} |")


if __name__ == "__main__":
    main()
