"""Significance of failure modes: the interval, the test, the q-values, held-out confirmation."""

from __future__ import annotations

import numpy as np
import pytest

import faultlines as fl
from faultlines.bench.blobs import random_errors
from faultlines.errors import SettingsError
from faultlines.significance import (
    enrichment_p,
    find_confirmed,
    q_values,
    ranked,
    significant,
    split_rows,
    assess,
    wilson_interval,
)


def test_wilson_interval_matches_hand_computed_values():
    # 3 of 10, z = 1.95996: centre (0.3 + z^2/20) / (1 + z^2/10) = 0.35551,
    # half-width z / (1 + z^2/10) * sqrt(0.3 * 0.7 / 10 + z^2/400) = 0.24772
    low, high = wilson_interval(3, 10, 0.95)
    assert low == pytest.approx(0.10779, abs=1e-5) and high == pytest.approx(0.60322, abs=1e-5)
    # 0 of 20: the interval starts at 0 and ends at z^2 / (n + z^2) = 3.84146 / 23.84146
    low, high = wilson_interval(0, 20, 0.95)
    assert low == 0.0 and high == pytest.approx(0.16113, abs=1e-5)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_enrichment_p_is_the_one_sided_hypergeometric_tail():
    # 2 of 2 wrong inside, 0 of 2 outside: C(2,2) C(2,0) / C(4,2) = 1/6
    assert enrichment_p(2, 2, 0, 2) == pytest.approx(1 / 6)
    # 3 of 4 inside, 1 of 6 outside: [C(4,3) C(6,1) + C(4,4) C(6,0)] / C(10,4) = 25/210
    assert enrichment_p(3, 4, 1, 6) == pytest.approx(25 / 210)
    # fewer errors inside than outside: no evidence at all
    assert enrichment_p(0, 5, 5, 5) == pytest.approx(1.0)


def test_q_values_are_benjamini_hochberg():
    # sorted 0.01 0.03 0.04 0.20 -> p * 4 / rank = 0.04 0.06 0.0533 0.20, then the running minimum from the top
    q = q_values(np.array([0.01, 0.04, 0.03, 0.20]))
    np.testing.assert_allclose(q, [0.04, 0.16 / 3, 0.16 / 3, 0.20])


def test_split_rows_holds_out_the_share_asked_and_checks_it():
    held = split_rows(101, 0.5, seed=3)
    assert held.sum() == 50 and np.array_equal(held, split_rows(101, 0.5, seed=3))
    with pytest.raises(SettingsError, match="confirm"):
        split_rows(10, 1.0)


def test_random_errors_give_no_significant_mode_in_95_of_100_seeds():
    false_runs = 0
    for seed in range(100):
        finders = [fl.Spotlight(size=0.05, n_spotlights=3, steps=40, seed=seed), fl.ErrorMixture(n_components=8, seed=seed)]
        result = fl.scan(None, random_errors(seed), finders, quiet=True, seed=seed)
        assert result.config["confirm"]["heldout_rows"] == 200
        false_runs += any(significant(m) for m in result.modes)
    assert false_runs <= 5


def _planted_table(seed: int = 0, n: int = 600) -> tuple[fl.data.EmbeddingTable, np.ndarray]:
    """A blob of 5% of the rows where the model is wrong 80% of the time, 5% elsewhere."""
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, 8)).astype(np.float32)
    blob = np.arange(n) < n // 20
    emb[blob] = rng.normal(4.0, 0.5, size=(blob.sum(), 8))
    labels = rng.integers(0, 3, n)
    wrong = rng.random(n) < np.where(blob, 0.8, 0.05)
    preds = np.where(wrong, (labels + 1) % 3, labels)
    probs = np.full((n, 3), 0.1)
    probs[np.arange(n), preds] = 0.8
    return fl.data.EmbeddingTable(emb, labels, probs), blob


def test_a_real_failure_mode_is_confirmed_on_rows_the_finder_never_saw():
    table, blob = _planted_table()
    result = fl.scan(None, table, [fl.Spotlight(size=0.04, n_spotlights=2, seed=0)], quiet=True)
    held = result.heldout
    top = result.modes[0]
    assert significant(top) and top.evidence["significance"]["rows"] == "held-out"
    assert top.metrics["q_value"] <= 0.05 and top.metrics["error_low"] > 0.3
    # the measured rows are the mode's held-out members, all of them in the blob
    in_held = top.members[held[top.members]]
    assert top.metrics["tested_size"] == len(in_held) > 5 and blob[in_held].mean() > 0.9
    assert ranked(result.modes)[0].id == top.id
    assert "significant at 0.05" in top.evidence["significance"]["sentence"]


def test_without_confirmation_modes_that_look_at_errors_are_never_significant():
    table, _ = _planted_table()
    result = fl.scan(None, table, [fl.Spotlight(size=0.04, n_spotlights=2, seed=0)], confirm=0.0, quiet=True)
    assert result.heldout is None and result.config["confirm"]["fraction"] == 0.0
    top = result.modes[0]
    assert top.evidence["significance"]["rows"] == "in-sample" and not significant(top)
    assert "p_value" not in top.metrics and top.metrics["tested_error_rate"] > 0.5


def test_small_tables_are_not_split_by_default():
    table, _ = _planted_table(n=150)
    result = fl.scan(None, table, [fl.Spotlight(size=0.05, n_spotlights=1, steps=30)], quiet=True)
    assert result.config["confirm"]["heldout_rows"] == 0


def test_find_confirmed_keeps_held_out_rows_out_of_the_search():
    outputs = _planted_table()[0].to_outputs()
    held = split_rows(outputs.n, 0.5, seed=1)
    finder = fl.ErrorMixture(n_components=6)
    modes = find_confirmed(finder, outputs, held)
    assert finder.resp_.shape[0] == (~held).sum()  # fitted on the finding rows only
    for mode in modes:
        found = mode.members[~held[mode.members]]
        assert set(mode.evidence["typical"]) <= set(found.tolist())
        assert len(mode.weights) == len(mode.members)


def test_density_modes_are_measured_on_every_row():
    table, _ = _planted_table()
    outputs = table.to_outputs()
    density = fl.FeatureDensity(model="gmm", seed=0).fit(outputs)
    modes = assess(density.find(outputs), outputs, {"density": "all"}, None)
    assert all(m.evidence["significance"]["rows"] == "all" and "q_value" in m.metrics for m in modes)


def test_bad_confirm_and_alpha_are_one_line_errors():
    table, _ = _planted_table()
    with pytest.raises(SettingsError, match="confirm"):
        fl.scan(None, table, confirm=1.5, quiet=True)
    with pytest.raises(SettingsError, match="alpha"):
        fl.scan(None, table, alpha=0.0, quiet=True)
