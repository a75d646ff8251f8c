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
Beside our detectors, pytorch-ood's implementations run on the same features and logits
(`faultlines.bench.ood_peers`; install it with `pip install --no-deps pytorch-ood==0.4.0`):
MSP, energy, Mahalanobis and KNN against ours, and ViM, RMD, MaxLogit, entropy and GEN,
which work on features and logits alone. `--no-pytorch-ood` leaves them out.
Prints the AUROC table (and AUPR and FPR at 95% TPR) as markdown, the table of ours against
pytorch-ood's per detector, the Mann-Whitney test and the flow's fitting time. With --seeds N > 1 it also prints the misclassification AUROC of
every detector for models of seeds seed .. seed + N - 1 (each test split has only 8 to 13
mistakes, so one seed's figure is noisy).
"""

from __future__ import annotations

import argparse

import faultlines as fl
from faultlines.bench.planted import make_problem
from faultlines.detect.analysis import analyse, fit_detectors
from faultlines.detect.metrics import detection_metrics

THEIRS = " (pytorch-ood)"


def pytorch_ood(clf: fl.Classifier, train: fl.types.Outputs) -> dict:
    """pytorch-ood's detectors fitted on `train`, as score functions named "<detector> (pytorch-ood)"."""
    import torch.nn as nn

    from faultlines.bench.ood_peers import fit_detectors as fit_theirs

    last = [m for m in clf.module.modules() if isinstance(m, nn.Linear)][-1]  # the embeddings are its input
    head = (last.weight.detach().numpy(), last.bias.detach().numpy())
    return {name + THEIRS: score for name, score in fit_theirs(train, head).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default=None)
    parser.add_argument("--seeds", type=int, default=1, help="also print misclassification AUROC over this many seeds")
    parser.add_argument("--no-pytorch-ood", action="store_true", help="leave pytorch-ood's detectors out")
    args = parser.parse_args()
    theirs = (lambda clf, train: {}) if args.no_pytorch_ood else pytorch_ood

    splits = fl.data.digits(seed=args.seed)
    clf = fl.Classifier(fl.train.train_small_cnn(splits.train, splits.val, seed=args.seed))
    probed = {name: fl.probe(clf, getattr(splits, name), quiet=True, source=name) for name in ("train", "val", "test")}
    result = analyse(fl.FeatureDensity(seed=args.seed), probed["test"], probed["train"], probed["val"], clf=clf, data=splits.test,
                     seed=args.seed, peers=theirs(clf, probed["train"]))
    rows = result["metrics"]

    problem = make_problem("heldout", seed=args.seed)
    clf_b = fl.Classifier(problem.model(args.cache))
    train_b = fl.probe(clf_b, problem.splits.train, quiet=True)
    fitted_b, _ = fit_detectors(fl.FeatureDensity(seed=args.seed), train_b, fl.probe(clf_b, problem.splits.val, quiet=True))
    scorers_b = {name: d.score for name, d in fitted_b.items()} | theirs(clf_b, train_b)
    test_b = fl.probe(clf_b, problem.splits.test, quiet=True)
    held = problem.in_slice["test"]
    rows[f"held-out digit {problem.facts['class']} vs other digits"] = {
        name: detection_metrics(score(test_b), held) for name, score in scorers_b.items()
    }

    everything = list(next(iter(rows.values())))
    names = [n for n in everything if not n.endswith(THEIRS)]
    for metric, title in (("auroc", "AUROC"), ("aupr", "AUPR"), ("fpr95", "FPR at 95% TPR (lower is better)")):
        print(f"\n**{title}**\n")
        print("| task | " + " | ".join(names) + " |")
        print("|---" * (len(names) + 1) + "|")
        for task, scores in rows.items():
            print(f"| {task} | " + " | ".join(f"{scores[n][metric]:.3f}" if n in scores else "-" for n in names) + " |")
    if len(names) < len(everything):
        from faultlines.bench.ood_peers import EXTRA, SAME

        print("\n**Ours against pytorch-ood 0.4, AUROC (ours / theirs)**, and pytorch-ood's detectors with no counterpart here\n")
        pairs = [n for n in SAME if n in names]
        extra = [n + THEIRS for n in EXTRA if n + THEIRS in everything]
        print("| task | " + " | ".join(f"{n}: ours / theirs" for n in pairs) + " | " + " | ".join(extra) + " |")
        print("|---" * (len(pairs) + len(extra) + 1) + "|")
        def auroc(scores: dict, name: str) -> str:
            return f"{scores[name]['auroc']:.3f}" if name in scores else "-"

        for task, scores in rows.items():
            both = [f"{auroc(scores, n)} / {auroc(scores, SAME[n] + THEIRS)}" for n in pairs]
            print(f"| {task} | " + " | ".join(both) + " | " + " | ".join(auroc(scores, n) for n in extra) + " |")
        gaps = {n: max(abs(s[n]["auroc"] - s[SAME[n] + THEIRS]["auroc"]) for s in rows.values() if SAME[n] + THEIRS in s) for n in pairs}
        print("\nlargest AUROC difference, ours vs theirs: " + ", ".join(f"{n} {g:.4f}" for n, g in gaps.items()))
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
