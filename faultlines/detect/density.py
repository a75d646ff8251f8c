"""Feature density (Shao, Song, Ermon 2020, arXiv 2010.02364): inputs a classifier is likely
to get wrong lie where the density of its features is low.

A density model is fitted, without labels, to the classifier's features on its training
data: a normalizing flow (zuko's masked autoregressive flow) by default, or a scikit-learn
Gaussian mixture for speed. Features are standardised first (PCA optional). The flow trains
by maximum likelihood with early stopping on a held-out part of the data.

`score` is -log p(features): higher means more suspect. With `conditional=True` (a departure
from the paper's label-agnostic model, for models whose training labels are known) the flow
is class-conditional, p(features | class), fitted with the training labels as context; then
`log_density` is log p(f | predicted class) and `score` adds how much better the best other
class explains the features:

    score = -log p(f | y_hat) + (max_{c != y_hat} log p(f | c) - log p(f | y_hat))

a density term (out-of-distribution inputs are unlikely under every class) and a
generative-classifier margin (a mistake sits where another class explains it about as well),
the density analogue of the trust score's distance ratio. On digits the class-agnostic flow
tells mistakes apart with AUROC 0.82-0.87 and this score with 0.98-0.99 (benchmarks/density.py).

`test` checks the paper's claim on
data with known mistakes: one-sided Mann-Whitney U and Kolmogorov-Smirnov tests that the
log-density of misclassified samples is lower than that of correct ones. `calibrate` sets a
conformal threshold on held-out correctly classified samples, so that `predict` flags at most
a chosen share (`fpr`) of inputs like them (the `Detector` base).

FeatureDensity is also a finder (name "density", it requires the training outputs): `find`
fits it on `train` (early stopping and calibration on `val`, or on a share of `train`) unless
it is fitted already, and returns the flagged samples as one mode. With
`compare=True` it also runs `faultlines.detect.analysis.analyse` for the report: the other
density models and the baselines on the mistakes and, for an image model, on attacks and OOD
images.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from scipy import stats
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture
from sklearn.preprocessing import StandardScaler

from faultlines.data.sources import ArraySource
from faultlines.detect.analysis import analyse
from faultlines.detect.base import Detector
from faultlines.errors import DataError, SettingsError
from faultlines.find.base import SEED, Finder, Interval, OneOf, input_shape
from faultlines.train import fit as train_fit
from faultlines.types import FailureMode, Outputs


@dataclass(eq=False, repr=False)
class FeatureDensity(Detector, Finder):
    """A density model of a classifier's features, and a detector of likely mistakes built on it.

    Args:
        model: "flow" (zuko MAF) or "gmm" (scikit-learn GaussianMixture, full covariances).
        conditional: fit a class-conditional flow with the training labels (see the module
            docstring); flow only.
        pca: reduce the standardised features to this many components first; None keeps all.
        transforms, hidden: the flow's number of autoregressive transforms and hidden layer sizes.
        epochs, batch_size, lr, patience: the flow's training (early stopping on held-out data).
        noise: std of Gaussian noise added to the standardised features while the flow trains.
            Post-ReLU features have point masses (exact zeros) a flow would chase to infinite
            density; the noise smooths them, like dequantisation (digits: AUROC of telling
            mistakes apart 0.77 without it, 0.87 with 0.1).
        n_components: components of the Gaussian mixture.
        val_fraction: share of the fitting data held out for early stopping and calibration
            when `fit` is given no held-out outputs.
        fpr: share of held-out correct samples the calibrated detector may flag.
        compare: as a finder, also fit the other density models and the baselines on the
            training outputs (when `find` is given them) and score them all (the report's
            table); see `faultlines.detect.analysis`.
        seed: seed for the split, the flow's initialisation and the mixture.
        quiet: hide the progress bars.
    """

    name: ClassVar[str] = "density"
    #: its flow is fitted on the training outputs and its threshold set on held-out data
    looks_at_errors: ClassVar[bool] = False
    requires: ClassVar[tuple[str, ...]] = ("train", "classes")
    constraints: ClassVar[dict] = {
        "model": OneOf(("flow", "gmm")),
        "pca": Interval(1, None, integer=True, none=True),
        "transforms": Interval(1, None, integer=True),
        "epochs": Interval(1, None, integer=True),
        "batch_size": Interval(1, None, integer=True),
        "lr": Interval(0, None, open_low=True),
        "patience": Interval(1, None, integer=True),
        "noise": Interval(0, None),
        "n_components": Interval(1, None, integer=True),
        "val_fraction": Interval(0, 1, open_low=True, open_high=True),
        "fpr": Interval(0, 1, open_low=True, open_high=True),
        "seed": SEED,
    }

    model: str = "flow"
    conditional: bool = False
    pca: int | None = None
    transforms: int = 4
    hidden: tuple[int, ...] = (128, 128)
    epochs: int = 200
    batch_size: int = 256
    lr: float = 1e-3
    patience: int = 15
    noise: float = 0.1
    n_components: int = 10
    val_fraction: float = 0.2
    fpr: float = 0.05
    compare: bool = True
    seed: int = 0
    quiet: bool = True

    def _check(self) -> None:
        if self.conditional and self.model != "flow":
            raise SettingsError("FeatureDensity: conditional=True needs model='flow'")
        if (not isinstance(self.hidden, (tuple, list)) or not self.hidden
                or any(isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1 for h in self.hidden)):
            raise SettingsError(f"FeatureDensity: hidden must be one or more layer sizes of at least 1, not {self.hidden!r}")

    def requirements(self) -> tuple[str, ...]:
        """A classifier's outputs, and its training outputs until the density is fitted."""
        return ("classes",) if hasattr(self, "n_features_in_") else self.requires

    def _features(self, outputs: Outputs, fitting: bool = False) -> np.ndarray:
        x = np.asarray(outputs.embeddings, np.float64)
        if not np.isfinite(x).all():
            raise DataError("the features contain NaN or infinite values; remove or repair those samples")
        if fitting:
            self.scaler_ = StandardScaler().fit(x)
            self.pca_ = PCA(n_components=self.pca, random_state=self.seed).fit(self.scaler_.transform(x)) if self.pca else None
        else:
            self._check_input(outputs)
        z = self.scaler_.transform(x)
        return (self.pca_.transform(z) if self.pca_ is not None else z).astype(np.float32)

    def fit(self, outputs: Outputs, held_out: Outputs | None = None) -> FeatureDensity:
        """Fit the density to `outputs.embeddings` (the training split's); labels are used
        only by a conditional flow. Calibrates on the held-out outputs.

        Args:
            outputs: features to model.
            held_out: features for early stopping and calibration; default: `val_fraction`
                of `outputs`, set aside.
        """
        self.validate()
        start = time.perf_counter()
        if held_out is None:
            order = np.random.default_rng(self.seed).permutation(outputs.n)
            cut = int(round(self.val_fraction * outputs.n))
            outputs, held_out = outputs.subset(np.sort(order[cut:])), outputs.subset(np.sort(order[:cut]))
        d = outputs.embeddings.shape[1] if not self.pca else min(self.pca, outputs.embeddings.shape[1])
        if outputs.n <= d:
            raise DataError(
                f"{outputs.n} samples cannot fit a density in {d} dimensions; give more samples than "
                "features, or reduce them with pca=..."
            )
        x = self._features(outputs, fitting=True)
        self.n_features_in_ = int(outputs.embeddings.shape[1])
        x_val = self._features(held_out)
        self.classes_ = outputs.num_classes if self.conditional else 0
        if self.model == "gmm":
            self.density_ = GaussianMixture(self.n_components, covariance_type="full", reg_covar=1e-4, random_state=self.seed).fit(x)
        else:
            import zuko

            torch.manual_seed(self.seed)
            self.density_ = zuko.flows.MAF(features=x.shape[1], context=self.classes_, transforms=self.transforms,
                                           hidden_features=self.hidden)

            def nll(flow, xb, yb):
                noisy = xb + self.noise * torch.randn_like(xb) if flow.training else xb
                return -self._flow(flow, yb).log_prob(noisy).mean()

            # the labels travel as the batches' targets; the class-agnostic flow ignores them
            self.history_ = train_fit(
                self.density_, ArraySource(x, outputs.labels, name="features"), ArraySource(x_val, held_out.labels, name="held-out"),
                epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, weight_decay=0.0, seed=self.seed,
                loss_fn=nll, patience=self.patience, quiet=self.quiet, description="fitting the flow",
            )
        self.calibrate(held_out)
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def _flow(self, flow, labels: torch.Tensor):
        """The flow's distribution, given the classes when it is conditional."""
        if not self.classes_:
            return flow()
        return flow(torch.nn.functional.one_hot(labels.long(), self.classes_).float())

    def class_log_densities(self, outputs: Outputs) -> np.ndarray:
        """log p(features | c) for every sample and class, (N, C); conditional flows only."""
        self._check_fitted()
        if not self.classes_:
            raise SettingsError("class log-densities need a conditional flow (conditional=True)")
        x = torch.from_numpy(self._features(outputs))
        with torch.no_grad():
            return np.stack([np.concatenate([self._flow(self.density_, torch.full((len(b),), c)).log_prob(b).numpy()
                                             for b in x.split(4096)]) for c in range(self.classes_)], 1).astype(np.float64)

    def log_density(self, outputs: Outputs) -> np.ndarray:
        """log p(features) of every sample, (N,); for a conditional flow, log p(features | predicted class)."""
        self._check_fitted()
        if self.model == "gmm":
            return self.density_.score_samples(self._features(outputs))
        if self.classes_:
            return self.class_log_densities(outputs)[np.arange(outputs.n), outputs.preds]
        x = torch.from_numpy(self._features(outputs))
        with torch.no_grad():
            return np.concatenate([self.density_().log_prob(b).numpy() for b in x.split(4096)]).astype(np.float64)

    def _score(self, outputs: Outputs) -> np.ndarray:
        """-log p(features): the higher, the more likely the model gets the sample wrong. For a
        conditional flow, -log p(f | y_hat) plus the margin of the best other class (module docstring)."""
        if self.model == "gmm" or not self.classes_:
            return -self.log_density(outputs)
        logp = self.class_log_densities(outputs)
        rows = np.arange(outputs.n)
        own = logp[rows, outputs.preds]
        logp[rows, outputs.preds] = -np.inf
        return -own + (logp.max(1) - own)

    def test(self, outputs: Outputs) -> dict[str, float | str]:
        """One-sided tests that misclassified samples have lower log-density than correct ones.

        Returns Mann-Whitney U (statistic, p-value, and the effect size P(wrong < right),
        the AUROC of -log p for telling them apart), Kolmogorov-Smirnov D and p-value, the
        counts, and a sentence for the report.
        """
        logp, wrong = self.log_density(outputs), ~outputs.correct
        if wrong.sum() == 0 or wrong.all():
            raise DataError("the test needs both misclassified and correct samples")
        a, b = logp[wrong], logp[~wrong]
        mw = stats.mannwhitneyu(a, b, alternative="less")
        with warnings.catch_warnings():  # where the exact p-value fails, scipy uses the asymptotic one and says so
            warnings.filterwarnings("ignore", "ks_2samp: Exact calculation unsuccessful", RuntimeWarning)
            ks = stats.ks_2samp(a, b, alternative="greater")
        effect = 1.0 - mw.statistic / (len(a) * len(b))
        verdict = "lower" if mw.pvalue < 0.01 else "not significantly lower"
        sentence = (f"Misclassified samples have {verdict} feature density than correct ones "
                    f"(one-sided Mann-Whitney p = {mw.pvalue:.2g}, P(wrong below right) = {effect:.2f}; "
                    f"KS D = {ks.statistic:.2f}, p = {ks.pvalue:.2g}; {len(a)} wrong, {len(b)} right).")
        return {"mannwhitney_u": float(mw.statistic), "mannwhitney_p": float(mw.pvalue), "effect_size": float(effect),
                "ks_d": float(ks.statistic), "ks_p": float(ks.pvalue), "n_wrong": int(len(a)), "n_right": int(len(b)),
                "sentence": sentence}

    def _find(self, outputs: Outputs, *, clf: Any, data: Any, train: Outputs | None, val: Outputs | None) -> list[FailureMode]:
        """The flagged samples as one failure mode, most suspect first (none when none is flagged).

        One mode, not one per predicted class: what the samples share is that they lie where the
        training features are rare, whatever class they land in, and a shift that touches every
        class (a new camera, blur, another site) is one failure with one significance test, not
        many small ones that each fall short of it (issue 12's `shift` problem: the blurred digits
        get 22% wrong against 4%, flagged as one mode; split by predicted class, each part holds
        about ten rows). The predicted classes are in the mode's evidence ("pred_counts")."""
        if not hasattr(self, "n_features_in_"):
            self.fit(train, val)
        flagged = np.flatnonzero(self.predict(outputs))
        scores = self.score(outputs)
        rows = flagged[np.argsort(-scores[flagged], kind="stable")]
        modes = [self._mode(0, rows, outputs, summary=f"low feature density (flagged at {self.fpr:.0%} of correct held-out samples): ",
                            metrics={"mean_score": float(scores[rows].mean())})] if len(rows) else []
        shape = input_shape(data)
        images = clf is not None and shape is not None and len(shape) == 3
        self.analyses_["density"] = analyse(self, outputs, train, val, clf=clf if images else None, data=data if images else None,
                                            compare=self.compare and train is not None, seed=self.seed, quiet=self.quiet)
        return modes
