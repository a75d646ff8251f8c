"""Defuse end to end on the rare-subclass planted problem: find, label, correct.

    python benchmarks/defuse_rare.py [--seeds 3] [--cache DIR] [--region-samples 300] [--epochs 10] [--lambdas 0.1,0.3,1,3]

For each seed: the problem's SmallCNN (cached, see faultlines.bench.planted), a VAE trained on
the problem's images (train, val and test inputs, no labels: Defuse's generative model is
unsupervised and should know what deployment inputs look like), Defuse on the test split, the
programmatic labeller (`faultlines label --auto`, agreement 0.8) and `finetune` with its
default lambda sweep. Prints whether a region isolates the planted failure (>= 80% of its hits
from the planted class and predicted as the class the model most often mistakes the styled
test digits for), and the before/after table, as markdown.

The oracle columns check the labels: a second SmallCNN, trained on all the problem's images
(train, val and test, with their true labels: a stand-in for a person who knows digits),
reads every region's samples. "oracle reads as prediction" counts the regions whose samples it
mostly calls what the model predicts (no model mistake: the VAE crossed into another class);
"auto labels the oracle agrees with" counts the labelled regions whose label is its majority.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np
import torch

import faultlines as fl
from faultlines.bench.planted import make_problem
from faultlines.data.sources import ArraySource
from faultlines.generative import VAE
from faultlines.repair import labels
from faultlines.repair.finetune import finetune, region_samples
from faultlines.train import train_small_cnn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--cache", default=None)
    parser.add_argument("--region-samples", type=int, default=300, help="samples drawn per region (Defuse's default)")
    parser.add_argument("--epochs", type=int, default=10, help="fine-tuning epochs per lambda (finetune's default)")
    parser.add_argument("--lambdas", default="0.1,0.3,1,3", help="the lambda sweep (finetune's default)")
    args = parser.parse_args()
    lambdas = tuple(float(v) for v in args.lambdas.split(","))
    print("| seed | class -> confused with | regions | labelled | best planted region (hits, pair share) | oracle reads as prediction | auto labels the oracle agrees with | test acc before -> after | held-out region acc before -> after | lambda | minutes |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for seed in range(args.seeds):
        start = time.perf_counter()
        problem = make_problem("rare", seed=seed)
        cls = problem.facts["class"]
        clf = fl.Classifier(problem.model(args.cache), class_names=[str(i) for i in range(10)])
        out = fl.probe(clf, problem.splits.test, quiet=True)
        styled_wrong = problem.in_slice["test"] & ~out.correct
        confused = Counter(out.preds[styled_wrong].tolist()).most_common(1)[0][0]
        s = problem.splits
        images = ArraySource(np.concatenate([s.train.x, s.val.x, s.test.x]), np.concatenate([s.train.y, s.val.y, s.test.y]))
        vae = VAE().fit(images, seed=seed)
        result = fl.scan(clf, s.test, [fl.Defuse(vae, seed=seed, region_samples=args.region_samples)], quiet=True, seed=seed)
        hits = result.tables["defuse_hits"]
        share = {}
        for m in result.modes:
            rows = (hits["component"] == m.evidence["component"]) & (hits["pred"] == m.evidence["hit_pred"])
            share[m.id] = float(((hits["seed_label"][rows] == cls) & (hits["pred"][rows] == confused)).mean())
        best = max(result.modes, key=lambda m: share[m.id], default=None)
        chosen = labels.from_seeds(result, agreement=0.8)
        index = {ev["region"]: chosen[r] for r, ev in labels.regions(result).items()}
        n_labelled = sum(v is not None for v in index.values())
        row = f"| {seed} | {cls} -> {confused} | {len(result.modes)} | {n_labelled} | "
        row += f"{best.id} ({best.metrics['hits']:.0f}, {share[best.id]:.2f})" if best else "none"
        oracle = fl.Classifier(train_small_cnn(images, s.val, seed=seed + 100))
        table = result.tables.get("generated")
        majority = {}
        for r, ev in labels.regions(result).items():
            read = oracle.logits(torch.from_numpy(table["images"][table["region"] == ev["region"]])).argmax(1).numpy()
            majority[r] = Counter(read.tolist()).most_common(1)[0][0]
        as_pred = sum(majority[m.id] == m.evidence["pred_id"] for m in result.modes)
        agree = sum(chosen[r] is not None and chosen[r] == majority[r] for r in majority)
        row += f" | {as_pred} of {len(result.modes)} | {agree} of {n_labelled}"
        if n_labelled:
            fixed = finetune(clf.module, s.train, s.val, s.test, region_samples(result.tables["generated"], index),
                             lambdas=lambdas, epochs=args.epochs, seed=seed)
            b, a = fixed.before, fixed.after
            row += (f" | {b['test_accuracy']:.4f} -> {a['test_accuracy']:.4f} | {b['heldout_region_accuracy']:.3f} -> "
                    f"{a['heldout_region_accuracy']:.3f} | {fixed.lam:g}")
        else:
            row += " | - | - | -"
        print(row + f" | {(time.perf_counter() - start) / 60:.1f} |", flush=True)


if __name__ == "__main__":
    main()
