"""Feature density against the usual detectors, on digits: mistakes, adversarial inputs, OOD.

    python benchmarks/density.py [--seed 0] [--cache DIR] [--seeds 1]

Model A is the SmallCNN of `faultlines demo` (trained on the digits' train split). Every
detector is fitted on its training-split outputs (FeatureDensity also early-stops and
calibrates on the validation split) and scored on:
- the test split's mistakes against its correct predictions;
- FGSM and PGD (L-infinity) attacks on the test images against the clean test images;
- far OOD: uniform and Gaussian noise images; near OOD: every test image blurred and noised.
Model B is the `heldout` planted problem's SmallCNN, which never saw one digit; its
held-out digit's test images are scored against the other test images.
Prints the AUROC table (and AUPR and FPR at 95% TPR) as markdown, the Mann-Whitney test
and the flow's fitting time. With --seeds N > 1 it also prints the misclassification AUROC of
every detector for models of seeds seed .. seed + N - 1 (each test split has only 8 to 13
mistakes, so one seed's figure is noisy).
"""

from __future__ import annotations

import argparse

import faultlines as fl
from faultlines.bench.planted import make_problem
from faultlines.detect.analysis import analyse, fit_detectors
from faultlines.detect.metrics import detection_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default=None)
    parser.add_argument("--seeds", type=int, default=1, help="also print misclassification AUROC over this many seeds")
    args = parser.parse_args()

    splits = fl.data.digits(seed=args.seed)
    clf = fl.Classifier(fl.train.train_small_cnn(splits.train, splits.val, seed=args.seed))
    probed = {name: fl.probe(clf, getattr(splits, name), quiet=True, source=name) for name in ("train", "val", "test")}
    result = analyse(fl.FeatureDensity(seed=args.seed), probed["test"], probed["train"], probed["val"], clf=clf, data=splits.test,
                     seed=args.seed)
    rows = result["metrics"]

    problem = make_problem("heldout", seed=args.seed)
    clf_b = fl.Classifier(problem.model(args.cache))
    fitted_b, _ = fit_detectors(fl.FeatureDensity(seed=args.seed), fl.probe(clf_b, problem.splits.train, quiet=True),
                                fl.probe(clf_b, problem.splits.val, quiet=True))
    test_b = fl.probe(clf_b, problem.splits.test, quiet=True)
    held = problem.in_slice["test"]
    rows[f"held-out digit {problem.facts['class']} vs other digits"] = {
        name: detection_metrics(d.score(test_b), held) for name, d in fitted_b.items()
    }

    names = list(next(iter(rows.values())))
    for metric, title in (("auroc", "AUROC"), ("aupr", "AUPR"), ("fpr95", "FPR at 95% TPR (lower is better)")):
        print(f"\n**{title}**\n")
        print("| task | " + " | ".join(names) + " |")
        print("|---" * (len(names) + 1) + "|")
        for task, scores in rows.items():
            print(f"| {task} | " + " | ".join(f"{scores[n][metric]:.3f}" for n in names) + " |")
    print(f"\n{result['test']['sentence']}\n\nflows fitted on {len(splits.train)} training features in {result['seconds']['flow']:.1f} s "
          f"(class-agnostic) and {result['seconds']['class-flow']:.1f} s (class-conditional)")
    if args.seeds > 1:
        print("\n**Misclassified vs correct, AUROC per seed**\n")
        print("| seed | mistakes | " + " | ".join(names) + " |")
        print("|---" * (len(names) + 2) + "|")
        for seed in range(args.seed, args.seed + args.seeds):
            s = fl.data.digits(seed=seed)
            clf_s = fl.Classifier(fl.train.train_small_cnn(s.train, s.val, seed=seed))
            fitted, _ = fit_detectors(fl.FeatureDensity(seed=seed), fl.probe(clf_s, s.train, quiet=True), fl.probe(clf_s, s.val, quiet=True))
            test = fl.probe(clf_s, s.test, quiet=True)
            scores = {n: detection_metrics(d.score(test), ~test.correct)["auroc"] for n, d in fitted.items()}
            print(f"| {seed} | {(~test.correct).sum()} | " + " | ".join(f"{scores[n]:.3f}" for n in names) + " |")


if __name__ == "__main__":
    main()
