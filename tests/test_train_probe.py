import numpy as np
import pytest
import torch
import torch.nn.functional as F

import faultlines as fl
from faultlines.data import ArraySource, EmbeddingTable
from faultlines.errors import DataError, ModelError
from faultlines.train import SmallCNN, fit


def test_small_cnn_reaches_95_percent_on_digits(test_outputs):
    assert test_outputs.accuracy >= 0.95


def test_probe_outputs_agree_with_the_model(clf, splits, test_outputs):
    x, y = torch.from_numpy(splits.test.x), torch.from_numpy(splits.test.y)
    logits = clf.logits(x)
    assert np.array_equal(test_outputs.preds, logits.argmax(1).numpy())
    assert np.allclose(test_outputs.losses, F.cross_entropy(logits, y, reduction="none").numpy(), atol=1e-4)
    assert test_outputs.embeddings.shape == (360, 64)
    assert np.allclose(test_outputs.probs.sum(1), 1, atol=1e-5)


def test_probe_is_batch_size_independent(clf, splits, test_outputs):
    small = fl.probe(clf, splits.test, batch_size=7, quiet=True)
    assert np.allclose(small.embeddings, test_outputs.embeddings, atol=1e-5)


def test_probe_rejects_labels_beyond_the_models_classes(clf):
    src = ArraySource(np.zeros((3, 1, 16, 16)), [0, 4, 12])
    with pytest.raises(DataError, match=r"labels range over \[0, 12\] but the model has 10 classes"):
        fl.probe(clf, src, quiet=True)


def test_probe_rejects_inputs_the_model_cannot_take(clf):
    with pytest.raises(ModelError, match=r"cannot take inputs of shape \(2, 1, 5, 5\)"):
        fl.probe(clf, ArraySource(np.zeros((2, 1, 5, 5)), [0, 1]), quiet=True)


def test_embedding_table_needs_no_model_and_rejects_nan():
    emb = np.ones((4, 2))
    probs = np.full((4, 2), 0.5)
    out = fl.probe(None, EmbeddingTable(emb, np.array([0, 1, 0, 1]), probs), quiet=True)
    assert out.n == 4
    emb[2, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        fl.probe(None, EmbeddingTable(emb, np.array([0, 1, 0, 1]), probs), quiet=True)
    with pytest.raises(ModelError, match="model is needed"):
        fl.probe(None, ArraySource(emb[:2], [0, 1]), quiet=True)


def test_fit_adds_the_extra_loss_term_and_keeps_the_best_epoch(splits):
    small = splits.train.subset(np.arange(200))
    runs = []
    for extra in (None, lambda m, x, y: torch.tensor(5.0)):
        torch.manual_seed(0)
        runs.append(fit(SmallCNN(), small, None, epochs=3, extra_loss=extra))
    # a constant term changes no gradient: the same training, every epoch's loss 5 higher
    assert np.allclose(np.array(runs[1].train_loss) - runs[0].train_loss, 5.0, atol=1e-4)
    torch.manual_seed(0)
    h = fit(SmallCNN(), small, splits.val, epochs=6, patience=2)
    assert h.val_loss[h.best_epoch] == min(h.val_loss)


def test_fit_is_deterministic_given_the_seed(splits):
    small = splits.train.subset(np.arange(128))
    weights = []
    for _ in range(2):
        torch.manual_seed(0)
        m = SmallCNN()
        fit(m, small, epochs=2, seed=3)
        weights.append(m.fc2.weight.detach().clone())
    assert torch.equal(*weights)
