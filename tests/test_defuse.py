import numpy as np
import pytest
import torch

import faultlines as fl
from faultlines.errors import SettingsError
from faultlines.find.defuse import Defuse
from faultlines.generative import VAE
from faultlines.model import load_module, save_checkpoint


@pytest.fixture(scope="session")
def vae(splits):
    return VAE().fit(splits.train, epochs=40)


def test_vae_reconstructs_better_than_the_mean_image(vae, splits):
    x = torch.from_numpy(splits.test.x)
    mse = float(((vae.reconstruct(x) - x) ** 2).mean())
    baseline = float(((x.mean(0, keepdim=True) - x) ** 2).mean())
    assert mse < 0.3 * baseline
    assert vae.sample(5).shape == (5, 1, 16, 16)


def test_vae_kl_term_reaches_the_encoder():
    torch.manual_seed(0)
    v = VAE()
    v.kl_weight = 1.0
    x = torch.rand(8, 1, 16, 16)
    mu, logvar = v.encode(x)
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum()
    kl.backward()
    assert v.encoder[-1].weight.grad.abs().sum() > 0


def test_vae_saves_and_loads(vae, tmp_path):
    save_checkpoint(vae, tmp_path / "vae.pt")
    back, _ = load_module(tmp_path / "vae.pt")
    z = torch.randn(3, 8)
    assert torch.allclose(back.decode(z), vae.decode(z))


@pytest.fixture(scope="module")
def defused(vae, clf, splits, test_outputs):
    d = Defuse(vae, max_seeds=200)
    return d, d.find(test_outputs, clf=clf, data=splits.test)


def test_hits_are_misclassified_codes_near_correct_seeds(defused, clf, splits, vae):
    d, _ = defused
    hits = d.tables_["defuse_hits"]
    assert len(hits["z"]) > 50
    assert np.all(hits["pred"] != hits["seed_label"])
    assert np.all(hits["distance"] <= d.max_radius + 1e-5)
    assert np.array_equal(splits.test.y[hits["seed"]], hits["seed_label"])
    # every seed is classified right, and so is its reconstruction
    seeds = np.unique(hits["seed"])
    x = torch.from_numpy(splits.test.x[seeds])
    assert np.all(clf.logits(x).argmax(1).numpy() == splits.test.y[seeds])
    assert np.all(clf.logits(vae.reconstruct(x)).argmax(1).numpy() == splits.test.y[seeds])
    # decoding a hit's code gives the recorded (wrong) prediction
    z = torch.from_numpy(hits["z"][:20])
    assert np.array_equal(clf.logits(vae.decode(z)).argmax(1).numpy(), hits["pred"][:20])


def test_regions_are_coherent_misclassification_regions(defused, clf):
    d, modes = defused
    assert modes  # how many regions depends on the VAE; each is checked below
    table = d.tables_["generated"]
    for j, m in enumerate(modes):
        assert m.source == "generated" and m.method == "defuse"
        assert np.all(table["region"][m.members] == j)
        wrong = table["pred"][m.members] != m.evidence["label_id"]
        assert wrong.mean() == pytest.approx(m.metrics["error_rate"]) and wrong.mean() >= d.min_error
        # a region is the hits of one mixture component with one prediction, labelled with their majority seed class
        hits = d.tables_["defuse_hits"]
        rows = (hits["component"] == m.evidence["component"]) & (hits["pred"] == m.evidence["hit_pred"])
        assert rows.sum() == m.metrics["hits"] >= d.min_hits
        seed_counts = np.bincount(hits["seed_label"][rows], minlength=10)
        assert seed_counts[m.evidence["label_id"]] == seed_counts.max()
        assert m.metrics["seed_purity"] == pytest.approx(seed_counts.max() / rows.sum())
        around = hits["seed_label"][hits["component"] == m.evidence["component"]]
        assert m.metrics["component_purity"] == pytest.approx((around == m.evidence["label_id"]).mean())
        shares = np.bincount(table["split"][m.members], minlength=3) / len(m.members)
        assert np.allclose(shares, [0.5, 0.2, 0.3], atol=0.01)


def test_defuse_is_deterministic(vae, clf, splits, defused, test_outputs):
    _, modes = defused
    again = Defuse(vae, max_seeds=200).find(test_outputs, clf=clf, data=splits.test)
    assert [m.summary for m in again] == [m.summary for m in modes]


def test_defuse_settings_are_checked(vae):
    with pytest.raises(SettingsError):
        Defuse(vae, k=0)


def test_scan_stores_and_reports_defuse_regions(vae, clf, splits, tmp_path):
    result = fl.scan(clf, splits, [Defuse(vae, max_seeds=100)], quiet=True)
    back = fl.load_run(fl.save_run(result, tmp_path / "run"))
    assert set(back.tables) == {"defuse_hits", "defuse_seeds", "generated", "vae"}
    assert np.array_equal(back.tables["generated"]["images"], result.tables["generated"]["images"])
    html = (tmp_path / "run" / "report.html").read_text()
    assert "Generative model" in html and 'id="defuse-0"' in html


def test_vae_fit_is_deterministic_given_the_seed(splits):
    small = splits.train.subset(np.arange(128))
    torch.manual_seed(123)  # the global state before construction must not matter
    a = VAE().fit(small, epochs=2, seed=5)
    b = VAE().fit(small, epochs=2, seed=5)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
