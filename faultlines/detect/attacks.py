"""Adversarial inputs, made by faultlines itself with captum's FGSM and PGD (L-infinity)."""

from __future__ import annotations

import warnings

import numpy as np

from faultlines.data.sources import ArraySource, Source
from faultlines.errors import SettingsError
from faultlines.model import Classifier


def adversarial(clf: Classifier, source: Source, method: str = "pgd", epsilon: float = 0.1, steps: int = 10,
                lower: float = 0.0, upper: float = 1.0, batch_size: int = 256) -> ArraySource:
    """`source`'s inputs attacked to change the classifier's prediction away from the true label.

    Args:
        method: "fgsm" (one signed-gradient step of size epsilon) or "pgd" (`steps` steps of
            size 2.5 epsilon / steps, projected onto the epsilon ball, Madry et al. 2018).
        epsilon: L-infinity radius, in input units; inputs stay within [lower, upper].

    Returns:
        An ArraySource of the attacked inputs with the original labels.
    """
    from captum.robust import FGSM, PGD

    if method not in ("fgsm", "pgd") or not epsilon > 0:
        raise SettingsError(f"method must be 'fgsm' or 'pgd' and epsilon positive (got {method!r}, {epsilon})")
    clf.module.eval()
    forward = clf.logits_with_grad  # on the model's device, with its preprocessing
    attacked, labels = [], []
    with warnings.catch_warnings():
        # captum's PGD steps take fresh tensors and say each time that it switched their gradients on
        warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")
        for x, y in source.batches(batch_size):
            if method == "fgsm":
                adv = FGSM(forward, lower_bound=lower, upper_bound=upper).perturb(x, epsilon=epsilon, target=y)
            else:
                adv = PGD(forward, lower_bound=lower, upper_bound=upper).perturb(
                    x, radius=epsilon, step_size=2.5 * epsilon / steps, step_num=steps, target=y)
            attacked.append(adv.detach().numpy())
            labels.append(y.numpy())
    return ArraySource(np.concatenate(attacked), np.concatenate(labels), source.class_names, name=f"{source.name}/{method}-{epsilon:g}")
