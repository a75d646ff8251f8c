"""Baseline detectors by hand, the attacks, and the density section of scan/demo."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import faultlines as fl
from faultlines.detect.attacks import adversarial
from faultlines.detect.baselines import KNN, MSP, Energy, Mahalanobis, TrustScore
from faultlines.cli import app
from faultlines.errors import DataError, SettingsError


def _outputs(emb, labels, logits):
    logits = np.asarray(logits, np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return fl.Outputs.from_probs(np.asarray(labels), probs, np.asarray(emb, np.float32), logits=logits)


def test_msp_and_energy_by_hand():
    out = _outputs([[0.0], [1.0]], [0, 1], [[2.0, 0.0], [0.0, 0.0]])
    assert np.allclose(MSP().fit(out).score(out), [-np.exp(2) / (np.exp(2) + 1), -0.5])
    assert np.allclose(Energy().fit(out).score(out), [-np.log(np.exp(2) + 1), -np.log(2)])
    no_logits = fl.Outputs.from_probs(np.array([0]), np.array([[0.5, 0.5]]), np.zeros((1, 1)))
    with pytest.raises(DataError, match="logits"):
        Energy().fit(no_logits).score(no_logits)


def test_distance_detectors_by_hand():
    # class 0 at x = -1 and 1, class 1 at x = 9 and 11; two probes predicted as class 0
    train = _outputs([[-1.0, 0], [1.0, 0], [9.0, 0], [11.0, 0]], [0, 0, 1, 1], np.zeros((4, 2)))
    probe_pt = _outputs([[0.0, 0], [5.0, 0]], [0, 0], [[1.0, 0.0], [1.0, 0.0]])  # both predicted 0
    # Mahalanobis: shared covariance of the centred points (var 1 along x, ~0 along y)
    m = Mahalanobis().fit(train).score(probe_pt)
    assert m[0] == pytest.approx(0.0, abs=1e-6) and m[1] > m[0]
    # trust score: distance to class 0 (predicted) over distance to class 1
    assert np.allclose(TrustScore().fit(train).score(probe_pt), [1 / 9, 4 / 4])
    # KNN, k=2, on unit vectors: three training points normalise to (1, 0), like the probe at x = 5
    assert np.allclose(KNN(k=2).fit(train).score(probe_pt)[1], 0.0)


def test_attacks_stay_in_the_epsilon_ball_and_change_predictions(clf, splits):
    small = splits.test.subset(np.arange(60))
    for method in ("fgsm", "pgd"):
        adv = adversarial(clf, small, method, epsilon=0.2)
        assert np.abs(adv.x - small.x).max() <= 0.2 + 1e-6
        assert adv.x.min() >= 0 and adv.x.max() <= 1
        before = fl.probe(clf, small, quiet=True).accuracy
        assert fl.probe(clf, adv, quiet=True).accuracy < before - 0.3
    with pytest.raises(SettingsError):
        adversarial(clf, small, "cw", 0.1)


def test_demo_with_density_reports_tests_and_detectors(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "d"), "--density", "--spotlights", "1", "-q"])
    assert result.exit_code == 0, result.output
    density = json.loads((tmp_path / "d" / "scan.json").read_text())["analyses"]["density"]
    assert density["test"]["mannwhitney_p"] < 0.01
    far = [density["metrics"][t]["flow"]["auroc"] for t in ("uniform-noise vs clean", "gaussian-noise vs clean")]
    assert min(far) >= 0.95
    assert set(density["log_density"]) == {"correct", "misclassified", "adversarial (PGD eps=0.1)", "OOD (uniform noise)"}
    html = (tmp_path / "d" / "report.html").read_text()
    assert "Feature density" in html and "Mann-Whitney" in html and "trust-score" in html
    back = fl.load_run(tmp_path / "d")
    assert back.analyses["density"]["metrics"] == density["metrics"]


def test_scan_density_needs_training_data(model_file, tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((5, 1, 16, 16)), y=np.arange(5))
    result = CliRunner().invoke(app, ["scan", "--model", str(model_file), "--data", str(tmp_path / "d.npz"), "--out", str(tmp_path / "o"), "--density"])
    assert result.exit_code == 2 and "density finder needs the model's outputs on its training data" in result.stderr
    assert "--train PATH" in result.stderr
    assert not (tmp_path / "o").exists()


def test_a_model_with_no_reachable_embedding_layer_is_refused():
    with pytest.raises(fl.errors.LayerNotFoundError, match="no nn.Linear"):
        fl.Classifier(torch.nn.Sequential(torch.nn.Conv2d(1, 10, 16), torch.nn.Flatten()))
