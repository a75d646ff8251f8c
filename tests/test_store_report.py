import re

import numpy as np
import pytest

import faultlines as fl
from faultlines import store
from faultlines.bench.blobs import planted_blob
from faultlines.errors import RunDirError
from faultlines.report import render
from faultlines.types import ScanResult


@pytest.fixture(scope="module")
def result(clf, splits):
    return fl.scan(clf, splits, [fl.Spotlight(size=0.03, n_spotlights=3)], quiet=True)


def test_scan_result_carries_previews_and_config(result):
    assert set(result.previews) == set(range(result.outputs.n))  # a table this small: every row has its picture
    assert all(p.shape == (16, 16) and p.dtype == np.uint8 for p in result.previews.values())
    assert result.config["model"]["embedding_layer"] == "fc2 (input)"
    assert result.config["finders"][0] == {"name": "spotlight", **fl.Spotlight(size=0.03, n_spotlights=3).get_params()}


def test_a_large_table_keeps_pictures_of_the_rows_the_report_lists():
    from faultlines.scan import PREVIEW_MEMBERS, preview_rows

    out, _ = planted_blob(n=8000, dim=4, seed=0)
    big = fl.FailureMode("a-0", "a", "", np.arange(3000, 6000), source=out.source, evidence={"typical": [7000, 3000]})
    small = fl.FailureMode("a-1", "a", "", np.array([5, 6]), source=out.source, evidence={"typical": [5]})
    other = fl.FailureMode("g-0", "g", "", np.arange(100), source="generated", evidence={"typical": [1]})
    rows = preview_rows([big, small, other], out)
    assert rows == sorted({7000, 5, 6} | set(range(3000, 3000 + PREVIEW_MEMBERS)))


def test_run_round_trip(result, tmp_path):
    path = fl.save_run(result, tmp_path / "run")
    assert sorted(p.name for p in path.iterdir()) == ["embeddings.npy", "members.parquet", "report.html", "samples.parquet", "scan.json"]
    back = fl.load_run(path)
    for name in ("labels", "preds", "probs", "losses", "embeddings"):
        assert np.array_equal(getattr(back.outputs, name), getattr(result.outputs, name)), name
    for a, b in zip(result.modes, back.modes):
        assert a.id == b.id and a.summary == b.summary and a.metrics == pytest.approx(b.metrics)
        assert np.array_equal(a.members, b.members) and np.allclose(a.weights, b.weights)
    assert set(back.previews) == set(result.previews)
    assert all(np.array_equal(back.previews[i], result.previews[i]) for i in result.previews)
    assert result.heldout is not None and np.array_equal(back.heldout, result.heldout)
    assert [m.evidence["significance"] for m in back.modes] == [m.evidence["significance"] for m in result.modes]


def test_samples_table_marks_mode_membership(result, tmp_path):
    import pyarrow.parquet as pq

    table = pq.read_table(fl.save_run(result, tmp_path / "run") / "samples.parquet").to_pydict()
    for mode in result.modes:
        rows = {i for i, ids in enumerate(table["modes"]) if mode.id in ids}
        assert rows == set(mode.members.tolist())


def test_a_failed_write_leaves_the_previous_run_intact(result, tmp_path, monkeypatch):
    path = fl.save_run(result, tmp_path / "run")
    before = (path / "scan.json").read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(store.np, "save", broken)
    with pytest.raises(OSError, match="disk full"):
        store.save_run(result, path)
    assert (path / "scan.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no temporary folder left


def test_output_path_that_is_a_file_is_refused(result, tmp_path):
    (tmp_path / "file").write_text("keep me")
    with pytest.raises(RunDirError, match="is a file"):
        fl.save_run(result, tmp_path / "file")
    assert (tmp_path / "file").read_text() == "keep me"


def test_load_run_refuses_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(RunDirError, match="not a faultlines run"):
        fl.load_run(tmp_path)


def test_report_is_self_contained_with_a_section_and_grid_per_mode(result, tmp_path):
    html = fl.report(result, tmp_path / "r.html").read_text()
    assert len(re.findall(r'<section class="mode" id="spotlight-\d">', html)) == 3
    assert html.count('<figure class=') == sum(len(m.evidence["typical"]) for m in result.modes)
    assert "Confusion matrix" in html and "Map of the embeddings" in html
    markup = re.sub(r"<script[^>]*>.*?</script>", "", html, flags=re.S)  # the page's own HTML, scripts left out
    assert not re.search(r'(src|href)="(https?:)?//', markup)  # nothing fetched from elsewhere
    assert "<link" not in markup and not re.search(r"<script[^>]+src=", html)  # scripts are inline
    # (tests/test_report_browser.py checks in a browser that the page makes no request at all)


def test_report_escapes_what_it_did_not_write(result):
    names = ("<script>alert(1)</script>",) + result.outputs.class_names[1:]
    out = result.outputs
    hostile = fl.Outputs(out.labels, out.preds, out.probs, out.losses, out.embeddings, names)
    modes = fl.Spotlight(size=0.03, n_spotlights=1).find(hostile)
    page = render(ScanResult(hostile, modes, {"data": {"name": "<b>data</b>"}, "seed": 0}))
    assert "<script>alert(1)" not in page and "&lt;script&gt;" in page
    assert "<b>data</b>" not in page and "&lt;b&gt;data&lt;/b&gt;" in page


def test_report_shows_text_rows_for_text_data(tmp_path):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(200, 4)).astype(np.float32)
    labels = rng.integers(0, 2, 200)
    probs = np.full((200, 2), 0.5, np.float32)
    texts = [f"sentence <{i}>" for i in range(200)]
    table = fl.data.EmbeddingTable(emb, labels, probs, texts=texts, name="texts")
    result = fl.scan(None, table, [fl.Spotlight(size=10, n_spotlights=1, alpha=None)], quiet=True)  # no real errors: keep the spotlight
    page = fl.report(result, tmp_path / "r.html").read_text()
    shown = result.modes[0].evidence["typical"][0]
    assert f"sentence &lt;{shown}&gt;" in page


def test_files_written_later_are_ordinary_files(result, tmp_path):
    import os

    run = fl.save_run(result, tmp_path / "run")
    path = fl.store.save_report(run, result)
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # not the private mode of a temporary file
