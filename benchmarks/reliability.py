"""The reliability table: every family of generated, hostile and faulty input, the cases tried,
and how many held (BENCHMARKS.md, "Reliability").

    python benchmarks/reliability.py [--examples 1]

Runs the robustness tests (tests/test_robustness.py, tests/test_faults.py and the Ctrl-C tests
of `label`, `fix` and `fix --xbl`) with FAULTLINES_EXAMPLES=N (each property test tries N
times its default number of cases) and prints one row per family: cases tried; cases that held
(the promise kept: a valid result, or a one-line FaultlinesError, or for a fault the run left
whole); of those, how many ended in a one-line refusal (or, for Ctrl-C, an interruption).
Exits non-zero if any test failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: family -> what a case is, in the table
FAMILIES = {
    "npz": ".npz arrays (any dtype, shape, NaN/inf, ragged, object)",
    "tables": "embedding tables: .parquet, .npz, .npy folder (columns, types, ragged, NaN, unicode)",
    "images": "image folders (modes, sizes, corrupt/truncated/empty/non-image files, empty classes)",
    "outputs": "`Outputs.from_probs` (labels, probs, embeddings of any shape and dtype)",
    "settings": "every finder's settings (any value), and Spotlight / ErrorMixture run on the accepted ones",
    "hostile": "pickle payloads in .npz, .npy, a pickled model (marker file must stay absent)",
    "models": "truncated / bit-flipped / zeroed .pt2, TorchScript, checkpoint; misbehaving models",
    "ctrl-c": "SIGINT to scan, label, fix, fix --xbl at a spread of moments, and while typer builds or parses the command line",
    "sigkill": "SIGKILL to a writer at random moments; a kill between the two renames",
    "concurrency": "two scans to one --out; save_run while another process holds the folder",
    "disk": "unwritable output folder; file-size limit (EFBIG) at 3 sizes; ENOSPC in every writer",
    "tampered": "run folders with a file deleted, truncated, replaced, bit-flipped, its JSON mangled, or a newer format",
    "report": "script and attribute-injection payloads in class names, texts, file names, summaries",
}

TESTS = ["tests/test_robustness.py", "tests/test_faults.py",
         "tests/test_label_fix.py::test_ctrl_c_during_label_or_fix_changes_nothing",
         "tests/test_perturb_xbl.py::test_ctrl_c_during_an_xbl_fix_changes_nothing"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=float, default=1.0, help="multiple of each property test's default number of cases")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        counts_file = Path(d) / "counts.json"
        env = os.environ | {"FAULTLINES_EXAMPLES": str(args.examples), "FAULTLINES_RELIABILITY_COUNTS": str(counts_file)}
        code = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", *TESTS], cwd=ROOT, env=env).returncode
        counts = json.loads(counts_file.read_text()) if counts_file.exists() else {}
    command = "python benchmarks/reliability.py" + (f" --examples {args.examples:g}" if args.examples != 1 else "")
    print(f"\n`{command}`\n")
    print("| family | cases | tried | held | of which refused / interrupted |")
    print("|---|---|---:|---:|---:|")
    for family, what in FAMILIES.items():
        c = counts.get(family, {"tried": 0, "held": 0, "refused": 0})
        print(f"| {family} | {what} | {c['tried']} | {c['held']} | {c['refused']} |")
    total = {k: sum(c[k] for c in counts.values()) for k in ("tried", "held", "refused")}
    print(f"| **all** | | **{total['tried']}** | **{total['held']}** | {total['refused']} |")
    sys.exit(code)


if __name__ == "__main__":
    main()
