"""Text data (real MiniLM, offline) and the benchmark runner end to end."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from faultlines.bench.runner import markdown, run_bench
from faultlines.cli import app
from faultlines.data.text import embed_texts, read_labelled_sentences, text_source
from faultlines.errors import DataError

def test_minilm_embeds_offline_and_puts_similar_sentences_together():
    emb = embed_texts(["The food was delicious.", "What a tasty meal!", "The battery died after an hour."])
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.2


def test_text_source_previews_are_the_texts():
    src = text_source(["good", "bad"], [1, 0], ("negative", "positive"))
    assert src.x.shape == (2, 384) and src.preview([1]) == {1: "bad"}


def test_reading_labelled_sentences(sentiment_dir, tmp_path):
    texts, labels = read_labelled_sentences(sentiment_dir / "imdb_labelled.txt")
    assert len(texts) == 1000 and set(labels.tolist()) == {0, 1}
    (tmp_path / "bad.txt").write_text("no label here\n")
    with pytest.raises(DataError, match="bad.txt:1"):
        read_labelled_sentences(tmp_path / "bad.txt")


def test_text_problem_plants_a_failure_on_the_rare_website_and_both_finders_confirm_it(sentiment_dir, sentiment_cache):
    rows = run_bench(["text"], [0], cache=sentiment_cache, sentiment_dir=sentiment_dir, finders=["spotlight", "error-mixture"], quiet=True)
    assert max(r.p10 for r in rows) >= 0.8
    # the rare, one-sided website is a failure (rarity alone left imdb at 0.15 wrong against 0.12)
    assert rows[0].slice_error > 0.2 and rows[0].slice_p <= 0.01
    assert all(r.best_significant for r in rows)


def test_bench_runs_ours_and_peers_side_by_side(tmp_path):
    rows = run_bench(["noisy"], [0], cache=tmp_path, quiet=True)
    assert {r.finder for r in rows} == {"spotlight", "error-mixture", "density", "sliceline", "kmeans-errors", "confusion",
                                        "cleanlab-group", "cleanlab-labels", "scan"}
    ours = {r.finder: r for r in rows if r.finder in ("spotlight", "error-mixture", "density", "scan")}
    assert min(ours[f].p10 for f in ("spotlight", "error-mixture")) >= 0.8
    # confirmed on held-out rows, the mode that matches the planted subgroup is significant,
    # for each finder that looks at errors and for the scan that runs all three
    assert all(ours[f].best_significant and ours[f].best_q <= 0.05 and ours[f].n_significant >= 1
               for f in ("spotlight", "error-mixture", "scan"))
    assert ours["scan"].n_significant >= ours["spotlight"].n_significant
    assert ours["density"].best_significant is not None
    assert all(r.best_significant is None and r.slice_p is None for r in rows if r.finder not in ours)
    # the planted subgroup itself (nearly all wrong) is far beyond chance on the held-out half
    assert all(r.slice_p < 1e-4 for r in ours.values())
    table = markdown(rows)
    assert "| noisy |" in table and "**P@10**" in table and "**mean**" in table
    assert "**Confirmed as `scan` measures modes**" in table and "| noisy | 1 of 1 |" in table
    assert "scan: best significant" in table and "| scan |" not in table.split("**Confirmed")[0]


def test_a_style_shift_across_every_class_is_one_density_mode_the_scan_confirms(tmp_path):
    # the blurred digits are ten per-class corners of the embedding, no one region; the density
    # finder flags them as one mode, measured on every row
    rows = {r.finder: r for r in run_bench(["shift"], [0], cache=tmp_path, finders=["spotlight", "density"], quiet=True)}
    assert rows["density"].best_significant and rows["density"].p25 >= 0.8
    assert rows["scan"].best_significant and rows["scan"].slice_p <= 0.01


def test_bench_command_writes_the_table_and_rows(tmp_path):
    out = tmp_path / "bench.md"
    result = CliRunner().invoke(app, ["bench", "--problems", "heldout", "--seeds", "1", "--cache", str(tmp_path), "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("`faultlines bench --problems heldout --seeds 1")
    rows = json.loads(out.with_suffix(".json").read_text())
    assert len(rows) == 9 and {r["problem"] for r in rows} == {"heldout"}
    bad = CliRunner().invoke(app, ["bench", "--problems", "nope", "--out", str(out)])
    assert bad.exit_code == 2 and "unknown problems" in bad.stderr
