import numpy as np
import pytest

import faultlines as fl
from faultlines.bench.peers import CleanlabLabelIssues, ConfusionCells, DatalabGroups, ErrorKMeans, SliceLine
from faultlines.errors import SettingsError


@pytest.mark.parametrize("cls, wrong_label", [(3, 8), (4, 9), (7, 1)])
def test_error_mixture_finds_a_planted_mislabelled_cluster(plant_cluster, cls, wrong_label):
    relabelled, planted = plant_cluster(cls, wrong_label)
    em = fl.ErrorMixture()
    top = em.find(relabelled)[0]
    assert np.isin(top.members, planted).mean() >= 0.8
    assert np.isin(planted, top.members).mean() >= 0.8
    assert top.metrics["error_gap"] > 0.5
    assert np.allclose(em.resp_.sum(1), 1)


def test_error_mixture_ranks_slices_by_error_gap_and_is_deterministic(test_outputs):
    a = fl.ErrorMixture(seed=2).find(test_outputs)
    b = fl.ErrorMixture(seed=2).find(test_outputs)
    gaps = [m.metrics["error_gap"] for m in a]
    assert len(a) >= 3 and gaps == sorted(gaps, reverse=True) and all(g > 0 for g in gaps)
    assert all(np.array_equal(x.members, y.members) for x, y in zip(a, b))
    for m in a:
        assert m.metrics["size"] >= 3 and np.all(np.diff(m.weights) <= 0)


def test_error_mixture_settings_are_checked():
    with pytest.raises(SettingsError):
        fl.ErrorMixture(n_components=0)
    with pytest.raises(SettingsError):
        fl.ErrorMixture(y_weight=-1)


def _outputs(labels, preds, losses=None, emb=None):
    labels, preds = np.array(labels), np.array(preds)
    probs = np.full((len(labels), 3), 0.05, np.float32)
    probs[np.arange(len(labels)), preds] = 0.9
    emb = emb if emb is not None else np.random.default_rng(0).normal(size=(len(labels), 4))
    return fl.Outputs.from_probs(labels, probs, emb)


def test_confusion_cells_by_hand():
    out = _outputs([0, 0, 0, 1, 1, 2, 2, 2], [1, 1, 0, 1, 2, 0, 2, 2])
    modes = ConfusionCells().find(out)
    assert [m.evidence["cell"] for m in modes] == [[0, 1], [1, 2], [2, 0]]
    assert sorted(modes[0].members.tolist()) == [0, 1]


def test_kmeans_slices_hold_only_misclassified_samples(test_outputs):
    modes = ErrorKMeans(n_slices=3).find(test_outputs)
    members = np.concatenate([m.members for m in modes])
    assert len(modes) == 3 and np.all(~test_outputs.correct[members])
    assert len(members) == (~test_outputs.correct).sum()


def test_sliceline_slices_have_more_errors_than_average(test_outputs):
    modes = SliceLine().find(test_outputs)
    assert modes and all(m.metrics["error_rate"] > 1 - test_outputs.accuracy for m in modes)


def _blobs(seed=0, n_blobs=6, per_blob=60):
    """Well-separated blobs; the model is unsure (and often wrong) in blob 0 only."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 10, (n_blobs, 16)) + 20  # positive, as ReLU features are
    blob = np.repeat(np.arange(n_blobs), per_blob)
    emb = centres[blob] + rng.normal(0, 0.3, (len(blob), 16))
    labels = blob % 3
    probs = np.full((len(blob), 3), 0.02)
    probs[np.arange(len(blob)), labels] = 0.96
    weak = blob == 0
    probs[weak] = rng.dirichlet([1, 1, 1], weak.sum())
    return fl.Outputs.from_probs(labels, probs, emb.astype(np.float32)), weak


def test_datalab_ranks_the_underperforming_clusters_first():
    outputs, weak = _blobs()
    modes = DatalabGroups().find(outputs)
    scores = [m.metrics["cluster_score"] for m in modes]
    assert modes and scores == sorted(scores) and scores[0] < 0.6
    assert weak[modes[0].members].all()


def test_cleanlab_label_issues_rank_the_confidently_contradicted_labels():
    rng = np.random.default_rng(1)
    n = 300
    labels = rng.integers(0, 3, n)
    flipped = rng.choice(n, 15, replace=False)
    given = labels.copy()
    given[flipped] = (labels[flipped] + 1) % 3
    probs = np.full((n, 3), 0.05)
    probs[np.arange(n), labels] = 0.9
    outputs = fl.Outputs.from_probs(given, probs, rng.normal(size=(n, 4)).astype(np.float32))
    (mode,) = CleanlabLabelIssues().find(outputs)
    assert set(mode.members[:15].tolist()) == set(flipped.tolist())
