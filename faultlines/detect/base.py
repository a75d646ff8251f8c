"""The one shape of a detector of likely mistakes: `fit(outputs) -> self`, `score(outputs)`
(higher = more suspect), and conformal p-values shared by all.

    detector = KNN().fit(train_outputs)          # the model's outputs on its training data
    detector.calibrate(val_outputs)               # held-out outputs, for p-values
    risk = detector.score(test_outputs)           # (N,)
    flags = detector.predict(test_outputs, fpr=0.05)

`calibrate` keeps the scores of held-out *correctly classified* samples; a p-value is the
share of them scoring at least as high, (1 + #calibration >= s) / (n + 1), so `predict`
flags at most about `fpr` of inputs like them (exchangeability). Scoring before `fit` raises
`NotFittedError`, and features of another width than the fitted ones a `DataError`.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from faultlines.errors import DataError, NotFittedError
from faultlines.types import Outputs


class Detector:
    """Base of FeatureDensity and the baselines. Subclasses implement `_fit` and `_score`.

    Class attributes:
        name: the detector's name in tables ("msp", "knn", ...).
        uses_features: whether it reads the embeddings (then their width is checked).
        needs_logits: whether it reads the logits (an embedding table has none).
    """

    name: ClassVar[str] = "detector"
    uses_features: ClassVar[bool] = True
    needs_logits: ClassVar[bool] = False

    def fit(self, outputs: Outputs, held_out: Outputs | None = None) -> Detector:
        """Fit to the model's outputs on its training data; calibrate on `held_out` if given."""
        self.n_features_in_ = int(outputs.embeddings.shape[1])
        self._fit(outputs)
        if held_out is not None:
            self.calibrate(held_out)
        return self

    def _fit(self, outputs: Outputs) -> None:
        """Learn what scoring needs (nothing, for scores read off the outputs)."""

    def score(self, outputs: Outputs) -> np.ndarray:
        """(N,) float64: the higher, the more likely the model is wrong about the sample."""
        self._check_input(outputs)
        return self._score(outputs)

    def _check_input(self, outputs: Outputs) -> None:
        """NotFittedError before `fit`; DataError for features of another width, or missing logits."""
        self._check_fitted()
        if self.uses_features and outputs.embeddings.shape[1] != self.n_features_in_:
            raise DataError(f"the features have {outputs.embeddings.shape[1]} columns but the {self.name} detector was "
                            f"fitted on {self.n_features_in_}: score outputs of the same model and layer")
        if self.needs_logits and outputs.logits is None:
            raise DataError(f"the {self.name} score needs logits: probe a model, not an embedding table")

    def _score(self, outputs: Outputs) -> np.ndarray:
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if not hasattr(self, "n_features_in_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit(train_outputs) first")

    def calibrate(self, held_out: Outputs) -> Detector:
        """Keep the scores of held-out correctly classified samples for conformal p-values."""
        scores = self.score(held_out)[held_out.correct]
        if len(scores) == 0:
            raise DataError("calibration needs correctly classified held-out samples")
        self.calibration_ = np.sort(scores)
        return self

    def p_values(self, outputs: Outputs) -> np.ndarray:
        """Conformal p-values: (1 + #calibration scores >= s) / (n + 1) for each score s."""
        if not hasattr(self, "calibration_"):
            self._check_fitted()
            raise NotFittedError(f"this {type(self).__name__} is not calibrated: call calibrate(held_out_outputs) first")
        s = self.score(outputs)
        n = len(self.calibration_)
        at_least = n - np.searchsorted(self.calibration_, s, side="left")
        return (1.0 + at_least) / (n + 1.0)

    def predict(self, outputs: Outputs, fpr: float | None = None) -> np.ndarray:
        """(N,) True where a sample is flagged: its conformal p-value is at most `fpr`
        (default: the detector's own `fpr` setting, else 0.05)."""
        return self.p_values(outputs) <= (fpr if fpr is not None else getattr(self, "fpr", 0.05))
