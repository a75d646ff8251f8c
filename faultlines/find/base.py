"""The one contract every finder keeps, the table that checks its settings, and the registry.

A finder turns what a classifier did (`Outputs`) into `FailureMode`s:

    modes = finder.find(outputs, clf=None, data=None, train=None, val=None)

- `outputs`: the probed table the modes are about (`faultlines.probe`), one row per sample.
- `clf`: the `Classifier`, for finders that run the model on new inputs.
- `data`: the `Source` behind `outputs`, for finders that read or change the inputs.
- `train`, `val`: the model's `Outputs` on its training and held-out data, for finders that
  fit something to them (the feature density).

Each finder class declares its `name` (the one the CLI, the bench, the report and the run
folder use; its modes are "<name>-0", "<name>-1", ...) and what it `requires` of the above
("model", "images", "train"). `find` checks the settings and the requirements before any
work and raises a one-line `SettingsError` that names the missing piece. After `find`, a
finder's `tables_` (arrays) and `analyses_` (JSON-able figures) hold what the run folder and
the report keep beside the modes.

Finders are dataclasses: the constructor's signature is the list of settings (as scikit-
learn's `_get_param_names` reads it), `constraints` is the one table that checks them, at
construction and again at `find`. Learned state ends in `_`.

Confirmation (`faultlines.significance`): a finder that chooses its modes by the scanned rows'
errors (`looks_at_errors`, the default) is run on part of the rows, and `assign` carries each
of its modes over to the rows it did not see, where the mode's error rate is tested.

`scan` drives every finder through this contract; `faultlines.registry` maps names to classes.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from faultlines.data.sources import Source
from faultlines.errors import DataError, SettingsError
from faultlines.types import FailureMode, Outputs

#: What a finder may require, and how to give it (for the error that names it).
REQUIREMENTS = {
    "model": "the model (clf=...; CLI: --model FILE)",
    "images": "image inputs of shape (N, C, H, W) (data=...; CLI: --data with images)",
    "train": "the model's outputs on its training data (train=...; CLI: --train PATH, and --val PATH for held-out data)",
    "classes": "a classifier's outputs (labels and probabilities), not a table of losses or pass/fail",
}



# -- the settings table -------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """A number between `low` and `high` (either may be None: unbounded).

    integer: whole numbers only; open_low / open_high: the bound itself is excluded;
    none: None is allowed too; hint: what the number means, added to the error.
    """

    low: float | None = None
    high: float | None = None
    integer: bool = False
    open_low: bool = False
    open_high: bool = False
    none: bool = False
    hint: str = ""

    def describe(self) -> str:
        kind = "a whole number" if self.integer else "a number"
        if self.low is not None and self.high is not None:
            left, right = "(" if self.open_low else "[", ")" if self.open_high else "]"
            text = f"{kind} in {left}{self.low:g}, {self.high:g}{right}"
        elif self.low is not None:
            text = f"{kind} {'above' if self.open_low else 'at least'} {self.low:g}"
        elif self.high is not None:
            text = f"{kind} {'below' if self.open_high else 'at most'} {self.high:g}"
        else:
            text = kind
        text = f"None or {text}" if self.none else text
        return f"{text} ({self.hint})" if self.hint else text

    def holds(self, value: Any) -> bool:
        if value is None:
            return self.none
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if self.integer and not isinstance(value, numbers.Integral):  # 3.0 is not a count (numpy would refuse it as a seed)
            return False
        try:
            if not math.isfinite(value):
                return False
        except OverflowError:  # an int beyond a float's range: finite
            pass
        if self.low is not None and (value < self.low or (self.open_low and value == self.low)):
            return False
        return not (self.high is not None and (value > self.high or (self.open_high and value == self.high)))


#: A seed: what numpy, torch and scikit-learn all take (scikit-learn's random_state is below 2**32).
SEED = Interval(0, 2**32 - 1, integer=True, hint="a seed")


@dataclass(frozen=True)
class OneOf:
    """One of a few fixed values."""

    options: tuple[Any, ...]

    def describe(self) -> str:
        return "one of " + ", ".join(repr(o) for o in self.options)

    def holds(self, value: Any) -> bool:
        return any(value is o or (type(value) is type(o) and value == o) for o in self.options)


@dataclass(frozen=True)
class IsA:
    """An instance of `kind` (or None when `none`)."""

    kind: type
    none: bool = False

    def describe(self) -> str:
        return f"{'None or ' if self.none else ''}a {self.kind.__name__}"

    def holds(self, value: Any) -> bool:
        return (value is None and self.none) or isinstance(value, self.kind)


Rule = Interval | OneOf | IsA


def _same(value: Any, default: Any) -> bool:
    if isinstance(value, np.ndarray) or isinstance(default, np.ndarray):
        return value is default
    return value is default or (type(value) is type(default) and value == default)


def _short(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"<array {value.shape}>"
    return f"{type(value).__name__}(...)" if hasattr(value, "state_dict") else repr(value)


# -- what a mode's members look like ---------------------------------------------------------


def describe(outputs: Outputs, members: np.ndarray, typical: int = 16) -> tuple[str, dict[str, float], dict[str, Any]]:
    """Summary sentence, metrics and evidence for the samples `members` (most typical first).

    Metrics: size, error_rate (the share of members that fail, `Outputs.failures`), mean_loss,
    error_lift (error rate over the data set's), and with classes purity (share of the
    commonest label), without them loss_lift (mean loss over the data set's). Evidence: the
    `typical` first members, and with classes the label and prediction counts and the
    commonest (label -> prediction) confusions.
    """
    wrong = outputs.failures[members]
    overall = 1.0 - outputs.accuracy
    error_rate = float(wrong.mean())
    mean_loss = float(outputs.losses[members].mean())
    metrics = {"size": float(len(members)), "error_rate": error_rate, "mean_loss": mean_loss}
    lift = {"error_lift": error_rate / overall if overall > 0 else 1.0}  # no errors anywhere, none in the mode either: lift 1
    evidence: dict[str, Any] = {"typical": [int(i) for i in members[:typical]]}
    if not outputs.has_classes:
        everywhere = float(outputs.losses.mean())
        metrics |= lift | {"loss_lift": mean_loss / everywhere if everywhere > 0 else 1.0}
        summary = (f"{len(members)} samples; mean loss {mean_loss:.4g} vs {everywhere:.4g} overall; "
                   f"{error_rate:.2f} {outputs.failure_kind} vs {overall:.2f} overall")
        return summary, metrics, evidence
    names = outputs.class_names
    labels, preds = outputs.labels[members], outputs.preds[members]
    label_counts = Counter(names[i] for i in labels)
    confusions = Counter((names[a], names[b]) for a, b in zip(labels[wrong], preds[wrong]))
    top_label, top_count = label_counts.most_common(1)[0]
    metrics |= {"purity": top_count / len(members)} | lift
    evidence |= {
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


# -- the contract ------------------------------------------------------------------------------


def input_shape(data: Any) -> tuple[int, ...] | None:
    """The shape of one input of a data source, or None for an embedding table (no inputs)."""
    return data.sample_shape() if isinstance(data, Source) else None


def missing(finder: Finder, clf: Any = None, data: Any = None, train: Any = None) -> str | None:
    """Why `finder` cannot run on these inputs (one sentence), or None if it can.
    `train` is the training data or its outputs: only whether it is given counts."""
    lacking = []
    requires = finder.requirements()
    if "model" in requires and clf is None:
        lacking.append(REQUIREMENTS["model"])
    if "images" in requires:
        shape = input_shape(data)
        if shape is None or len(shape) != 3:
            given = "" if shape is None else f"; the data's inputs have shape {shape}"
            lacking.append(REQUIREMENTS["images"] + given)
    if "train" in requires and train is None:
        lacking.append(REQUIREMENTS["train"])
    if "classes" in requires and getattr(data, "has_classes", True) is False:
        lacking.append(REQUIREMENTS["classes"])
    return f"the {finder.name} finder needs " + " and ".join(lacking) if lacking else None


class Finder:
    """Base of every finder: settings from the constructor, one `find` verb, one mode builder.

    Subclasses are dataclasses (`@dataclass(eq=False, repr=False)`) that set `name`,
    `requires` and `constraints`, and implement `_find`.
    """

    name: ClassVar[str] = "finder"
    requires: ClassVar[tuple[str, ...]] = ()
    constraints: ClassVar[dict[str, Rule]] = {}
    #: Whether `find` chooses modes by which of the scanned rows the model gets wrong (their
    #: labels, losses or correctness): then a mode's error rate on those rows is optimistic.
    looks_at_errors: ClassVar[bool] = True

    def __post_init__(self) -> None:
        self.validate()

    def requirements(self) -> tuple[str, ...]:
        """What this finder needs now (`requires`, less what it has already, e.g. a fitted model)."""
        return self.requires

    # -- settings ---------------------------------------------------------------------------

    @classmethod
    def param_names(cls) -> list[str]:
        """The settings: the constructor's named parameters, in order."""
        params = inspect.signature(cls.__init__).parameters.values()
        return [p.name for p in params if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def get_params(self) -> dict[str, Any]:
        """Every setting, by name."""
        return {name: getattr(self, name) for name in self.param_names()}

    def set_params(self, **params: Any) -> Finder:
        """Change settings (checked at once); returns self."""
        unknown = sorted(set(params) - set(self.param_names()))
        if unknown:
            raise SettingsError(f"{type(self).__name__} has no setting {unknown}; its settings are {', '.join(self.param_names())}")
        for key, value in params.items():
            setattr(self, key, value)
        self.validate()
        return self

    def clone(self, **changes: Any) -> Finder:
        """A new, unfitted finder with the same settings, except `changes`."""
        return type(self)(**(self.get_params() | changes))

    def validate(self) -> None:
        """Check every setting against `constraints` (and `_check`); a SettingsError says which is off."""
        for key, rule in self.constraints.items():
            value = getattr(self, key)
            if not rule.holds(value):
                raise SettingsError(f"{type(self).__name__}: {key} must be {rule.describe()}, not {value!r}")
        self._check()

    def _check(self) -> None:
        """Checks that involve several settings at once; subclasses raise SettingsError."""

    def settings(self) -> dict[str, Any]:
        """The settings as the run record keeps them: modules and arrays by what they are."""
        shown = {}
        for key, value in self.get_params().items():
            if hasattr(value, "state_dict"):
                value = {"class": type(value).__name__, **getattr(value, "config", {})}
            elif isinstance(value, np.ndarray):
                value = f"array of shape {value.shape}"
            elif isinstance(value, tuple):
                value = list(value)
            shown[key] = value
        return shown

    def __repr__(self) -> str:
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
        changed = [f"{key}={_short(value)}" for key, value in self.get_params().items() if not _same(value, defaults.get(key))]
        return f"{type(self).__name__}({', '.join(changed)})"

    # -- finding ----------------------------------------------------------------------------

    def find(self, outputs: Outputs, *, clf: Any = None, data: Any = None, train: Outputs | None = None,
             val: Outputs | None = None) -> list[FailureMode]:
        """Failure modes in `outputs` (see the module docstring for what each argument is).

        Raises:
            SettingsError: a setting is off, or the finder needs an input it was not given.
            DataError: `data` does not hold one input per row of `outputs`.
        """
        if not isinstance(outputs, Outputs):
            raise DataError(f"{type(self).__name__}.find takes the probed outputs first (faultlines.probe(clf, data)), "
                            f"not a {type(outputs).__name__}; the model and data go in clf=... and data=...")
        self.validate()
        reason = missing(self, clf, data, train)
        if reason:
            raise SettingsError(reason)
        if data is not None and len(data) != outputs.n:
            raise DataError(f"data holds {len(data)} samples but the outputs have {outputs.n} rows: give the data that was probed")
        self.tables_: dict[str, dict[str, np.ndarray]] = {}
        self.analyses_: dict[str, Any] = {}
        return self._find(outputs, clf=clf, data=data, train=train, val=val)

    def _find(self, outputs: Outputs, *, clf: Any, data: Any, train: Outputs | None, val: Outputs | None) -> list[FailureMode]:
        raise NotImplementedError

    def assign(self, outputs: Outputs) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """The rows of new `outputs` that belong to each mode of the last `find`, by the rule the
        finder learned, without looking at whether the model got them right.

        Returns, per mode in `find`'s order, (rows, weights or None), most typical first.
        Finders that can carry their modes over to new rows override it (`can_assign`).
        """
        raise NotImplementedError(f"{type(self).__name__} cannot assign new rows to its modes")

    @classmethod
    def can_assign(cls) -> bool:
        return cls.assign is not Finder.assign

    def _mode(self, j: int, members: np.ndarray, outputs: Outputs | None = None, *, weights: np.ndarray | None = None,
              summary: str = "", metrics: dict | None = None, evidence: dict | None = None, source: str | None = None) -> FailureMode:
        """The j-th FailureMode of this finder (id "<name>-j"), members most typical first.

        With `outputs`, the members are described (`describe`): its sentence follows `summary`,
        and its metrics and evidence are updated with the ones given.
        """
        members = np.asarray(members, np.int64)
        found_metrics: dict[str, float] = {}
        found_evidence: dict[str, Any] = {}
        if outputs is not None and len(members):
            described, found_metrics, found_evidence = describe(outputs, members, getattr(self, "n_typical", 16))
            summary += described
        return FailureMode(
            id=f"{self.name}-{j}",
            method=self.name,
            summary=summary,
            members=members,
            weights=None if weights is None else np.asarray(weights, np.float32),
            source=source or (outputs.source if outputs is not None else "test"),
            metrics=found_metrics | (metrics or {}),
            evidence=found_evidence | (evidence or {}),
        )
