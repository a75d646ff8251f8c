"""FeatureDensity: the flow and mixture densities, the hypothesis tests, the conformal detector."""

import time

import numpy as np
import pytest

import faultlines as fl
from faultlines.detect.metrics import detection_metrics
from faultlines.errors import DataError, SettingsError
from faultlines.detect.density import FeatureDensity


@pytest.fixture(scope="module")
def train_val(clf, splits):
    return fl.probe(clf, splits.train, quiet=True), fl.probe(clf, splits.val, quiet=True)


@pytest.fixture(scope="module")
def flow(train_val):
    start = time.perf_counter()
    density = FeatureDensity().fit(*train_val)
    density.seconds = time.perf_counter() - start
    return density


def test_flow_fits_quickly_and_errors_are_lower_density(flow, test_outputs):
    assert flow.seconds < 120
    result = flow.test(test_outputs)
    assert result["mannwhitney_p"] < 0.01 and result["effect_size"] > 0.7
    assert "lower feature density" in result["sentence"]
    assert detection_metrics(flow.score(test_outputs), ~test_outputs.correct)["auroc"] > 0.8


def test_flow_density_is_a_density(flow, test_outputs):
    logp = flow.log_density(test_outputs)
    assert logp.shape == (360,) and np.isfinite(logp).all()
    assert np.allclose(flow.score(test_outputs), -logp)
    # noise images sit far below the digits' density
    rng = np.random.default_rng(0)
    noise = fl.Outputs.from_probs(np.zeros(50, int), np.full((50, 10), 0.1), rng.normal(0, 3, (50, 64)))
    assert np.median(flow.log_density(noise)) < np.percentile(logp, 1)


def test_conformal_detector_keeps_its_false_positive_rate(train_val, test_outputs):
    density = FeatureDensity(model="gmm", fpr=0.1).fit(*train_val)
    correct_flagged = density.predict(test_outputs)[test_outputs.correct].mean()
    assert correct_flagged < 0.1 + 0.05  # exchangeable held-out correct samples: about fpr
    p = density.p_values(test_outputs)
    assert np.all((p > 0) & (p <= 1))
    # as a finder: the flagged samples are one mode, most suspect first, whatever class they land in
    (mode,) = density.find(test_outputs)
    assert sorted(mode.members.tolist()) == np.flatnonzero(density.predict(test_outputs)).tolist()
    assert np.all(np.diff(density.score(test_outputs)[mode.members]) <= 0)
    assert sum(mode.evidence["pred_counts"].values()) == len(mode.members) and len(mode.evidence["pred_counts"]) > 1


def test_bad_inputs_get_clear_errors(train_val):
    train, _ = train_val
    with pytest.raises(DataError, match="more samples than features"):
        FeatureDensity().fit(train.subset(np.arange(40)))
    with pytest.raises(SettingsError):
        FeatureDensity(model="kde")
    density = FeatureDensity(model="gmm").fit(train)
    bad = train.embeddings.copy()
    bad[3, 0] = np.inf
    broken = fl.Outputs.__new__(fl.Outputs)  # bypass validation: a caller's array went bad later
    object.__setattr__(broken, "embeddings", bad)
    with pytest.raises(DataError, match="NaN or infinite"):
        density.score(broken)


def test_a_conditional_flow_scores_density_plus_the_margin_of_the_best_other_class(train_val, test_outputs, flow):
    density = FeatureDensity(conditional=True).fit(*train_val)
    logp = density.class_log_densities(test_outputs)
    assert logp.shape == (360, 10) and np.isfinite(logp).all()
    rows = np.arange(360)
    own = logp[rows, test_outputs.preds]
    np.testing.assert_allclose(density.log_density(test_outputs), own)
    others = np.where(np.eye(10, dtype=bool)[test_outputs.preds], -np.inf, logp).max(1)
    np.testing.assert_allclose(density.score(test_outputs), -own + others - own)
    # the classes' densities agree with the classifier on most samples, and the score tells
    # mistakes apart better than the class-agnostic flow's
    assert (logp.argmax(1) == test_outputs.preds).mean() > 0.9
    wrong = ~test_outputs.correct
    assert detection_metrics(density.score(test_outputs), wrong)["auroc"] > detection_metrics(flow.score(test_outputs), wrong)["auroc"]
    with pytest.raises(SettingsError):
        FeatureDensity(model="gmm", conditional=True)
    with pytest.raises(SettingsError, match="conditional flow"):
        flow.class_log_densities(test_outputs)
