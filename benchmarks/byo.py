"""Bring your own model and data: what the input check and the descriptions say, in figures.

    python benchmarks/byo.py [--sentiment-dir ../shared/data/sentiment-labelled-sentences]

1. The input check: a SmallCNN trained on digits standardised with the training split's mean
   and std, scanned on the raw digits (as a user who forgot the normalisation would) and with
   `preprocess=` that normalisation: the accuracy of each, and what the check found. Then a
   SmallCNN trained on the raw digits, with its validation accuracy as its checkpoint records
   it, on the test digits and on them upside down (which no rescaling undoes).
2. Descriptions: the UCI sentences' test split (MiniLM embeddings, a linear model trained on
   every website whole, seed 0) as a table a model that fails on yelp would give (the probabilities of 40%
   of the yelp sentences swapped), scanned with a `site` column and without it: the top mode's
   size, held-out q-value and description.
"""

from __future__ import annotations

import argparse
import warnings
from dataclasses import replace
from pathlib import Path


import faultlines as fl
from faultlines.bench.text import failing_site, sentiment
from faultlines.errors import InputWarning
from faultlines.model import expectation
from faultlines.probe import check_inputs
from faultlines.significance import ranked
from faultlines.train import train_small_cnn


def input_check() -> None:
    splits = fl.data.digits(seed=0)
    mean, std = float(splits.train.x.mean()), float(splits.train.x.std())
    norm = lambda s: fl.data.ArraySource((s.x - mean) / std, s.y, s.class_names)  # noqa: E731
    model = train_small_cnn(norm(splits.train), norm(splits.val), seed=0)
    print("| scanned | accuracy | input check |\n|---|---:|---|")
    print(f"| standardised digits (the model's own) | {fl.probe(fl.Classifier(model), norm(splits.test), quiet=True).accuracy:.4f} | - |")
    for name, steps in (("raw digits, no preprocess", None), (f"raw digits, preprocess mean={mean:.4f} std={std:.4f}", f"mean={mean} std={std}")):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", InputWarning)
            result = fl.scan(fl.Classifier(model, preprocess=steps), splits, "spotlight", quiet=True)
        said = next((str(w.message) for w in caught if issubclass(w.category, InputWarning)), "passed")
        print(f"| {name} | {result.outputs.accuracy:.4f} | {said} |")
    # what no rescaling undoes, caught against what the checkpoint records of the model's validation data
    plain = train_small_cnn(splits.train, splits.val, seed=0)
    expected = expectation(fl.probe(fl.Classifier(plain), splits.val, quiet=True))
    flipped = fl.data.ArraySource(splits.test.x[:, :, ::-1].copy(), splits.test.y, splits.test.class_names)
    for name, data in (("the demo's model (checkpoint records its validation accuracy) on the test digits", splits.test),
                       ("the same model on the test digits upside down", flipped)):
        found = check_inputs(fl.Classifier(plain, expected=expected), data)
        print(f"| {name} | {fl.probe(fl.Classifier(plain), data, quiet=True).accuracy:.4f} | {found['message'] if found else 'passed'} |")


def descriptions(folder: Path) -> None:
    table, site, planted = failing_site(sentiment(folder, seed=0, rare=None))
    print(f"\n{len(site)} test sentences; {planted.sum()} yelp sentences given swapped probabilities\n")
    print("| table | top mode | members (yelp share) | held-out q | description |\n|---|---|---:|---:|---|")
    for name, metadata in (("with a site column", {"site": site}), ("without it", None)):
        top = ranked(fl.scan(None, replace(table, metadata=metadata), "spotlight", quiet=True).modes)[0]
        print(f"| {name} | {top.id} | {len(top.members)} ({(site[top.members] == 'yelp').mean():.0%}) | {top.metrics.get('q_value', float('nan')):.2g} "
              f"| {top.evidence['description']['sentence']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentiment-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "sentiment-labelled-sentences")
    args = parser.parse_args()
    input_check()
    descriptions(args.sentiment_dir)


if __name__ == "__main__":
    main()
