"""Models without classes, and a scikit-learn classifier (issue 29): recall, precision and
significance of planted failure regions, and false modes on tables with nothing planted.

    python benchmarks/outcomes.py [--seeds 10] [--sentences ../shared/data/sentiment-labelled-sentences]
                                  [--problems regression,evaluation,sklearn] [--size S]

Every table is scanned as `faultlines scan` scans it (`fl.scan`, default settings: Spotlight,
half the rows held out to confirm its modes; `--size` sets the spotlight's size instead). A planted region is found when the top
significant mode holds at least half of its rows with precision at least 0.5 (the top mode's
recall and precision are listed too). Problems, each over --seeds seeds:

- regression: 2,000 rows of 16-d Gaussian embeddings, a blob of 1%, 3% or 10% of them whose
  per-row losses (exponential, mean 1) are raised by 1.5 or 3; tested on the losses (the
  Mann-Whitney U test); and a null table (no blob raised).
- evaluation: the UCI sentiment sentences (3,000, amazon / imdb / yelp) as an LLM evaluation:
  a pass/fail per sentence, failing at 10% except one site's sentences (45%); no embeddings
  given (the scan embeds the texts with MiniLM, offline); a null table fails at 10% everywhere.
- scikit-learn: the digits as a table, a StandardScaler + LogisticRegression pipeline taught
  (in its training half) to read the rarer of two k-means clusters of 7s as 1, scanned on the
  other half; a null pipeline taught nothing wrong.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

import faultlines as fl
from faultlines.bench.outcomes import regression_table, taught_digits
from faultlines.significance import significant


def sentences(folder: Path, seed: int, failing: float):
    from faultlines.data.text import read_labelled_sentences

    texts, site = [], []
    for name in ("amazon_cells_labelled.txt", "imdb_labelled.txt", "yelp_labelled.txt"):
        t, _ = read_labelled_sentences(folder / name)
        texts, site = texts + t, site + [name.split("_")[0]] * len(t)
    site = np.array(site)
    rng = np.random.default_rng(seed)
    failed = rng.random(len(texts)) < np.where(site == "yelp", failing, 0.1)
    return texts, failed, site == "yelp"


def top(result, truth: np.ndarray) -> tuple[bool, float, float, bool]:
    """(found, the top significant mode's recall and precision, any significant mode)."""
    kept = [m for m in result.modes if significant(m)]
    if not kept:
        return False, 0.0, 0.0, False
    m = kept[0]
    recall, precision = truth[m.members].sum() / max(1, truth.sum()), truth[m.members].mean()
    return recall >= 0.5 and precision >= 0.5, float(recall), float(precision), True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--problems", default="regression,evaluation,sklearn")
    parser.add_argument("--size", type=float, default=None, help="Spotlight's size (default: its own)")
    parser.add_argument("--sentences", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/sentiment-labelled-sentences"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    problems = args.problems.split(",")
    sized = "" if args.size is None else f" --size {args.size:g}"
    print(f"`python benchmarks/outcomes.py --seeds {args.seeds} --problems {args.problems}{sized}`\n")

    def scan(clf, data, seed):
        return fl.scan(clf, data, [fl.Spotlight(size=args.size, seed=seed)], quiet=True, seed=seed)
    print("| problem | seeds | found | mean recall | mean precision | seeds with a significant mode | seconds per scan |")
    print("|---|---:|---:|---:|---:|---:|---:|")

    def row(name: str, runs) -> None:
        found, recall, precision, any_sig, seconds = zip(*runs)
        print(f"| {name} | {len(runs)} | {sum(found)} | {np.mean(recall):.2f} | {np.mean(precision):.2f} | {sum(any_sig)} | "
              f"{np.mean(seconds):.1f} |", flush=True)

    def timed(make, *a):
        start = time.perf_counter()
        result = make(*a)
        return result, time.perf_counter() - start

    for share in (0.01, 0.03, 0.1) if "regression" in problems else ():
        for shift in (1.5, 3.0):
            runs = []
            for seed in range(args.seeds):
                table, blob = regression_table(seed, share, shift)
                result, s = timed(lambda t, sd: scan(None, t, sd), table, seed)
                runs.append((*top(result, blob), s))
            row(f"regression, blob {share:.0%} of rows, loss +{shift:g}", runs)
    runs = []
    for seed in range(args.seeds if "regression" in problems else 0):
        table, blob = regression_table(seed, 0.03, 0.0)
        result, s = timed(lambda t, sd: scan(None, t, sd), table, seed)
        runs.append((*top(result, blob), s))
    if runs:
        row("regression, null (nothing raised)", runs)

    folder = Path(args.sentences)
    if "evaluation" not in problems:
        pass
    elif folder.is_dir():
        from faultlines.data.text import embed_texts

        texts = sentences(folder, 0, 0.45)[0]
        start = time.perf_counter()
        emb = embed_texts(texts)  # once: the same texts each seed; the scan's own embedding is timed in the tests
        print(f"<!-- MiniLM embedded {len(texts)} sentences in {time.perf_counter() - start:.1f} s -->")
        for failing, name in ((0.45, "evaluation, yelp's sentences fail at 45% (10% elsewhere)"), (0.1, "evaluation, null (10% everywhere)")):
            runs = []
            for seed in range(args.seeds):
                _, failed, truth = sentences(folder, seed, failing)
                table = fl.data.EmbeddingTable(emb, failed=failed, texts=texts)
                result, s = timed(lambda t, sd: scan(None, t, sd), table, seed)
                runs.append((*top(result, truth), s))
            row(name, runs)
    else:
        print(f"<!-- no sentences at {folder}: the evaluation rows are left out -->")

    for planted, name in ((True, "scikit-learn pipeline on the digits, one kind of 7 taught as 1"), (False, "scikit-learn pipeline, null")) \
            if "sklearn" in problems else ():
        runs = []
        for seed in range(args.seeds):
            model, data, truth = taught_digits(seed, planted)
            clf = fl.Classifier(model)
            result, s = timed(lambda c, d, sd: scan(c, d, sd), clf, data, seed)
            runs.append((*top(result, truth), s))
        row(name, runs)


if __name__ == "__main__":
    main()
