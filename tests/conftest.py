"""Shared fixtures: the real digits data and one SmallCNN trained on it (about 5 s, once per session)."""

from __future__ import annotations

import io

import pytest

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
