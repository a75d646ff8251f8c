"""scikit-learn classifiers: in memory through the API, from skops files and ONNX models (and an
exported PyTorch one) through the CLI, with the class order taken from the model, never guessed
(issue 29)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import command
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.svm import LinearSVC

import faultlines as fl
from faultlines.bench.outcomes import taught_digits
from faultlines.errors import ModelError
from faultlines.significance import significant

skops_io = pytest.importorskip("skops.io", reason="the sklearn extra (skops) is not installed")


def double(x):
    return 2 * x


@pytest.mark.parametrize("seed", [0, 1])
def test_a_pipeline_in_memory_shows_the_region_it_was_taught_wrong(seed):
    model, data, truth = taught_digits(seed)
    result = fl.scan(fl.Classifier(model), data, quiet=True, seed=seed)
    assert result.outputs.accuracy == pytest.approx(float((model.predict(data.x) == data.y).mean()))
    assert result.config["model"]["class"] == "Pipeline" and result.config["model"]["embedding_layer"] == "pipeline features"
    top = next(m for m in result.modes if significant(m))
    assert truth[top.members].mean() >= 0.7 and truth[top.members].sum() >= 0.5 * truth.sum()


def test_a_skops_file_scans_from_the_command_line_with_the_models_class_order(tmp_path):
    x, y = load_breast_cancer(return_X_y=True)  # class 0 is "malignant", 1 "benign": not sorted by name
    rng = np.random.default_rng(0)
    rows = rng.permutation(len(y))
    train, test = rows[:300], rows[300:]
    model = GradientBoostingClassifier(n_estimators=30, random_state=0).fit(x[train], y[train])
    skops_io.dump(model, tmp_path / "gb.skops")
    names = np.array(["malignant", "benign"])
    np.savez(tmp_path / "t.npz", x=x[test].astype(np.float32), y=names[y[test]])
    own = float((model.predict(x[test]) == y[test]).mean())
    done = command("scan", "--model", tmp_path / "gb.skops", "--data", tmp_path / "t.npz", "--out", tmp_path / "run", "-q",
                   "--class-names", "malignant,benign")
    assert done.returncode == 0, done.stderr
    assert f"accuracy {own:.4f}" in done.stdout and "warning" not in done.stderr
    record = json.loads((tmp_path / "run" / "scan.json").read_text())
    assert record["config"]["model"]["class"] == "GradientBoostingClassifier"
    assert record["config"]["data"]["classes"] == ["malignant", "benign"]
    assert not (tmp_path / "run" / "model.pt").exists()  # `fix` repairs torch models only
    # the labels' names sorted (benign, malignant) against the model's columns: said, not silent
    guessed = command("scan", "--model", tmp_path / "gb.skops", "--data", tmp_path / "t.npz", "--out", tmp_path / "guessed", "-q")
    assert guessed.returncode == 0 and guessed.stderr.count("warning:") == 1, guessed.stderr
    assert "--class-names malignant,benign" in guessed.stderr


def test_a_skops_file_with_code_outside_scikit_learn_needs_trust(tmp_path):
    x, y = load_breast_cancer(return_X_y=True)
    model = make_pipeline(FunctionTransformer(double), StandardScaler(), LogisticRegression()).fit(x, y)
    skops_io.dump(model, tmp_path / "m.skops")
    with pytest.raises(ModelError, match="outside scikit-learn.*trust"):
        fl.Classifier.load(tmp_path / "m.skops")
    loaded = fl.Classifier.load(tmp_path / "m.skops", trust_pickle=True)
    assert np.allclose(loaded.predict_probs(x[:20].astype(np.float32)), model.predict_proba(x[:20]), atol=1e-5)
    (tmp_path / "bad.skops").write_bytes((tmp_path / "m.skops").read_bytes()[:300])
    with pytest.raises(ModelError, match="cannot read|damaged"):
        fl.Classifier.load(tmp_path / "bad.skops")


def test_models_that_cannot_be_read_say_why():
    x, y = load_breast_cancer(return_X_y=True)
    x = StandardScaler().fit_transform(x)
    with pytest.raises(ModelError, match="torch nn.Module or a fitted scikit-learn classifier"):
        fl.Classifier(LinearSVC().fit(x, y))  # no probabilities
    with pytest.raises(ModelError, match="not fitted"):
        fl.Classifier(LogisticRegression())
    with pytest.raises(Exception, match="no layers"):
        fl.Classifier(LogisticRegression().fit(x, y), layer="fc1")


def test_onnx_models_run_with_their_own_classes_and_a_named_layer(tmp_path):
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    skl2onnx = pytest.importorskip("skl2onnx", reason="skl2onnx (to write the test's models) is not installed")
    import torch

    x, y = load_breast_cancer(return_X_y=True)
    x = x.astype(np.float32)
    names = np.array(["malignant", "benign"])
    # a Pipeline on class names, converted with its ZipMap (probabilities as {class: p} per row)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(x[:300], names[y[:300]])
    (tmp_path / "lr.onnx").write_bytes(skl2onnx.to_onnx(pipeline, x[:1]).SerializeToString())
    loaded = fl.Classifier.load(tmp_path / "lr.onnx")
    assert loaded.class_names == tuple(pipeline.classes_)  # the model's order: benign, malignant
    assert np.allclose(loaded.predict_probs(x[300:]), pipeline.predict_proba(x[300:]), atol=1e-4)
    # gradient boosting on ids, without the ZipMap, through the command line
    boosted = GradientBoostingClassifier(n_estimators=30, random_state=0).fit(x[:300], y[:300])
    converted = skl2onnx.to_onnx(boosted, x[:1], options={id(boosted): {"zipmap": False}})
    (tmp_path / "gb.onnx").write_bytes(converted.SerializeToString())
    np.savez(tmp_path / "t.npz", x=x[300:], y=y[300:])
    done = command("scan", "--model", tmp_path / "gb.onnx", "--data", tmp_path / "t.npz", "--out", tmp_path / "run", "-q",
                   "--class-names", "malignant,benign")
    assert done.returncode == 0, done.stderr
    assert f"accuracy {float((boosted.predict(x[300:]) == y[300:]).mean()):.4f}" in done.stdout
    assert not (tmp_path / "run" / "model.pt").exists()
    # a PyTorch model exported to ONNX: its logits, and its hidden layer as the embedding
    net = torch.nn.Sequential(torch.nn.Linear(30, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)).eval()
    torch.onnx.export(net, torch.zeros(1, 30), tmp_path / "net.onnx", input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}}, dynamo=False)
    import onnx

    hidden = next(n.output[0] for n in onnx.load(tmp_path / "net.onnx").graph.node if n.op_type == "Relu")
    exported = fl.Classifier.load(tmp_path / "net.onnx", layer=hidden)
    batch = torch.from_numpy(x[:16])
    logits, emb = exported.forward(batch)
    with torch.no_grad():
        assert torch.allclose(logits, net(batch), atol=1e-4) and torch.allclose(emb, net[:2](batch), atol=1e-4)
    with pytest.raises(Exception, match="no tensor named 'fc9'"):
        fl.Classifier.load(tmp_path / "net.onnx", layer="fc9")
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="ONNX"):
        fl.Classifier.load(tmp_path / "bad.onnx")
