import numpy as np
import pytest

import faultlines as fl
from faultlines.bench.blobs import planted_blob
from faultlines.errors import DataError


@pytest.mark.parametrize("cls, wrong_label", [(3, 8), (4, 9), (7, 1), (2, 1), (5, 6)])
def test_top_spotlight_finds_a_planted_mislabelled_cluster(plant_cluster, cls, wrong_label):
    relabelled, planted = plant_cluster(cls, wrong_label)
    top = fl.Spotlight(size=len(planted), n_spotlights=2).find(relabelled)[0]
    # the spotlight's own size of nearest rows is the planted cluster; growing may add errors nearby
    assert np.isin(top.members[: len(planted)], planted).mean() >= 0.8
    assert np.isin(planted, top.members).mean() >= 0.8
    assert top.metrics["mean_loss"] > 5 * relabelled.losses.mean()


def test_spotlight_finds_a_planted_blob_with_either_kernel():
    out, blob = planted_blob(n=4000, dim=16, seed=1)
    for kernel in ("linear", "gaussian"):
        modes = fl.Spotlight(size=0.01, n_spotlights=2, kernel=kernel).find(out)
        top = modes[0].members
        assert blob[top].mean() >= 0.9, kernel
        assert blob[top].sum() / blob.sum() >= 0.9, kernel


def test_spotlight_modes_have_the_documented_shape(test_outputs):
    sl = fl.Spotlight(size=0.05, n_spotlights=3)
    modes = sl.find(test_outputs)
    assert [m.id for m in modes] == ["spotlight-0", "spotlight-1", "spotlight-2"]
    assert sl.weights_.shape == (360, 3) and sl.centers_.shape == (3, 64)
    for m in modes:
        assert m.method == "spotlight" and m.source == "test"
        assert np.all(np.diff(m.weights) <= 0)  # most typical first
        # members: at least the spotlight's size of nearest rows (more where growing them made their errors more significant)
        assert m.metrics["size"] == len(m.members) >= round(m.metrics["weight"])
        assert m.metrics["weight"] >= 0.95 * 0.05 * 360  # the size constraint holds
        assert m.evidence["typical"] == m.members[:16].tolist()
        assert sum(m.evidence["label_counts"].values()) == len(m.members)
    # the first spotlight is where the loss is: far above the data set's mean loss
    assert modes[0].metrics["weighted_loss"] > 3 * test_outputs.losses.mean()


def test_later_spotlights_look_elsewhere(test_outputs):
    sl = fl.Spotlight(size=0.03, n_spotlights=3)
    sl.find(test_outputs)
    w = sl.weights_ / sl.weights_.max(0)
    # the heaviest members of spotlight 0 are barely covered by spotlight 1
    heaviest = np.argsort(-w[:, 0])[:5]
    assert w[heaviest, 1].mean() < 0.5


def test_same_seed_same_modes(test_outputs):
    a = fl.Spotlight(size=0.03, n_spotlights=3, seed=4).find(test_outputs)
    b = fl.Spotlight(size=0.03, n_spotlights=3, seed=4).find(test_outputs)
    for x, y in zip(a, b):
        assert np.array_equal(x.members, y.members) and np.array_equal(x.weights, y.weights)
        assert x.metrics == y.metrics and x.summary == y.summary


def test_pca_option_reduces_the_search_space(test_outputs):
    sl = fl.Spotlight(size=0.05, n_spotlights=1, pca=8)
    sl.find(test_outputs)
    assert sl.centers_.shape == (1, 8)


@pytest.mark.parametrize("kwargs", [dict(size=0), dict(kernel="box"), dict(n_spotlights=0)])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        fl.Spotlight(**kwargs)


def test_size_larger_than_the_data_is_refused(test_outputs):
    with pytest.raises(DataError, match="cannot fit"):
        fl.Spotlight(size=1000).find(test_outputs)
