"""Shared fixtures: the real digits data and one SmallCNN trained on it (about 5 s, once per session)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler

import faultlines as fl
from faultlines.data.digits import CLASS_NAMES
from faultlines.model import save_checkpoint
from faultlines.train import train_small_cnn


@pytest.fixture(scope="session")
def splits():
    return fl.data.digits(seed=0)


@pytest.fixture(scope="session")
def cnn(splits):
    return train_small_cnn(splits.train, splits.val, seed=0)


@pytest.fixture(scope="session")
def clf(cnn):
    return fl.Classifier(cnn, class_names=CLASS_NAMES)


@pytest.fixture(scope="session")
def test_outputs(clf, splits):
    return fl.probe(clf, splits.test, quiet=True)


@pytest.fixture(scope="session")
def model_file(cnn, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.pt"
    buf = io.BytesIO()
    save_checkpoint(cnn, buf, CLASS_NAMES)
    path.write_bytes(buf.getvalue())
    return path


@pytest.fixture(scope="session")
def pool_outputs(clf, splits):
    """The model's outputs on val + test: 720 digits it was not trained on."""
    pool = fl.data.ArraySource(np.concatenate([splits.val.x, splits.test.x]), np.concatenate([splits.val.y, splits.test.y]))
    return fl.probe(clf, pool, quiet=True)


@pytest.fixture(scope="session")
def plant_cluster(pool_outputs):
    """plant(cls, wrong_label) -> (relabelled outputs, planted rows).

    Relabels 10% of one class as another: the 10% of that class's samples nearest one of
    them in the standardised embedding space the finders search, so the planted set is a
    contiguous high-loss region (a random 10% would be scattered among correct samples).
    """

    def plant(cls, wrong_label, seed=0):
        out = pool_outputs
        rows = np.flatnonzero(out.labels == cls)
        z = StandardScaler().fit_transform(out.embeddings)[rows]
        anchor = z[np.random.default_rng(seed).integers(len(rows))]
        planted = rows[np.argsort(((z - anchor) ** 2).sum(1))[: round(0.1 * len(rows))]]
        labels = out.labels.copy()
        labels[planted] = wrong_label
        return fl.Outputs.from_probs(labels, out.probs, out.embeddings, out.class_names), planted

    return plant
