import pickle
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import faultlines as fl
from faultlines.errors import LayerNotFoundError, ModelError
from faultlines.model import load_module
from faultlines.train import SmallCNN


def _x(n=5):
    return torch.rand(n, 1, 16, 16, generator=torch.Generator().manual_seed(0))


def test_default_embedding_is_the_input_of_the_last_linear():
    torch.manual_seed(0)
    m = SmallCNN()
    clf = fl.Classifier(m)
    x = _x()
    expected = F.relu(m.fc1(m.features(x).flatten(1)))
    logits, emb = clf.forward(x)
    assert clf.layer_name == "fc2 (input)"
    assert torch.allclose(emb, expected) and torch.allclose(logits, m(x))


def test_named_layer_reads_that_layers_output():
    torch.manual_seed(0)
    m = SmallCNN()
    emb = fl.Classifier(m, layer="features").embed(_x())
    assert emb.shape == (5, 32 * 4 * 4)


def test_missing_layer_names_the_layers_there_are():
    with pytest.raises(LayerNotFoundError, match="no layer named 'fc9'.*fc1, fc2"):
        fl.Classifier(SmallCNN(), layer="fc9")


def test_model_without_linear_needs_a_layer():
    with pytest.raises(LayerNotFoundError, match="no nn.Linear"):
        fl.Classifier(nn.Sequential(nn.Flatten()))


def test_loss_is_per_sample_cross_entropy_and_probs_sum_to_one():
    clf = fl.Classifier(SmallCNN())
    x, y = _x(), torch.tensor([0, 1, 2, 3, 4])
    assert torch.allclose(clf.loss(x, y), F.cross_entropy(clf.logits(x), y, reduction="none"))
    assert torch.allclose(clf.probs(x).sum(1), torch.ones(5))


def test_preprocess_runs_before_the_module():
    m = SmallCNN()
    plain, shifted = fl.Classifier(m), fl.Classifier(m, preprocess=lambda x: x - 0.5)
    assert torch.allclose(plain.logits(_x() - 0.5), shifted.logits(_x()))


def test_checkpoint_round_trip(model_file, cnn):
    clf = fl.Classifier.load(model_file)
    assert clf.class_names == tuple(str(d) for d in range(10))
    assert torch.allclose(clf.logits(_x()), cnn(_x()))


def test_state_dict_needs_a_factory(tmp_path):
    m = SmallCNN()
    torch.save(m.state_dict(), tmp_path / "sd.pt")
    with pytest.raises(ModelError, match="state dict.*factory"):
        fl.Classifier.load(tmp_path / "sd.pt")
    clf = fl.Classifier.load(tmp_path / "sd.pt", factory="faultlines.train:SmallCNN")
    assert torch.allclose(clf.logits(_x()), m(_x()))
    with pytest.raises(ModelError, match="do not fit"):
        fl.Classifier.load(tmp_path / "sd.pt", factory=lambda: SmallCNN(hidden=8))


def test_pickled_model_is_refused_unless_trusted(tmp_path):
    torch.save(SmallCNN(), tmp_path / "pickled.pt")
    with pytest.raises(ModelError, match="trust-pickle"):
        fl.Classifier.load(tmp_path / "pickled.pt")
    assert isinstance(fl.Classifier.load(tmp_path / "pickled.pt", trust_pickle=True).module, SmallCNN)


def test_torchscript_model_uses_logits_and_refuses_named_layers(tmp_path):
    m = SmallCNN()
    torch.jit.save(torch.jit.trace(m, _x()), tmp_path / "ts.pt")
    clf = fl.Classifier.load(tmp_path / "ts.pt")
    logits, emb = clf.forward(_x())
    assert torch.allclose(logits, m(_x()), atol=1e-6) and torch.equal(emb, logits)
    with pytest.raises(ModelError, match="TorchScript"):
        fl.Classifier.load(tmp_path / "ts.pt", layer="fc1")


def test_unreadable_model_files(tmp_path):
    with pytest.raises(ModelError, match="no such model file"):
        fl.Classifier.load(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage")
    with pytest.raises(ModelError):
        fl.Classifier.load(tmp_path / "junk.pt")
    (tmp_path / "evil.pt").write_bytes(pickle.dumps(np.ones(3)))
    with pytest.raises(ModelError):
        load_module(tmp_path / "evil.pt")


def test_module_returning_logits_and_embeddings():
    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.head = nn.Linear(3, 4), nn.Linear(4, 2)

        def forward(self, x):
            h = self.body(x)
            return self.head(h), h * 2

    m = TwoHeads()
    x = torch.rand(6, 3)
    _, emb = fl.Classifier(m).forward(x)
    assert torch.allclose(emb, m.body(x) * 2)


def test_exported_program_is_read_at_its_last_linear(tmp_path):
    m = SmallCNN()
    batch = torch.export.Dim("batch")
    program = torch.export.export(m, (_x(),), dynamic_shapes=({0: batch},))
    torch.export.save(program, tmp_path / "m.pt2")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf = fl.Classifier.load(tmp_path / "m.pt2")
    assert not [w for w in caught if issubclass(w.category, FutureWarning)]  # torch's notices stay quiet
    logits, emb = clf.forward(_x(7))
    assert clf.layer_name == "fc2 (input)"
    assert torch.allclose(emb, F.relu(m.fc1(m.features(_x(7)).flatten(1))), atol=1e-5)
    assert torch.allclose(logits, m(_x(7)), atol=1e-5)
