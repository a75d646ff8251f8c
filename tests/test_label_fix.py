"""Labelling Defuse regions and correcting the model: `faultlines label` and `faultlines fix`."""

import hashlib
import json

import numpy as np
import pytest
from typer.testing import CliRunner

import faultlines as fl
from faultlines.cli import app
from faultlines.repair import finetune as finetune_module
from faultlines.repair import labels

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def defuse_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "demo"
    result = run("demo", "--out", out, "--finders", "defuse", "--spotlights", "1", "-q")
    assert result.exit_code == 0, result.output
    return out


def label_largest_region(run_dir, tmp_path):
    """The `label` command that gives the run's largest region (most hits) its seeds' majority
    class, through a labels CSV. Fixed by construction, whatever regions a VAE gives: one region
    is labelled, its samples mostly misread against that label (Defuse keeps a region only then),
    and no other labelled region contradicts it, so `fix` has one consistent thing to correct.
    (`--auto` skips every region whose mixture component mixes seed classes, and on plain digits
    that can be all of them; every region labelled by its seeds gives "2 read as 8" and "8 read
    as 2" opposite labels.)"""
    regions = [m for m in fl.load_run(run_dir).modes if m.method == "defuse"]
    largest = max(regions, key=lambda m: (m.metrics["hits"], -int(m.id.split("-")[1])))
    (tmp_path / "largest.csv").write_text(f"region,label\n{largest.id},{largest.evidence['label']}\n")
    return ["label", run_dir, "--labels", tmp_path / "largest.csv", "-q"]


def snapshot(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_demo_with_defuse_keeps_model_vae_and_regions(defuse_run):
    assert {"model.pt", "vae.pt", "table-generated.npz", "table-defuse_seeds.npz"} <= set(snapshot(defuse_run))
    result = fl.load_run(defuse_run)
    assert labels.regions(result)


@pytest.mark.parametrize(
    "csv_text, message",
    [
        ("region,label\ndefuse-999,3\n", "unknown region 'defuse-999'"),
        ("region,label\ndefuse-0,seven\n", "unknown class 'seven'"),
        ("region,class\ndefuse-0,3\n", r"lacks the column\(s\) \['label'\]"),
    ],
)
def test_a_bad_labels_csv_is_refused_and_nothing_changes(defuse_run, tmp_path, csv_text, message):
    (tmp_path / "labels.csv").write_text(csv_text)
    before = snapshot(defuse_run)
    result = run("label", defuse_run, "--labels", tmp_path / "labels.csv")
    assert result.exit_code == 2 and result.stderr.startswith("error: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert __import__("re").search(message, result.stderr), result.stderr
    assert snapshot(defuse_run) == before


def test_csv_labels_are_stored_by_class_name(defuse_run, tmp_path):
    (tmp_path / "labels.csv").write_text("region,label\ndefuse-0,3\ndefuse-1,skip\n")
    assert run("label", defuse_run, "--labels", tmp_path / "labels.csv").exit_code == 0
    stored = json.loads((defuse_run / "labels.json").read_text())
    assert stored == {"how": "csv", "labels": {"defuse-0": "3", "defuse-1": None}}


def test_interactive_labels_ask_for_each_region(defuse_run):
    n = len(labels.regions(fl.load_run(defuse_run)))
    answers = "\n".join(["nine", "7"] + ["skip"] * (n - 1)) + "\n"
    result = runner.invoke(app, ["label", str(defuse_run), "--interactive"], input=answers)
    assert result.exit_code == 0, result.output
    assert "unknown class 'nine'" in result.output
    stored = json.loads((defuse_run / "labels.json").read_text())["labels"]
    assert stored["defuse-0"] == "7" and sum(v is None for v in stored.values()) == n - 1
    assert (defuse_run / "regions" / "defuse-0.png").stat().st_size > 100


def test_auto_labels_follow_the_seeds_around_each_region(defuse_run):
    result = fl.load_run(defuse_run)
    strict, loose = labels.from_seeds(result, agreement=1.0), labels.from_seeds(result, agreement=0.0)
    assert all(v is not None for v in loose.values())
    hits = result.tables["defuse_hits"]
    for region, evidence in labels.regions(result).items():
        counts = np.bincount(hits["seed_label"][hits["component"] == evidence["component"]], minlength=10)
        assert counts[loose[region]] == counts.max()
        assert (strict[region] is not None) == (counts.max() == counts.sum())
        half = labels.from_seeds(result, agreement=0.5)[region]
        assert (half is not None) == (counts.max() / counts.sum() >= 0.5)


def test_labelling_nothing_says_what_to_do_next(defuse_run, tmp_path):
    (tmp_path / "labels.csv").write_text("region,label\ndefuse-0,skip\n")
    result = run("label", defuse_run, "--labels", tmp_path / "labels.csv")
    assert result.exit_code == 0 and "labelled 0 of" in result.output and "--interactive" in result.output
    refused = run("label", defuse_run, "--auto", "--agreement", "1.5")
    assert refused.exit_code == 2 and "agreement must be between 0 and 1" in refused.stderr


def test_an_interrupted_fix_leaves_the_run_intact(defuse_run, monkeypatch, tmp_path):
    assert run(*label_largest_region(defuse_run, tmp_path)).exit_code == 0
    before = snapshot(defuse_run)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(finetune_module, "fit", interrupted)
    result = runner.invoke(app, ["fix", str(defuse_run), "-q"])
    assert result.exit_code != 0  # click turns the interrupt into an abort
    assert snapshot(defuse_run) == before
    assert not [p for p in defuse_run.iterdir() if p.name.startswith(".")]


def test_fix_corrects_region_samples_it_never_trained_on(defuse_run, tmp_path):
    assert run(*label_largest_region(defuse_run, tmp_path)).exit_code == 0
    result = run("fix", defuse_run, "--lambdas", "0.3,1", "--epochs", "6", "-q")
    assert result.exit_code == 0, result.output
    table = json.loads((defuse_run / "fix.json").read_text())
    assert table["lambda"] in (0.3, 1.0) and len(table["sweep"]) == 2
    # the region's held-out samples, which the fine-tuning never saw, read right far more often
    # (one region, so no other label contradicts it), and the model still reads the test digits
    assert table["after"]["heldout_region_accuracy"] > table["before"]["heldout_region_accuracy"] + 0.2
    assert table["after"]["test_accuracy"] > table["before"]["test_accuracy"] - 0.15  # 0.02-0.07 lost at seeds 0-3
    fixed = fl.Classifier.load(defuse_run / "model-fixed.pt")
    assert fixed.class_names == fl.load_run(defuse_run).outputs.class_names
    assert "Correction (faultlines fix)" in (defuse_run / "report.html").read_text()


def test_fix_needs_labels_first(tmp_path, model_file):
    assert run("scan", "--model", model_file, "--data", "digits", "--out", tmp_path / "r", "-q").exit_code == 0
    result = run("fix", tmp_path / "r")
    assert result.exit_code == 2 and "faultlines label" in result.stderr


@pytest.mark.parametrize("delay", [1.0, 3.0, 6.0])
def test_ctrl_c_during_label_or_fix_changes_nothing(defuse_run, tmp_path, delay):
    """A real Ctrl-C (SIGINT to the command's process) while labelling or fine-tuning: one line,
    exit 130, and the run folder byte for byte as it was (or, pressed after the end, complete)."""
    from conftest import assert_interrupt_kept_promise, interrupted, snapshot_tree

    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(defuse_run, run_dir)
    label = label_largest_region(run_dir, tmp_path)
    # label --auto is over in well under a second: it is pressed at a fifth of the delay; fix
    # needs the labels, so they are written (uninterrupted) before fix is interrupted
    for args, after, then in ((label, delay / 5, lambda: run(*label)),
                              (["fix", run_dir, "--lambdas", "1", "--epochs", "40", "-q"], delay, lambda: None)):
        before = snapshot_tree(run_dir)
        code, err = interrupted(args, after)
        if assert_interrupt_kept_promise(code, err, "ctrl-c"):
            assert snapshot_tree(run_dir) == before
        fl.load_run(run_dir)
        then()
