"""Spurious regions (PerturbationProbe) and explanation-based learning (repair.xbl, fix --xbl)."""

import hashlib
import json

import numpy as np
import pytest
import torch
import torch.nn as nn
from typer.testing import CliRunner

import faultlines as fl
from faultlines.bench.planted import make_problem
from faultlines.cli import app
from faultlines.errors import DataError, ModelError, SettingsError
from faultlines.find.perturb import PerturbationProbe, window_means
from faultlines.model import save_checkpoint
from faultlines.repair import xbl as xbl_module
from faultlines.repair.xbl import gradient_share, input_gradients, rrr_penalty, swap_region, xbl
from faultlines.types import check_mask

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def snapshot(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def decoy(tmp_path_factory):
    problem = make_problem("decoy", seed=0)
    return problem, fl.Classifier(problem.model(cache=tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="module")
def decoy_probe(decoy):
    problem, clf = decoy
    probe = PerturbationProbe(seed=0)
    return probe, probe.find(fl.probe(clf, problem.splits.test, quiet=True), clf=clf, data=problem.splits.test)


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_the_probe_flags_the_decoy_corners(decoy, decoy_probe):
    problem, clf = decoy
    probe, modes = decoy_probe
    assert fl.probe(clf, problem.splits.test, quiet=True).accuracy < 0.7  # the decoy fools the model
    assert modes and all(m.method == "perturb" for m in modes)
    flagged = np.any([np.array(m.evidence["mask"], bool) for m in modes], axis=0)
    truth = problem.patch_masks["test"][0]
    assert iou(flagged, truth) >= 0.5
    for m in modes:
        assert m.metrics["flip_rate"] >= probe.min_flip and m.metrics["object_share"] <= probe.max_object
        assert len(m.members) > 0 and m.source == "test"
    swaps = probe.tables_["perturb_swaps"]
    for k, m in enumerate(modes):
        rows = m.evidence["swap_rows"]
        assert rows and np.all(swaps["region"][rows] == k)
        changed = np.any(swaps["before"][rows] != swaps["after"][rows], axis=1)
        assert np.all(changed[:, ~np.array(m.evidence["mask"], bool)] == False)  # noqa: E712  only the region moves
    # every candidate is a corner window the digits leave empty
    assert {(c["row"], c["col"]) for c in probe.candidates_} <= {(0, 0), (0, 13), (13, 0), (13, 13)}


def test_the_probe_flags_nothing_on_a_model_trained_on_clean_digits(clf, splits, test_outputs):
    probe = PerturbationProbe(seed=0)
    assert probe.find(test_outputs, clf=clf, data=splits.test) == []
    assert probe.maps_["overall"].shape == (16, 16) and probe.maps_["per_class"].shape == (10, 16, 16)
    # the centre, where the digits are, matters more than the corners
    assert probe.maps_["overall"][6:10, 6:10].mean() > 3 * probe.maps_["overall"][:3, :3].mean()
    assert {g["perturbation"] for g in probe.global_} == {"blur", "noise", "brightness"}


def test_sensitivity_is_the_mean_drop_of_the_windows_covering_a_pixel(clf, splits):
    x = splits.test.x[:4]
    probe = PerturbationProbe(patch=4, stride=4)
    probs = clf.probs(torch.from_numpy(x)).numpy()
    preds = probs.argmax(1)
    maps = probe.sensitivity(clf, x, preds)
    occluded = x.copy()
    occluded[:, :, 4:8, 8:12] = 0  # one window of the 4x4 grid: it alone covers these pixels
    drop = probs[np.arange(4), preds] - clf.probs(torch.from_numpy(occluded)).numpy()[np.arange(4), preds]
    np.testing.assert_allclose(maps[:, 4:8, 8:12], np.repeat(drop, 16).reshape(4, 4, 4), atol=1e-5)


@pytest.mark.parametrize("baseline", ["mean", "blur"])
def test_other_baselines_give_other_finite_maps(clf, splits, baseline):
    x = splits.test.x[:8]
    preds = clf.probs(torch.from_numpy(x)).numpy().argmax(1)
    zero = PerturbationProbe().sensitivity(clf, x, preds)
    other = PerturbationProbe(baseline=baseline).sensitivity(clf, x, preds)
    assert np.isfinite(other).all() and not np.allclose(zero, other)


def test_window_means_against_a_loop():
    a = np.random.default_rng(0).random((2, 6, 5))
    got = window_means(a, 3)
    assert got.shape == (2, 4, 3)
    assert np.allclose(got[1, 2, 1], a[1, 2:5, 1:4].mean())


def test_a_user_object_mask_decides_what_is_object(clf, splits, test_outputs):
    everywhere = np.ones((16, 16), bool)
    probe = PerturbationProbe(object_mask=everywhere)
    assert probe.find(test_outputs, clf=clf, data=splits.test) == [] and probe.candidates_ == []  # nothing lies outside the object


def test_images_the_model_does_not_take_are_refused(clf):
    small = fl.data.ArraySource(np.zeros((5, 1, 12, 12), np.float32), np.zeros(5, int))
    with pytest.raises(ModelError, match="cannot take inputs of shape"):
        fl.scan(clf, small, [PerturbationProbe()], quiet=True)


def test_settings_and_non_images_are_refused(clf, test_outputs, splits):
    with pytest.raises(SettingsError):
        PerturbationProbe(baseline="grey")
    flat = fl.data.ArraySource(np.zeros((5, 256), np.float32), np.zeros(5, int))
    with pytest.raises(SettingsError, match=r"perturb finder needs image inputs .*inputs have shape \(256,\)"):
        PerturbationProbe().find(test_outputs.subset(np.arange(5)), clf=clf, data=flat)
    with pytest.raises(SettingsError, match="perturb finder needs the model"):
        PerturbationProbe().find(test_outputs, data=splits.test)
    with pytest.raises(DataError, match="data holds 5 samples but the outputs have 360 rows"):
        PerturbationProbe().find(test_outputs, clf=clf, data=splits.test.subset(np.arange(5)))


@pytest.mark.parametrize(
    "mask, message",
    [(np.ones((8, 8)), r"shape \(8, 8\) but the images are 16x16"), (np.zeros((16, 16)), "empty"),
     (np.full((16, 16), 2), "only 0/1")],
)
def test_bad_masks_are_refused(mask, message):
    with pytest.raises(DataError, match=message):
        check_mask(mask, (16, 16))


def test_the_rrr_penalty_of_a_linear_model_matches_its_closed_form():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, bias=False))
    x = torch.rand(3, 1, 2, 2)
    w = model[1].weight.detach().numpy()  # (2, 4)
    p = torch.softmax(model(x), 1).detach().numpy()
    # d/dx (log p0 + log p1) = w0 + w1 - 2 (p0 w0 + p1 w1)
    grad = w.sum(0)[None] - 2 * p @ w
    np.testing.assert_allclose(input_gradients(model, x).reshape(3, 4).numpy(), grad, rtol=1e-5, atol=1e-6)
    mask = torch.tensor([[True, False], [False, True]])
    expected = (grad[:, [0, 3]] ** 2).sum(1).mean()
    assert float(rrr_penalty(model, x, mask).detach()) == pytest.approx(expected, rel=1e-5)


def test_swap_region_gives_every_image_another_images_region(splits):
    mask = np.zeros((16, 16), bool)
    mask[:3, :3] = True
    src = splits.test.subset(np.arange(20))
    src.x[:, 0, :3, :3] = np.arange(20)[:, None, None]  # tag each region with its image's number
    swapped = swap_region(src, mask, seed=1)
    tags = swapped.x[:, 0, 0, 0]
    assert sorted(tags) == list(range(20)) and not np.any(tags == np.arange(20))
    np.testing.assert_array_equal(swapped.x[:, :, ~mask], src.x[:, :, ~mask])


def test_xbl_unlearns_the_decoy(decoy):
    problem, clf = decoy
    s = problem.splits
    mask = problem.patch_masks["test"][0]
    fixed = xbl(clf.module, s.train, s.val, s.test, mask, lambdas=(1.0,), epochs=12, seed=0)
    t = fixed.table
    assert t["xbl"]["test_accuracy"] > t["original"]["test_accuracy"] + 0.2
    assert t["xbl"]["test_accuracy"] > t["occlusion"]["test_accuracy"]
    assert t["xbl"]["gradient_share_in_mask"] < 0.01 < t["original"]["gradient_share_in_mask"]
    assert gradient_share(fixed.module, s.test, mask) == pytest.approx(t["xbl"]["gradient_share_in_mask"])


@pytest.fixture(scope="module")
def decoy_run(decoy, tmp_path_factory):
    problem, clf = decoy
    folder = tmp_path_factory.mktemp("decoy")
    for split in ("train", "val", "test"):
        src = getattr(problem.splits, split)
        np.savez(folder / f"{split}.npz", x=src.x, y=src.y)
    save_checkpoint(clf.module, folder / "model.pt", problem.splits.test.class_names)
    out = folder / "run"
    result = run("scan", "--data", folder / "test.npz", "--model", folder / "model.pt", "--finders", "perturb", "--out", out, "-q")
    assert result.exit_code == 0, result.output
    return folder, out


def test_scan_with_perturb_keeps_maps_swaps_and_a_report_section(decoy_run):
    _, out = decoy_run
    result = fl.load_run(out)
    assert result.tables["perturb_maps"]["maps"].shape == (11, 16, 16)
    assert len(result.tables["perturb_swaps"]["before"]) > 0
    assert result.analyses["perturb"]["candidates"]
    page = (out / "report.html").read_text()
    assert "Spurious regions" in page and "Global perturbations" in page


@pytest.mark.parametrize("mask, message", [(np.ones((8, 8)), "shape"), (np.zeros((16, 16)), "empty")])
def test_fix_xbl_refuses_a_bad_mask_file_and_changes_nothing(decoy_run, tmp_path, mask, message):
    folder, out = decoy_run
    np.save(tmp_path / "mask.npy", mask)
    before = snapshot(out)
    result = run("fix", out, "--xbl", "--mask", tmp_path / "mask.npy", "--train", folder / "train.npz", "--val", folder / "val.npz")
    assert result.exit_code == 2 and result.stderr.startswith("error: ") and message in result.stderr
    assert snapshot(out) == before


def test_an_interrupted_xbl_fix_leaves_the_run_intact(decoy_run, monkeypatch):
    folder, out = decoy_run
    before = snapshot(out)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(xbl_module, "fit", interrupted)
    result = run("fix", out, "--xbl", "--train", folder / "train.npz", "--val", folder / "val.npz", "-q")
    assert result.exit_code != 0
    assert snapshot(out) == before


def test_fix_xbl_writes_the_model_and_the_table(decoy_run):
    folder, out = decoy_run
    result = run("fix", out, "--xbl", "--train", folder / "train.npz", "--val", folder / "val.npz",
                 "--lambdas", "1", "--epochs", "10", "-q")
    assert result.exit_code == 0, result.output
    table = json.loads((out / "xbl.json").read_text())
    assert set(table["models"]) == {"original", "occlusion", "xbl"} and table["lambda"] == 1.0
    assert table["models"]["xbl"]["test_accuracy"] > table["models"]["original"]["test_accuracy"] + 0.2
    assert fl.Classifier.load(out / "model-xbl.pt").class_names == fl.load_run(out).outputs.class_names
    assert fl.load_run(out).repairs["xbl"]["lambda"] == 1.0
    assert "Explanation-based learning" in (out / "report.html").read_text()


def test_fix_xbl_needs_flagged_regions_or_a_mask(tmp_path, model_file):
    assert run("scan", "--model", model_file, "--data", "digits", "--out", tmp_path / "r", "-q").exit_code == 0
    result = run("fix", tmp_path / "r", "--xbl")
    assert result.exit_code == 2 and "--finders perturb" in result.stderr
    # a clean model: the probe runs and flags nothing
    assert run("scan", "--model", model_file, "--data", "digits", "--finders", "perturb", "--out", tmp_path / "p", "-q").exit_code == 0
    result = run("fix", tmp_path / "p", "--xbl")
    assert result.exit_code == 2 and "flagged no region" in result.stderr


@pytest.mark.parametrize("delay", [1.5, 6.0])
def test_ctrl_c_during_an_xbl_fix_changes_nothing(decoy_run, tmp_path, delay):
    from conftest import assert_interrupt_kept_promise, interrupted, snapshot_tree

    import shutil

    folder, out = decoy_run
    run_dir = tmp_path / "run"
    shutil.copytree(out, run_dir)
    before = snapshot_tree(run_dir)
    code, err = interrupted(["fix", run_dir, "--xbl", "--train", folder / "train.npz", "--val", folder / "val.npz",
                             "--lambdas", "1", "--epochs", "40", "-q"], delay)
    if assert_interrupt_kept_promise(code, err, "ctrl-c"):
        assert snapshot_tree(run_dir) == before
