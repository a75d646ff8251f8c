"""What every finder reports about a set of members: breakdowns, metrics and a summary sentence."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from faultlines.types import Outputs


def describe(outputs: Outputs, members: np.ndarray, typical: int = 16) -> tuple[str, dict[str, float], dict[str, Any]]:
    """Summary sentence, metrics and evidence for the samples `members` (most typical first).

    Metrics: size, error_rate, mean_loss, purity (share of the commonest label),
    error_lift (error rate over the data set's). Evidence: label and prediction counts,
    the commonest (label -> prediction) confusions, and the `typical` first members.
    """
    names = outputs.class_names
    labels, preds = outputs.labels[members], outputs.preds[members]
    wrong = labels != preds
    overall = 1.0 - outputs.accuracy
    label_counts = Counter(names[i] for i in labels)
    confusions = Counter((names[a], names[b]) for a, b in zip(labels[wrong], preds[wrong]))
    top_label, top_count = label_counts.most_common(1)[0]
    error_rate = float(wrong.mean())
    metrics = {
        "size": float(len(members)),
        "error_rate": error_rate,
        "mean_loss": float(outputs.losses[members].mean()),
        "purity": top_count / len(members),
        # with no errors anywhere there are none in the mode either: lift 1
        "error_lift": error_rate / overall if overall > 0 else 1.0,
    }
    evidence = {
        "typical": [int(i) for i in members[:typical]],
        "label_counts": dict(label_counts.most_common()),
        "pred_counts": dict(Counter(names[i] for i in preds).most_common()),
        "confusions": [[a, b, n] for (a, b), n in confusions.most_common(5)],
    }
    summary = f"{len(members)} samples, {top_count / len(members):.0%} labelled {top_label}"
    if confusions:
        (a, b), n = confusions.most_common(1)[0]
        summary += f"; commonest error: {a} predicted as {b} ({n}x)"
    summary += f"; error rate {error_rate:.2f} vs {overall:.2f} overall"
    return summary, metrics, evidence
