"""Large tables: the search on a sample placed on every row, distinct modes, grown members,
memory-mapped input, a run folder that links the embeddings, members in parquet."""

import os

import numpy as np
import pyarrow.parquet as pq
import pytest

import faultlines as fl
from faultlines.bench.blobs import planted_blob, write_scale_table
from faultlines.data.files import load


def _blobs(tmp_path, n=30_000, dim=16, blobs=(300, 150)):
    folder = tmp_path / "table"
    blob_of = write_scale_table(folder, n=n, dim=dim, blobs=blobs, seed=1)
    return folder, blob_of


def test_spotlight_searches_a_sample_and_finds_each_blob_whole_among_all_rows(tmp_path):
    folder, blob_of = _blobs(tmp_path)
    out = load(folder).to_outputs()
    finder = fl.Spotlight(size=100, n_spotlights=4, search_rows=10_000)
    modes = finder.find(out)
    assert finder.analyses_["spotlight"]["searched_rows"] == 10_000
    for b, size in enumerate((300, 150)):
        truth = blob_of == b
        best = max(modes, key=lambda m: truth[m.members].sum())
        # the spotlight covers 100 rows; its members grow to hold the blob of 300 whole
        assert truth[best.members].sum() >= 0.95 * size and truth[best.members].mean() >= 0.9
    # every mode is a region of its own: no two share more than half of the smaller one
    for i, a in enumerate(modes):
        for c in modes[i + 1:]:
            assert len(np.intersect1d(a.members, c.members)) <= 0.5 * min(len(a.members), len(c.members))


def test_without_growing_a_spotlight_keeps_its_size():
    out, blob = planted_blob(n=4000, dim=16, blob_fraction=0.05, seed=2)
    grown = fl.Spotlight(size=50, n_spotlights=1).find(out)[0]
    fixed = fl.Spotlight(size=50, n_spotlights=1, grow=False).find(out)[0]
    assert len(fixed.members) == round(fixed.metrics["weight"]) < 0.5 * blob.sum()
    # a blob row is wrong 70% of the time (loss > log 2), so its edge is found from errors: most of it
    assert blob[grown.members].sum() >= 0.8 * blob.sum() and blob[grown.members].mean() >= 0.9
    assert np.array_equal(grown.members[: len(fixed.members)], fixed.members)  # the same nearest rows first


def test_searches_that_find_nothing_new_keep_nothing():
    # every error is in one blob: after it, a search finds either the blob again or rows
    # the model gets right, and keeps nothing
    rng = np.random.default_rng(0)
    n, blob = 3000, 100
    emb = rng.normal(size=(n, 8)).astype(np.float32)
    emb[:blob] = 4 + 0.3 * rng.normal(size=(blob, 8))
    labels = rng.integers(0, 2, n)
    probs = np.full((n, 2), 0.1, np.float32)
    probs[np.arange(n), np.where(np.arange(n) < blob, 1 - labels, labels)] = 0.9
    out = fl.data.EmbeddingTable(emb, labels, probs).to_outputs()
    finder = fl.Spotlight(size=0.02, n_spotlights=4)
    modes = finder.find(out)
    assert len(modes) == finder.analyses_["spotlight"]["kept"] == 1
    assert finder.analyses_["spotlight"]["rejected"] >= 3
    assert modes[0].id == "spotlight-0" and np.isin(np.arange(blob), modes[0].members).mean() >= 0.95


def test_error_mixture_fits_a_sample_and_assigns_every_row(tmp_path):
    folder, _ = _blobs(tmp_path, n=12_000)
    out = load(folder).to_outputs()
    finder = fl.ErrorMixture(fit_rows=3000, n_components=8)
    modes = finder.find(out)
    assert finder.resp_.shape == (12_000, 8) and finder.resp_.dtype == np.float32
    assert modes and all(len(m.members) for m in modes)
    assigned = finder.assign(out.subset(np.arange(100)))
    assert len(assigned) == len(modes)


def test_a_npy_folder_is_memory_mapped_and_the_run_links_it(tmp_path):
    folder, _ = _blobs(tmp_path, n=5000)
    table = load(folder)
    assert isinstance(table.embeddings, np.memmap)
    result = fl.scan(None, table, [fl.Spotlight(size=50, n_spotlights=2)], quiet=True)
    assert result.outputs.embeddings.base is not None  # not a copy
    run = fl.save_run(result, tmp_path / "run")
    assert os.stat(run / "embeddings.npy").st_ino == os.stat(folder / "embeddings.npy").st_ino
    members = pq.read_table(run / "members.parquet").to_pydict()
    again = fl.load_run(run)
    for before, after in zip(result.modes, again.modes, strict=True):
        assert np.array_equal(before.members, after.members) and np.allclose(before.weights, after.weights)
        assert members["mode"].count(before.id) == len(before.members)
    assert np.array_equal(np.asarray(again.outputs.embeddings), np.asarray(result.outputs.embeddings))
    # an in-memory table has no file to link: the run writes the embeddings
    copy = fl.data.EmbeddingTable(np.array(table.embeddings), table.labels, table.probs)
    run2 = fl.save_run(fl.scan(None, copy, [fl.Spotlight(size=50, n_spotlights=1)], quiet=True), tmp_path / "run2")
    assert os.stat(run2 / "embeddings.npy").st_nlink == 1


def test_timings_are_recorded_per_stage(tmp_path):
    folder, _ = _blobs(tmp_path, n=3000)
    result = fl.scan(None, load(folder), [fl.Spotlight(size=30, n_spotlights=1)], quiet=True)
    assert set(result.config["timings"]) == {"probe", "spotlight", "significance", "descriptions"}
    assert all(v >= 0 for v in result.config["timings"].values())


def test_the_default_size_is_five_percent_at_most_a_hundred_rows():
    small, _ = planted_blob(n=1000, dim=8, seed=3)
    large, blob = planted_blob(n=8000, dim=8, blob_fraction=0.05, seed=3)
    # a spotlight covers at least its size (the search keeps its best iterate that meets it)
    assert 50 <= fl.Spotlight(n_spotlights=1, alpha=None, grow=False).find(small)[0].metrics["weight"] < 60
    top = fl.Spotlight(n_spotlights=1).find(large)[0]
    assert 100 <= top.metrics["weight"] < 120  # 5% would be 400
    assert blob[top.members].sum() >= 0.75 * blob.sum()  # most of the blob of 400 is still held (grown members)
    assert 400 <= fl.Spotlight(size=0.05, n_spotlights=1, grow=False).find(large)[0].metrics["weight"] < 480  # a given size is not capped


def test_a_run_can_store_its_embeddings_in_half_precision(tmp_path):
    folder, _ = _blobs(tmp_path, n=3000)
    result = fl.scan(None, load(folder), [fl.Spotlight(size=30, n_spotlights=1)], quiet=True)
    run = fl.save_run(result, tmp_path / "run", embeddings_dtype="float16")
    stored = np.load(run / "embeddings.npy")
    assert stored.dtype == np.float16 and os.stat(run / "embeddings.npy").st_nlink == 1
    np.testing.assert_allclose(stored, result.outputs.embeddings, rtol=1e-3, atol=1e-3)
    again = fl.load_run(run)
    assert "<html" in fl.report(again, tmp_path / "again.html").read_text()
    with pytest.raises(fl.errors.SettingsError):
        fl.save_run(result, tmp_path / "bad", embeddings_dtype="int8")


@pytest.mark.parametrize("seed", [1, 2])
def test_blobs_nearer_each_other_than_the_bulk_are_each_a_mode(tmp_path, seed):
    # three failure regions two blob radii apart, each nearer the others than any bulk row:
    # grown members stop at the valley between them, so each is the top of a mode of its own
    folder = tmp_path / "table"
    blob_of = write_scale_table(folder, n=20_000, dim=64, blobs=(600, 400, 300), seed=seed, separation=2.0)
    modes = fl.Spotlight().find(load(folder).to_outputs())
    for b in range(3):
        truth = blob_of == b
        best = max(modes, key=lambda m: truth[m.members].sum())
        assert truth[best.members].sum() >= 0.9 * truth.sum() and truth[best.members].mean() >= 0.9
    for i, a in enumerate(modes):
        for c in modes[i + 1:]:
            assert len(np.intersect1d(a.members, c.members)) <= 0.5 * min(len(a.members), len(c.members))
