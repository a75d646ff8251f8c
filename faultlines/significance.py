"""Is a failure mode more than chance? Intervals, exact tests, q-values, held-out confirmation.

A finder that chooses its modes by looking at which rows the model gets wrong (Spotlight
climbs the losses, ErrorMixture models each row's label and prediction together) sees its
modes' error rates through its own selection: with 13 errors in 360 rows, some 7-row group
holds 2 or 3 of them by chance, and a finder that searches for such groups finds one. Its
in-sample error rate is optimistic, and a test on the same rows is not a test. So:

1. `split_rows` sets aside a random `fraction` of the scanned rows (held-out rows);
2. `find_confirmed` runs the finder on the other rows only, then carries each mode's rule
   over to the held-out rows with `Finder.assign` (the spotlight's kernel and weight
   threshold; the mixture component, assigned from embedding and label, never from the
   prediction: label and prediction together would say which rows are wrong). `find_all`
   runs a scan's finders, each so or on every row (below);
3. `assess` measures each mode on rows its finder did not choose it by: the error rate
   with a Wilson interval, and a one-sided Fisher exact test of that rate against the
   same rows outside the mode; then Benjamini-Hochberg q-values across the run's tested
   modes. A mode is significant when its q-value is at most `alpha`. A "failure" is what
   `Outputs.failures` says (a wrong class, a failed evaluation, a loss over a threshold);
   for a model whose only outcome is a loss, the rate is that of losses above the median,
   and the test is a one-sided Mann-Whitney U test of the mode's losses against the other
   rows' (`losses_p`), which uses their sizes, not only which side of the median they are.

Which rows a mode is measured on (`evidence["significance"]["rows"]`):
- "held-out": the finder looks at errors and was confirmed as above;
- "all": the finder does not choose by the scanned rows' errors (`Finder.looks_at_errors`
  is False: FeatureDensity is fitted on the training data, PerturbationProbe occludes
  inputs), so every scanned row is a fair measurement;
- "in-sample": the finder looks at errors but was not confirmed (too few rows, confirmation
  turned off, or a finder with no `assign`): the rate and its interval are shown, no test is
  claimed, and the mode is never significant;
- "generated": the mode's members are generated inputs (Defuse's regions), whose labels a
  person gives (`faultlines label`); the rate is against the finder's assumed label, and
  there is no data to test it against.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

from faultlines.errors import SettingsError
# significant and ranked read what `assess` wrote; they live with the types, which the
# notebook views need them in, and are named here too
from faultlines.types import FailureMode, Outputs, ranked, significant  # noqa: F401

if TYPE_CHECKING:  # finders use the tests here (Spotlight): no import of them at run time
    from faultlines.find.base import Finder

#: The least number of scanned rows for which `scan` holds rows out by default.
MIN_CONFIRM_ROWS = 200
#: The share of the rows held out by default (when there are at least MIN_CONFIRM_ROWS).
DEFAULT_FRACTION = 0.5
ALPHA = 0.05


def wilson_interval(errors: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion errors / n at confidence `level` ((0, 1) when n = 0)."""
    if n == 0:
        return 0.0, 1.0
    z = float(stats.norm.ppf(0.5 + level / 2))
    p = errors / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, float(centre - half)), min(1.0, float(centre + half))


def over_represented(inside, size: int, total, n: int) -> np.ndarray:
    """One-sided Fisher exact p-values (the hypergeometric tail), for each of several counts at
    once: P(at least `inside` of `size` rows drawn from `n` have it | `total` of the `n` have it)."""
    return stats.hypergeom.sf(np.asarray(inside) - 1, n, np.asarray(total), size)


def enrichment_p(errors_in: int, n_in: int, errors_out: int, n_out: int) -> float:
    """One-sided Fisher exact p-value that the error rate inside (errors_in / n_in) exceeds the
    rate outside (errors_out / n_out): P(at least errors_in errors inside | the margins)."""
    if n_in == 0 or n_out == 0:
        return 1.0
    return float(over_represented(errors_in, n_in, errors_in + errors_out, n_in + n_out))


def loss_tested(outputs: Outputs) -> bool:
    """Whether a mode of these outputs is tested on their losses rather than on failures: a
    model with neither classes, a pass/fail nor a loss threshold, whose only outcome is the loss."""
    return not outputs.has_classes and outputs.failed is None and outputs.threshold is None


def losses_p(losses: np.ndarray, inside: np.ndarray, measured: np.ndarray) -> float:
    """One-sided Mann-Whitney U p-value that the losses of the rows `inside` (indices, among
    `measured`) are larger than those of the other `measured` rows."""
    rest = np.ones(len(losses), bool)
    rest[inside] = False
    others = losses[measured[rest[measured]]]
    if len(inside) == 0 or len(others) == 0:
        return 1.0
    return float(stats.mannwhitneyu(losses[inside], others, alternative="greater").pvalue)


def q_values(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values) of `p`."""
    p = np.asarray(p, np.float64)
    return stats.false_discovery_control(p, method="bh") if len(p) else p


def default_fraction(n: int) -> float:
    """The held-out share `scan` uses when none is given: DEFAULT_FRACTION from MIN_CONFIRM_ROWS rows on, else 0."""
    return DEFAULT_FRACTION if n >= MIN_CONFIRM_ROWS else 0.0


def check_fraction(fraction: float) -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
        raise SettingsError(f"confirm must be a share of the rows to hold out, in [0, 1), not {fraction!r}")
    return float(fraction)


def check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise SettingsError(f"alpha must be a significance level in (0, 1), not {alpha!r}")
    return float(alpha)


def split_rows(n: int, fraction: float, seed: int = 0) -> np.ndarray:
    """A boolean mask of the `round(fraction * n)` rows held out for confirmation, chosen at random."""
    held = np.zeros(n, bool)
    held[np.random.default_rng(seed).permutation(n)[: round(check_fraction(fraction) * n)]] = True
    return held


def confirmable(finder: Finder) -> bool:
    """Whether `finder` is found on some rows and measured on others: it looks at the rows'
    errors, can carry its modes over (`assign`), and needs nothing but the outputs."""
    return finder.looks_at_errors and finder.can_assign() and not {"model", "images"} & set(finder.requirements())


def find_confirmed(finder: Finder, outputs: Outputs, heldout: np.ndarray, **inputs: Any) -> list[FailureMode]:
    """Run `finder` on the rows of `outputs` outside `heldout`; return its modes with members
    (and weights) over all rows: the rows it found each mode on, then the held-out rows
    `assign` gives the mode, each part in the finder's order (most typical first).

    Indices in the modes (members, evidence["typical"]) are rows of `outputs`.
    """
    finding = np.flatnonzero(~heldout)
    held = np.flatnonzero(heldout)
    modes = finder.find(outputs.subset(finding), **inputs)
    assigned = finder.assign(outputs.subset(held)) if len(held) else [(np.array([], np.int64), None)] * len(modes)
    confirmed = []
    for mode, (rows, weights) in zip(modes, assigned, strict=True):
        members = np.concatenate([finding[mode.members], held[rows]])
        if mode.weights is not None and weights is not None:
            weights = np.concatenate([mode.weights, np.asarray(weights, np.float32)])
        else:
            weights = None
        typical = [int(finding[i]) for i in mode.evidence.get("typical", [])]
        confirmed.append(replace(mode, summary=f"found on {len(finding)} rows: {mode.summary}", members=members, weights=weights,
                                 evidence=mode.evidence | {"typical": typical}))
    return confirmed


def find_all(finders: Sequence[Finder], outputs: Outputs, heldout: np.ndarray | None, *,
             after: Callable[[Finder], None] | None = None, **inputs: Any) -> tuple[list[FailureMode], dict[str, str]]:
    """Every finder's modes on `outputs`, as `scan` finds them: a `confirmable` finder on the rows
    outside `heldout` (`find_confirmed`; None: no rows held out), any other on every row.

    Returns the modes in the finders' order, not yet assessed, and for each finder which rows its
    modes are to be measured on (`assess`'s `finders`). `inputs` (clf, data, train, val) go to
    every finder's `find`; `after(finder)` is called when each finder is done.
    """
    modes: list[FailureMode] = []
    measured: dict[str, str] = {}
    for finder in finders:
        if heldout is not None and confirmable(finder):
            # a confirmed finder sees the outputs only: the inputs' rows are not the split's
            modes += find_confirmed(finder, outputs, heldout, **(inputs | {"data": None}))
            measured[finder.name] = "held-out"
        else:
            modes += finder.find(outputs, **inputs)
            measured[finder.name] = "in-sample" if finder.looks_at_errors else "all"
        if after is not None:
            after(finder)
    return modes, measured


def measured_rows(mode: FailureMode, outputs: Outputs, heldout: np.ndarray | None, rows_kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(in-mode rows, rows measured on) for a mode measured on `rows_kind` rows
    (`evidence["significance"]["rows"]`)."""
    if rows_kind == "held-out":
        return mode.members[heldout[mode.members]], np.flatnonzero(heldout)
    return mode.members, np.arange(outputs.n)


def assess(modes: list[FailureMode], outputs: Outputs, finders: dict[str, str], heldout: np.ndarray | None,
               alpha: float = ALPHA) -> list[FailureMode]:
    """`modes` with their significance: metrics and evidence["significance"] (module docstring).

    Args:
        modes: a run's modes.
        outputs: the scanned table.
        finders: for each method, which rows its modes are measured on: "held-out", "all" or
            "in-sample" (modes about another table are "generated").
        heldout: the held-out mask, when any finder was confirmed.
        alpha: the level at which a mode's q-value makes it significant; the interval is at 1 - alpha.

    Metrics added: tested_size, tested_errors, tested_error_rate, error_low, error_high,
    tested_lift, and for the tested modes p_value and q_value (and, tested on the losses,
    tested_mean_loss and measured_mean_loss: the mode's and all measured rows' mean loss).
    """
    alpha = check_alpha(alpha)
    wrong = ~outputs.correct
    by_losses = loss_tested(outputs)
    records: list[dict[str, Any]] = []
    for mode in modes:
        kind = "generated" if mode.source != outputs.source else finders.get(mode.method, "in-sample")
        if kind == "generated":
            rate, size = mode.metrics.get("error_rate"), mode.metrics.get("size", float(len(mode.members)))
            errors = round((rate or 0.0) * size)
            record: dict[str, Any] = {"rows": kind, "metrics": {"tested_size": float(size), "tested_errors": float(errors)}}
        else:
            inside, measured = measured_rows(mode, outputs, heldout, kind)
            errors, size = int(wrong[inside].sum()), len(inside)
            base = float(wrong[measured].mean()) if len(measured) else 0.0
            record = {"rows": kind, "metrics": {"tested_size": float(size), "tested_errors": float(errors),
                                                "tested_lift": (errors / size) / base if size and base > 0 else 1.0}}
            if kind != "in-sample":
                others = len(measured) - size
                if by_losses:
                    record["p"] = losses_p(outputs.losses, inside, measured)
                    record["metrics"] |= {"tested_mean_loss": float(outputs.losses[inside].mean()) if size else 0.0,
                                          "measured_mean_loss": float(outputs.losses[measured].mean())}
                else:
                    record["p"] = enrichment_p(errors, size, int(wrong[measured].sum()) - errors, others)
        low, high = wilson_interval(errors, int(size), 1 - alpha)
        record["metrics"] |= {"tested_error_rate": errors / size if size else 0.0, "error_low": low, "error_high": high}
        records.append(record)
    tested = [r for r in records if "p" in r]
    for r, q in zip(tested, q_values(np.array([r["p"] for r in tested]))):
        r["metrics"] |= {"p_value": r["p"], "q_value": float(q)}
    out = []
    for mode, r in zip(modes, records):
        passed = bool("p" in r and r["metrics"]["q_value"] <= alpha)
        evidence = {"rows": r["rows"], "significant": passed, "alpha": alpha, "sentence": _sentence(r, passed, alpha, outputs)}
        out.append(replace(mode, metrics=mode.metrics | r["metrics"], evidence=mode.evidence | {"significance": evidence}))
    return out


#: What each kind of measurement is, for the sentence under a mode.
ROWS = {"held-out": "on held-out rows the finder never saw",
        "all": "on every scanned row (the finder does not choose by their errors)",
        "in-sample": "on the rows the finder chose it by (not confirmed, so not tested)",
        "generated": "on its generated inputs, against the label the finder assumes (a person confirms it)"}


def _sentence(record: dict[str, Any], passed: bool, alpha: float, outputs: Outputs) -> str:
    m = record["metrics"]
    size, errors = int(m["tested_size"]), int(m["tested_errors"])
    kind = outputs.failure_kind if record["rows"] != "generated" else "wrong"
    test = "one-sided Mann-Whitney U test of the losses" if loss_tested(outputs) else "one-sided Fisher"
    rate = "error rate" if outputs.has_classes else "rate"
    text = (f"{errors} of {size} {kind} {ROWS[record['rows']]}: {rate} {m['tested_error_rate']:.2f}, "
            f"{1 - alpha:.0%} interval {m['error_low']:.2f}-{m['error_high']:.2f}")
    if "tested_lift" in m and record["rows"] != "in-sample":
        text += f", {m['tested_lift']:.1f}x the rate of all those rows"
    if "tested_mean_loss" in m:
        text += f"; mean loss {m['tested_mean_loss']:.4g} vs {m['measured_mean_loss']:.4g}"
    if "q_value" in m:
        verdict = "significant" if passed else "not significant"
        text += f"; {test} p = {m['p_value']:.2g}, q = {m['q_value']:.2g}: {verdict} at {alpha:g}"
    return text + "."
