"""Bring your own model and data (issue 16): preprocessing and the input check, fixed-batch
exported programs, factories in the current folder, tables with their own columns, labels and
metadata, image folders read lazily with their paths, and modes described in words."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import command
from PIL import Image
from typer.testing import CliRunner

import faultlines as fl
from faultlines.cli import app, usable_cpus
from faultlines.errors import DataError, SettingsError
from faultlines.model import save_checkpoint
from faultlines.preprocess import Preprocess
from faultlines.train import train_small_cnn
from faultlines.types import encode_labels

def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


# -- preprocessing and the input check ---------------------------------------------------


def test_preprocess_specs_parse_and_apply():
    p = Preprocess.parse("imagenet resize=4x6")
    assert p.mean == (0.485, 0.456, 0.406) and p.resize == (4, 6)
    assert Preprocess.parse(p.describe()) == p
    x = torch.full((2, 3, 8, 8), 0.5)
    y = p(x)
    assert y.shape == (2, 3, 4, 6) and torch.allclose(y[0, 0], torch.full((4, 6), (0.5 - 0.485) / 0.229))
    assert Preprocess.parse("mean=0.5;std=0.25")(torch.ones(1, 1, 2, 2)).eq(2).all()
    for bad in ("", "imagenette", "mean=a std=1", "mean=0.5", "resize=0", "std=0 mean=0", "colour=1"):
        with pytest.raises(SettingsError):
            Preprocess.parse(bad)
    with pytest.raises(DataError, match="channels"):
        Preprocess.parse("imagenet")(torch.ones(1, 2, 4, 4))


@pytest.fixture(scope="module")
def normalised_model(splits, tmp_path_factory):
    """A SmallCNN trained on digits standardised with the training split's mean and std: the
    file, the mean and std, and its accuracy on the test digits standardised the same way."""
    mean, std = float(splits.train.x.mean()), float(splits.train.x.std())
    norm = lambda s: fl.data.ArraySource((s.x - mean) / std, s.y, s.class_names)  # noqa: E731
    model = train_small_cnn(norm(splits.train), norm(splits.val), seed=0)
    path = tmp_path_factory.mktemp("normalised") / "model.pt"
    save_checkpoint(model, path)
    return path, mean, std, fl.probe(fl.Classifier(model), norm(splits.test), quiet=True).accuracy


def test_a_normalised_model_warns_without_preprocess_and_matches_with_it(normalised_model, tmp_path):
    path, mean, std, own = normalised_model
    raw = command("scan", "--model", path, "--data", "digits", "--out", tmp_path / "raw", "--quiet")
    assert raw.returncode == 0, raw.stderr
    lines = raw.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: inputs may be scaled differently from training"), raw.stderr
    assert "--preprocess mean=" in lines[0]
    scanned = float(re.search(r"accuracy (\d\.\d+)", raw.stdout).group(1))
    assert scanned < own - 0.05  # the silent wrong result the check is there for
    record = json.loads((tmp_path / "raw" / "scan.json").read_text())
    assert record["config"]["checks"]["inputs"]["rescaling"] == "standardised per channel"

    fixed = command("scan", "--model", path, "--data", "digits", "--out", tmp_path / "fixed", "--preprocess", f"mean={mean} std={std}")
    assert fixed.returncode == 0, fixed.stderr
    assert "warning" not in fixed.stderr
    assert f"accuracy {own:.4f}" in fixed.stdout
    # not a terminal: a line per stage with its time
    for stage in ("input check", "probe", "spotlight", "significance", "writing the run folder and report"):
        assert re.search(rf"^  {stage}: \d+\.\d s$", fixed.stderr, re.M), fixed.stderr
    record = json.loads((tmp_path / "fixed" / "scan.json").read_text())
    assert record["config"]["model"]["preprocess"] == Preprocess(mean=(mean,), std=(std,)).describe()
    assert record["config"]["checks"]["inputs"] == "passed"


def test_the_input_check_stays_quiet_for_a_model_given_what_it_was_trained_on(clf, splits):
    from faultlines.probe import check_inputs

    assert check_inputs(clf, splits.test) is None


def test_the_input_check_compares_with_what_the_checkpoint_records(cnn, splits, tmp_path):
    from faultlines.model import expectation
    from faultlines.probe import check_inputs

    save_checkpoint(cnn, tmp_path / "m.pt", expected=expectation(fl.probe(fl.Classifier(cnn), splits.val, quiet=True)))
    loaded = fl.Classifier.load(tmp_path / "m.pt")
    assert loaded.expected["accuracy"] > 0.9 and loaded.expected["rows"] == len(splits.val)
    assert check_inputs(loaded, splits.test) is None
    upside_down = fl.data.ArraySource(splits.test.x[:, :, ::-1].copy(), splits.test.y)  # no rescaling undoes it
    found = check_inputs(loaded, upside_down)
    assert found is not None and "rescaling" not in found and found["p_below_expected"] <= 1e-3
    assert "its checkpoint records" in found["message"] and found["accuracy"] < loaded.expected["accuracy"] - 0.1


def _softmax_rows(rng, labels: np.ndarray, k: int, signal: float) -> np.ndarray:
    """Probabilities of a model that favours each row's class by `signal` logits."""
    logits = rng.standard_normal((len(labels), k))
    logits[np.arange(len(labels)), labels] += signal
    probs = np.exp(logits)
    return (probs / probs.sum(1, keepdims=True)).astype(np.float32)


def test_the_class_order_check_is_quiet_on_aligned_columns_and_finds_misaligned_ones():
    from faultlines.probe import check_alignment
    from faultlines.types import Outputs

    rng = np.random.default_rng(0)
    for k, n in ((2, 60), (3, 500), (10, 400), (50, 3000)):
        for _ in range(25):  # a model at chance and a weak one: among k! orders one always fits a little better
            y = rng.integers(0, k, n)
            for probs in (rng.dirichlet(np.ones(k), n).astype(np.float32), _softmax_rows(rng, y, k, 0.3)):
                assert check_alignment(Outputs.from_probs(y, probs, np.zeros((n, 1)))) is None
    for k, n, order in ((2, 100, [1, 0]), (3, 90, [1, 2, 0]), (50, 5000, [1, 0, *range(2, 50)])):
        y = rng.integers(0, k, n)
        probs = _softmax_rows(rng, y, k, 2.0)[:, order]  # the columns in another order than the label ids
        names = tuple(f"c{i}" for i in range(k))
        found = check_alignment(Outputs.from_probs(y, probs, np.zeros((n, 1)), names))
        assert found is not None and found["p_value"] <= 1e-3, (k, n)
        assert found["order"] == [names[i] for i in order] and found["accuracy_fitted"] > found["accuracy"]


def test_a_table_with_its_class_columns_unsorted_warns_and_class_names_mend_it(tmp_path):
    rng = np.random.default_rng(1)
    model_order = np.array(["cat", "dog", "bird"])  # the model's columns, not sorted
    y = rng.integers(0, 3, 300)
    probs = _softmax_rows(rng, y, 3, 2.5)
    true_accuracy = float((probs.argmax(1) == y).mean())
    table = pa.table({"embedding": rng.standard_normal((300, 4)).tolist(), "label": model_order[y].tolist(), "probs": probs.tolist()})
    pq.write_table(table, tmp_path / "t.parquet")
    done = command("scan", "--data", tmp_path / "t.parquet", "--out", tmp_path / "run", "-q")
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: the labels and the probability columns"), done.stderr
    assert "--class-names cat,dog,bird" in lines[0]
    assert float(re.search(r"accuracy (\d\.\d+)", done.stdout).group(1)) < 0.2  # sorted to bird, cat, dog
    mended = command("scan", "--data", tmp_path / "t.parquet", "--out", tmp_path / "mended", "-q", "--class-names", "cat,dog,bird")
    assert mended.returncode == 0 and "warning" not in mended.stderr, mended.stderr
    assert f"accuracy {true_accuracy:.4f}" in mended.stdout
    assert json.loads((tmp_path / "mended" / "scan.json").read_text())["config"]["checks"]["alignment"] == "passed"
    refused = command("scan", "--data", tmp_path / "t.parquet", "--out", tmp_path / "strict", "-q", "--strict")
    assert refused.returncode == 2 and refused.stderr.startswith("error: the labels and the probability columns"), refused.stderr
    assert not (tmp_path / "strict" / "scan.json").exists()


# -- models ------------------------------------------------------------------------------


def test_a_fixed_batch_exported_program_runs_batch_by_batch(cnn, splits, tmp_path):
    program = torch.export.export(cnn.eval(), (torch.from_numpy(splits.test.x[:7]),))
    torch.export.save(program, tmp_path / "fixed.pt2")
    loaded = fl.Classifier.load(tmp_path / "fixed.pt2", layer="fc1")
    assert loaded.fixed_batch == 7
    out = fl.probe(loaded, splits.test, batch_size=50, quiet=True)  # 360 rows: batches of 50, run 7 at a time
    expected = fl.probe(fl.Classifier(cnn, layer="fc1"), splits.test, quiet=True)
    assert np.allclose(out.probs, expected.probs, atol=1e-5) and np.allclose(out.embeddings, expected.embeddings, atol=1e-4)


def test_a_factory_in_the_current_folder(cnn, tmp_path):
    (tmp_path / "mynet.py").write_text("from faultlines.train import SmallCNN\n\ndef build():\n    return SmallCNN(**%r)\n" % dict(cnn.config))
    (tmp_path / "broken.py").write_text("import a_package_that_is_not_installed\n\ndef build():\n    pass\n")
    torch.save(cnn.state_dict(), tmp_path / "weights.pt")
    # the console script (not `python -m`, which puts the current folder on the path itself)
    ok = command("scan", "--model", "weights.pt", "--factory", "mynet:build", "--data", "digits", "--out", "run", "--quiet",
                 cwd=tmp_path, module=False)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "run" / "report.html").is_file()
    broken = command("scan", "--model", "weights.pt", "--factory", "broken:build", "--data", "digits", "--out", "run2",
                     cwd=tmp_path, module=False)
    assert broken.returncode == 2
    assert broken.stderr.strip().splitlines() == [
        "error: cannot import the factory 'broken:build': importing broken failed "
        "(No module named 'a_package_that_is_not_installed'); install what it needs"]


# -- tables, labels and metadata --------------------------------------------------------


def test_labels_of_any_dtype_become_class_ids():
    ids, names = encode_labels(np.array(["cat", "dog", "cat"]))
    assert ids.tolist() == [0, 1, 0] and names == ("cat", "dog")
    ids, names = encode_labels(np.array(["cat", "dog"]), ["dog", "cat", "eel"])
    assert ids.tolist() == [1, 0] and names == ("dog", "cat", "eel")
    assert encode_labels(np.array([2.0, 0.0]))[0].tolist() == [2, 0]
    assert encode_labels(np.array([True, False]))[1] == ("False", "True")
    with pytest.raises(DataError, match="not among the class names"):
        encode_labels(np.array(["cat", "emu"]), ["cat", "dog"])
    with pytest.raises(DataError, match="the class names are an empty list"):  # found by benchmarks/reliability.py
        encode_labels(np.array([False]), [])
    assert encode_labels(np.array([], dtype=str), [])[0].tolist() == []
    with pytest.raises(DataError, match="--class-names"):
        encode_labels(np.array(["cat", "dog"]), num_classes=3)
    with pytest.raises(DataError, match="missing"):
        encode_labels(pa.array(["cat", None]))


def test_string_labels_and_metadata_columns_survive_to_samples_and_report(test_outputs, tmp_path):
    out = test_outputs
    rng = np.random.default_rng(0)
    names = [f"digit {i}" for i in range(10)]
    site = rng.choice(["north", "south"], out.n)
    pq.write_table(pa.table({"feat": list(out.embeddings), "p": list(out.probs), "y": np.array(names)[out.labels],
                             "site": site, "pred": rng.integers(0, 3, out.n), "taken": pa.array(rng.random(out.n))}),
                   tmp_path / "t.parquet")
    result = run("scan", "--data", tmp_path / "t.parquet", "--out", tmp_path / "run", "--label-col", "y", "--embedding-col", "feat",
                 "--probs-col", "p", "--class-names", ",".join(names), "--quiet")
    assert result.exit_code == 0, result.output
    samples = pq.read_table(tmp_path / "run" / "samples.parquet")
    assert samples.column("label_name").to_pylist() == np.array(names)[out.labels].tolist()
    assert samples.column("site").to_pylist() == site.tolist()
    assert "meta.pred" in samples.column_names and "taken" in samples.column_names  # a clash keeps both
    page = (tmp_path / "run" / "report.html").read_text()
    assert "<th>site</th>" in page and "digit 3" in page and '"north"' in page
    again = fl.load_run(tmp_path / "run")
    assert again.metadata.column("site").to_pylist() == site.tolist() and again.outputs.class_names == tuple(names)
    assert again.to_pandas()["site"].tolist() == site.tolist()
    # the column options name what is missing
    missing = run("scan", "--data", tmp_path / "t.parquet", "--out", tmp_path / "bad", "--quiet")
    assert missing.exit_code == 2 and "--label-col" in missing.stderr


def test_an_embedding_table_with_defuse_is_one_line(tmp_path, test_outputs):
    out = test_outputs
    pq.write_table(pa.table({"embedding": list(out.embeddings), "probs": list(out.probs), "label": out.labels}), tmp_path / "t.parquet")
    result = command("scan", "--data", tmp_path / "t.parquet", "--finders", "defuse", "--out", tmp_path / "run")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: the defuse finder needs the model (clf=...; CLI: --model FILE) and image inputs of shape (N, C, H, W) "
        "(data=...; CLI: --data with images)"]


def test_an_image_folder_keeps_each_samples_path(splits, model_file, tmp_path):
    root = tmp_path / "images"
    for i in range(120):
        folder = root / str(splits.test.y[i])
        folder.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray((splits.test.x[i, 0] * 255).round().astype(np.uint8))
        (image.resize((20, 20)) if i == 7 else image).save(folder / f"img{i:03d}.png")  # one image of another size
    odd = run("scan", "--model", model_file, "--data", root, "--out", tmp_path / "odd", "--quiet")
    assert odd.exit_code == 2 and "--preprocess resize=H,W" in odd.stderr and "img007.png is 20x20" in odd.stderr
    result = run("scan", "--model", model_file, "--data", root, "--out", tmp_path / "run", "--quiet", "--preprocess", "resize=16,16")
    assert result.exit_code == 0, result.output
    paths = pq.read_table(tmp_path / "run" / "samples.parquet").column("path").to_pylist()
    assert len(paths) == 120 and all((root / p).is_file() for p in paths)
    members = pq.read_table(tmp_path / "run" / "members.parquet").column("row").to_pylist()
    assert members and paths[members[0]] in (tmp_path / "run" / "report.html").read_text()  # members are listed with their paths


# -- descriptions ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sentences(sentiment_problem):
    """The UCI sentences' test split as a table a model that fails on yelp would give: the
    probabilities of 40% of the yelp sentences swapped (the planted site)."""
    from faultlines.bench.text import failing_site

    table, site, _ = failing_site(sentiment_problem)
    columns = {"embedding": list(table.embeddings), "probs": list(table.probs), "label": np.array(table.class_names)[table.labels],
               "text": table.texts}
    return columns, site


def _top_mode(run_dir: Path) -> dict:
    record = json.loads((run_dir / "scan.json").read_text())
    modes = sorted(record["modes"], key=lambda m: (not m["evidence"]["significance"]["significant"], m["metrics"].get("q_value", 2)))
    return modes[0]


def test_on_the_sentences_the_top_mode_names_the_planted_site_or_its_words(sentences, tmp_path):
    columns, site = sentences
    pq.write_table(pa.table(columns | {"site": site}), tmp_path / "with.parquet")
    pq.write_table(pa.table(columns), tmp_path / "without.parquet")
    for name in ("with", "without"):
        result = run("scan", "--data", tmp_path / f"{name}.parquet", "--out", tmp_path / name, "--quiet")
        assert result.exit_code == 0, result.output
    top = _top_mode(tmp_path / "with")
    assert top["evidence"]["significance"]["significant"]
    described = top["evidence"]["description"]
    assert described["metadata"][0]["column"] == "site" and described["metadata"][0]["value"] == "= yelp"
    assert "site = yelp" in top["summary"]
    # without the column, the words that describe it are yelp's vocabulary
    words = [w["word"] for w in _top_mode(tmp_path / "without")["evidence"]["description"]["words"][:3]]
    assert len(words) == 3
    texts = [t.lower() for t in columns["text"]]
    for word in words:
        has = np.array([re.search(rf"\b{re.escape(word)}\b", t) is not None for t in texts])
        assert has[site == "yelp"].mean() > 2 * has[site != "yelp"].mean(), word


def test_usable_cpus_reads_a_containers_quota(tmp_path):
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a CPU: one thread
    assert usable_cpus(tmp_path) == 1
    (tmp_path / "cpu.max").write_text("max 100000\n")
    affinity = len(os.sched_getaffinity(0))
    assert usable_cpus(tmp_path) == (affinity if affinity < os.cpu_count() else None)
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")  # cgroup v1
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert usable_cpus(tmp_path) == 1


def test_descriptions_name_numbers_and_image_regions(test_outputs, splits):
    from faultlines.descriptions import describe_modes

    out = test_outputs
    threes = np.flatnonzero(out.labels == 3)
    mode = fl.FailureMode("m-0", "test", "some 3s", threes[:12])
    previews = {i: (splits.test.x[i, 0] * 255).astype(np.uint8) for i in range(out.n)}
    for i in threes[:12]:  # the mode's 3s have a bright top-left corner
        previews[i] = previews[i].copy()
        previews[i][:5, :5] = 255
    # a number column: the mode's rows all have the largest values
    hours = np.arange(out.n, dtype=np.float64)
    hours[threes[:12]] = 10_000 + np.arange(12)
    (described,) = describe_modes([mode], out, metadata=pa.table({"hours": hours}), previews=previews)
    found = described.evidence["description"]
    assert found["image"]["region"] == "in the top left" and found["image"]["difference"] > 0
    assert "brighter in the top left than the other 3s" in described.summary
    assert found["metadata"][0]["column"] == "hours" and found["metadata"][0]["value"].startswith("in [") and found["metadata"][0]["lift"] > 3
