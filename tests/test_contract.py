"""One finder contract, one scan path: requirements, settings, detectors, exports, import layering."""

import ast
import importlib
import json
import pkgutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import faultlines as fl
from faultlines.cli import app
from faultlines.errors import DataError, NotFittedError, SettingsError
from faultlines.registry import FINDERS, build
from faultlines.report import render

runner = CliRunner()
scan_module = importlib.import_module("faultlines.scan")  # fl.scan is the function
PACKAGE = Path(fl.__file__).parent


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def table(n=300, dim=8, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(classes), n).astype(np.float32)
    return fl.data.EmbeddingTable(rng.normal(size=(n, dim)).astype(np.float32), rng.integers(0, classes, n), probs, name="table")


# -- the registry and the settings table ------------------------------------------------------


def test_every_finder_is_registered_under_its_name_and_exported():
    classes = FINDERS
    assert list(classes) == list(FINDERS) == ["spotlight", "error-mixture", "defuse", "density", "perturb"]
    for name, cls in classes.items():
        assert cls.name == name
        assert getattr(fl, cls.__name__) is cls
    assert fl.Defuse is fl.find.Defuse and fl.VAE is fl.generative.VAE


@pytest.mark.parametrize("name", list(FINDERS))
def test_settings_come_from_the_constructor_and_round_trip(name):
    cls = FINDERS[name]
    finder = cls()
    params = finder.get_params()
    assert list(params) == cls.param_names()
    assert set(cls.constraints) <= set(params), "a constraint names a setting the constructor does not take"
    assert {"seed", "quiet"} <= set(params)
    clone = finder.clone(seed=7)
    assert clone.seed == 7 and clone.get_params() | {"seed": 0} == params
    assert json.dumps(finder.settings())  # the run record can keep it


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: fl.Spotlight(pca=0), r"pca must be None or a whole number at least 1, not 0"),
        (lambda: fl.Spotlight(size=0), r"size must be None or a number above 0"),
        (lambda: fl.Spotlight(n_spotlights=2.5), "whole number"),
        (lambda: fl.ErrorMixture(y_weight=-1), "y_weight"),
        (lambda: fl.Defuse(k=0), "k must be a whole number at least 1"),
        (lambda: fl.Defuse(vae="vae.pt"), "vae must be None or a VAE"),
        (lambda: fl.FeatureDensity(model="kde"), r"model must be one of 'flow', 'gmm'"),
        (lambda: fl.FeatureDensity(fpr=1.0), r"fpr must be a number in \(0, 1\)"),
        (lambda: fl.PerturbationProbe(max_samples=1), "max_samples"),
        (lambda: fl.Spotlight().set_params(kernel="box"), "kernel must be one of"),
        (lambda: fl.Spotlight().set_params(sizes=3), r"has no setting \['sizes'\]"),
        (lambda: build("spotlight,magic"), r"unknown finders \['magic'\]"),
    ],
)
def test_bad_settings_are_one_settings_error(make, message):
    with pytest.raises(SettingsError, match=message):
        make()


def test_repr_shows_the_settings_that_differ_from_the_defaults():
    assert repr(fl.Spotlight(size=0.02, seed=3)) == "Spotlight(size=0.02, seed=3)"
    assert repr(fl.FeatureDensity()) == "FeatureDensity()"


def test_build_gives_each_finder_the_settings_it_takes():
    spot, mix = build("spotlight,error-mixture", seed=4, size=0.1, n_spotlights=2)
    assert (spot.seed, spot.size, spot.n_spotlights, mix.seed) == (4, 0.1, 2, 4)
    assert [f.name for f in build("all")] == list(FINDERS)


# -- what a finder needs ------------------------------------------------------------------------


def test_a_finder_missing_its_input_names_it(clf, splits, test_outputs):
    with pytest.raises(SettingsError, match="the defuse finder needs the model"):
        fl.Defuse().find(test_outputs, data=splits.test)
    with pytest.raises(SettingsError, match="the density finder needs the model's outputs on its training data"):
        fl.scan(clf, splits.test, [fl.FeatureDensity()], quiet=True)
    with pytest.raises(SettingsError, match="the perturb finder needs the model .* and image inputs"):
        fl.scan(None, table(), [fl.PerturbationProbe()], quiet=True)
    with pytest.raises(DataError, match="takes the probed outputs first"):
        fl.Spotlight().find(clf, data=splits.test)


def test_all_runs_every_finder_the_inputs_allow_and_says_why_others_were_skipped():
    result = fl.scan(None, table(), "all", quiet=True)
    assert [f["name"] for f in result.config["finders"]] == ["spotlight", "error-mixture"]
    skipped = result.config["skipped"]
    assert set(skipped) == {"defuse", "density", "perturb"}
    assert "needs the model" in skipped["defuse"] and "training data" in skipped["density"]
    # with training outputs, the density finder runs on a table too: no model, no attacks
    result = fl.scan(None, table(), "all", train=table(seed=1), quiet=True)
    assert "density" in [f["name"] for f in result.config["finders"]]
    assert set(result.analyses["density"]["metrics"]) <= {"misclassified vs correct"}
    page = render(result)
    assert "Feature density" in page and "only the model's own mistakes are scored" in page


def test_feature_density_runs_in_scan_and_fits_itself(clf, splits):
    result = fl.scan(clf, splits, [fl.FeatureDensity(model="gmm")], quiet=True)
    density = result.analyses["density"]
    assert density["test"]["mannwhitney_p"] < 0.05
    assert "PGD eps=0.1 vs clean" in density["metrics"] and "trust-score" in density["metrics"]["misclassified vs correct"]
    assert all(m.method == "density" for m in result.modes)
    assert "Feature density" in render(result)


def test_scan_on_the_cli_probes_the_data_once_and_reports_every_finder(model_file, splits, tmp_path, monkeypatch):
    for name in ("train", "val", "test"):
        part = getattr(splits, name)
        np.savez(tmp_path / f"{name}.npz", x=part.x, y=part.y)
    probed = []
    real_probe = scan_module.probe
    monkeypatch.setattr(scan_module, "probe", lambda clf, data, **kw: probed.append(kw.get("source", "test")) or real_probe(clf, data, **kw))
    out = tmp_path / "run"
    result = run("scan", "--model", model_file, "--data", tmp_path / "test.npz", "--train", tmp_path / "train.npz",
                 "--val", tmp_path / "val.npz", "--finders", "all", "--vae-epochs", "20", "--spotlights", "2", "--out", out, "-q")
    assert result.exit_code == 0, result.output
    assert probed == ["test", "train", "val"]
    record = json.loads((out / "scan.json").read_text())
    assert [f["name"] for f in record["config"]["finders"]] == list(FINDERS) and record["config"]["skipped"] == {}
    assert {"spotlight", "error-mixture", "defuse", "density"} <= {m["method"] for m in record["modes"]}
    assert set(record["analyses"]) == {"density", "perturb", "spotlight"}
    page = (out / "report.html").read_text()
    for heading in ("Feature density", "Spurious regions", "Generative model", 'id="spotlight-0"', 'id="error-mixture-0"', 'id="defuse-0"'):
        assert heading in page
    assert {"model.pt", "vae.pt", "table-generated.npz", "table-perturb_maps.npz"} <= {p.name for p in out.iterdir()}


def test_a_finder_the_inputs_cannot_feed_is_one_line_on_the_cli(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = table()
    pq.write_table(pa.table({"embedding": list(t.embeddings), "probs": list(t.probs), "label": t.labels}), tmp_path / "t.parquet")
    result = run("scan", "--data", tmp_path / "t.parquet", "--finders", "defuse", "--out", tmp_path / "o")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: the defuse finder needs the model")
    assert not (tmp_path / "o").exists()
    for option, value in (("--vae", tmp_path / "vae.pt"), ("--object-mask", tmp_path / "mask.npy")):
        refused = run("scan", "--data", tmp_path / "t.parquet", option, value, "--out", tmp_path / "o")
        assert refused.exit_code == 2 and f"{option} is for the" in refused.stderr and "add it to --finders" in refused.stderr
    result = run("scan", "--data", tmp_path / "t.parquet", "--finders", "all", "--out", tmp_path / "o", "-q")
    assert result.exit_code == 0 and "skipped defuse: the defuse finder needs the model" in result.stdout


# -- detectors ------------------------------------------------------------------------------------


def test_a_detector_used_before_fit_says_so(test_outputs):
    for detector in (fl.FeatureDensity(), fl.KNN(), fl.MSP()):
        with pytest.raises(NotFittedError, match="not fitted yet"):
            detector.score(test_outputs)
    with pytest.raises(NotFittedError, match="not calibrated"):
        fl.MSP().fit(test_outputs).p_values(test_outputs)


def test_features_of_another_width_are_refused(test_outputs):
    narrow = fl.Outputs.from_probs(test_outputs.labels, test_outputs.probs, test_outputs.embeddings[:, :10])
    for detector in (fl.FeatureDensity(model="gmm").fit(test_outputs), fl.KNN().fit(test_outputs), fl.Mahalanobis().fit(test_outputs)):
        with pytest.raises(DataError, match="the features have 10 columns but the .* detector was fitted on 64"):
            detector.score(narrow)
    assert np.isfinite(fl.MSP().fit(test_outputs).score(narrow)).all()  # reads no features


def test_baselines_share_the_conformal_detector(test_outputs, pool_outputs):
    knn = fl.KNN().fit(pool_outputs, test_outputs)
    p = knn.p_values(test_outputs)
    assert np.all((p > 0) & (p <= 1))
    assert knn.predict(test_outputs, fpr=0.1)[test_outputs.correct].mean() <= 0.1 + 1e-9


# -- inputs -----------------------------------------------------------------------------------------


def test_outputs_from_probs_takes_lists():
    out = fl.Outputs.from_probs([0, 1, 1], [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    assert out.embeddings.dtype == np.float32 and out.embeddings.shape == (3, 2)
    assert out.preds.tolist() == [0, 1, 0] and out.accuracy == pytest.approx(2 / 3)
    with pytest.raises(DataError, match="embeddings must be a 2-D array of numbers"):
        fl.Outputs.from_probs([0, 1], [[0.9, 0.1], [0.2, 0.8]], [[1.0, 2.0], [3.0]])


def test_an_all_convolutional_model_goes_through_scan_label_and_fix(splits, tmp_path, monkeypatch):
    import allconv

    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    module = allconv.build()
    fl.train.fit(module, splits.train, splits.val, epochs=30, lr=1e-2, patience=30, seed=0)
    assert fl.train.accuracy(module, splits.test) > 0.7
    torch.save(module.state_dict(), tmp_path / "sd.pt")
    out = tmp_path / "run"
    result = run("scan", "--model", tmp_path / "sd.pt", "--factory", "allconv:build", "--layer", "features", "--data", "digits",
                 "--finders", "defuse", "--vae-epochs", "30", "--out", out, "-q")
    assert result.exit_code == 0, result.output
    regions = [m for m in fl.load_run(out).modes if m.method == "defuse"]
    assert regions
    (tmp_path / "labels.csv").write_text(f"region,label\n{regions[0].id},{regions[0].evidence['label']}\n")
    assert run("label", out, "--labels", tmp_path / "labels.csv").exit_code == 0
    result = run("fix", out, "--lambdas", "1", "--epochs", "2", "-q")
    assert result.exit_code == 0, result.output
    fixed = json.loads((out / "fix.json").read_text())
    assert fixed["after"]["heldout_region_accuracy"] >= fixed["before"]["heldout_region_accuracy"]
    again = fl.Classifier.load(out / "model-fixed.pt", factory="allconv:build", layer="features")
    assert fl.probe(again, splits.test, quiet=True).accuracy > 0.6


# -- layering ------------------------------------------------------------------------------------


def _modules() -> list[str]:
    # __main__ runs the command line when imported
    return ["faultlines"] + [m.name for m in pkgutil.walk_packages([str(PACKAGE)], "faultlines.") if m.name != "faultlines.__main__"]


def _imports(name: str) -> set[str]:
    """The faultlines modules `name` imports, at module level or inside functions."""
    path = PACKAGE.parent / (name.replace(".", "/") + ("/__init__.py" if (PACKAGE.parent / name.replace(".", "/")).is_dir() else ".py"))
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("faultlines"):
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in _MODULES else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("faultlines")}
    return found - {name}


_MODULES = set(_modules())


def _bench_imports(tree: ast.AST) -> list[ast.AST]:
    return [node for node in ast.walk(tree) if (isinstance(node, ast.ImportFrom) and (node.module or "").startswith("faultlines.bench"))
            or (isinstance(node, ast.ImportFrom) and node.module == "faultlines" and any(a.name == "bench" for a in node.names))
            or (isinstance(node, ast.Import) and any(a.name.startswith("faultlines.bench") for a in node.names))]


def test_every_module_imports_and_none_outside_bench_imports_it():
    for name in sorted(_MODULES):
        module = importlib.import_module(name)
        if name.startswith("faultlines.bench"):
            continue
        tree = ast.parse(Path(module.__file__).read_text())
        found = _bench_imports(tree)
        if name == "faultlines.cli":
            # the top layer: only the `faultlines bench` command itself reaches the harness
            command = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "bench")
            assert found and all(node in list(ast.walk(command)) for node in found)
        else:
            assert not found, name


def test_no_import_circle():
    graph = {name: _imports(name) for name in _MODULES}
    visiting, done = [], set()

    def visit(node):
        if node in visiting:
            raise AssertionError("import circle: " + " -> ".join(visiting[visiting.index(node):] + [node]))
        if node in done or node not in graph:
            return
        visiting.append(node)
        for nxt in graph[node]:
            visit(nxt)
        visiting.pop()
        done.add(node)

    for name in sorted(graph):
        visit(name)
