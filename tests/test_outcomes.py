"""Outputs without classes: a per-row loss, a score, a pass/fail (issue 29). Regression,
recommender and LLM-evaluation tables scan through the same finders and tests as a classifier."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import command

import faultlines as fl
from faultlines.bench.outcomes import regression_table
from faultlines.data.sources import as_failed
from faultlines.errors import DataError
from faultlines.significance import significant
from faultlines.types import Outputs


def _region_table(seed: int, n: int = 1200, planted: bool = True):
    """(embeddings, losses, blob): `regression_table`'s 5% blob, losses raised by 3 (or not)."""
    table, blob = regression_table(seed, share=0.05, shift=3.0 if planted else 0.0, n=n, dim=8)
    return table.embeddings, table.losses, blob


def test_failures_are_whatever_the_outcome_says():
    losses = np.array([0.1, 0.2, 5.0, 0.3, 9.0])
    out = Outputs.from_losses(losses, np.zeros((5, 2)))
    assert out.failures.tolist() == [False, False, True, False, True] and out.failure_kind == "loss above 0.3 (the median)"
    assert not out.has_classes and out.class_names == () and out.headline() == "mean loss 2.92"
    # a subset keeps the whole table's threshold
    assert out.subset(np.array([0, 1, 3])).failures.tolist() == [False, False, False]
    assert Outputs.from_losses(losses, np.zeros((5, 2)), threshold=4.0).failures.sum() == 2
    given = Outputs.from_losses(losses, np.zeros((5, 2)), failed=[1, 0, 0, 0, 1])
    assert given.failures.tolist() == [True, False, False, False, True] and given.failure_kind == "failed"
    classifier = Outputs.from_probs(np.array([0, 1]), np.array([[0.9, 0.1], [0.8, 0.2]]), np.zeros((2, 2)))
    assert classifier.failures.tolist() == [False, True] and classifier.headline() == "accuracy 0.5000"
    with pytest.raises(DataError, match="0/1"):
        Outputs.from_losses(losses, np.zeros((5, 2)), failed=[2, 0, 0, 0, 1])
    with pytest.raises(DataError, match="NaN"):
        Outputs.from_losses([0.1, np.nan], np.zeros((2, 2)))


def test_pass_fail_columns_read_words_and_flags():
    assert as_failed(np.array(["pass", "FAIL", " Passed "])).tolist() == [False, True, False]
    assert as_failed(np.array(["yes", "no"]), passed=True).tolist() == [False, True]
    assert as_failed(np.array([1, 0]), passed=False).tolist() == [True, False]
    assert as_failed(pa.array([True, False]), passed=True).tolist() == [False, True]
    with pytest.raises(DataError, match="'maybe'"):
        as_failed(np.array(["pass", "maybe"]))
    with pytest.raises(DataError, match="0 and 1"):
        as_failed(np.array([0, 2]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_region_of_high_losses_is_a_confirmed_mode(seed):
    emb, losses, blob = _region_table(seed)
    result = fl.scan(None, fl.data.EmbeddingTable(emb, losses=losses), quiet=True, seed=seed)
    top = result.modes[0]
    assert significant(top) and top.evidence["significance"]["rows"] == "held-out"
    assert "Mann-Whitney" in top.evidence["significance"]["sentence"]
    assert blob[top.members].mean() >= 0.6 and blob[top.members].sum() >= 0.5 * blob.sum()
    assert top.metrics["tested_mean_loss"] > top.metrics["measured_mean_loss"]


def test_tables_of_losses_or_failures_with_nothing_planted_give_no_significant_mode_in_95_of_100_seeds():
    false_runs = {"loss": 0, "failed": 0}
    for seed in range(100):
        emb, losses, _ = _region_table(seed, n=400, planted=False)
        failed = np.random.default_rng(seed + 1000).random(400) < 0.1
        for kind, table in (("loss", fl.data.EmbeddingTable(emb, losses=losses)), ("failed", fl.data.EmbeddingTable(emb, failed=failed))):
            finders = [fl.Spotlight(size=0.05, n_spotlights=3, steps=40, seed=seed), fl.ErrorMixture(n_components=8, seed=seed)]
            result = fl.scan(None, table, finders, quiet=True, seed=seed)
            false_runs[kind] += any(significant(m) for m in result.modes)
    assert false_runs["loss"] <= 5 and false_runs["failed"] <= 5, false_runs


def _write(path, **columns):
    pq.write_table(pa.table({k: (v.tolist() if isinstance(v, np.ndarray) and v.ndim == 2 else v) for k, v in columns.items()}), path)


def test_the_command_line_scans_losses_scores_and_pass_fail_and_keeps_what_a_failure_is(tmp_path):
    emb, losses, blob = _region_table(0)
    _write(tmp_path / "loss.parquet", embedding=emb, loss=losses)
    done = command("scan", "--data", tmp_path / "loss.parquet", "--out", tmp_path / "a", "-q")
    assert done.returncode == 0 and done.stdout.startswith("mean loss"), done.stderr
    assert "1 significant" in done.stdout.splitlines()[0]
    html = (tmp_path / "a" / "report.html").read_text()
    assert "Losses" in html and "Confusion matrix" not in html
    again = fl.load_run(tmp_path / "a")
    assert not again.outputs.has_classes and np.allclose(again.outputs.losses, losses)
    assert blob[again.modes[0].members].mean() >= 0.6

    _write(tmp_path / "score.parquet", embedding=emb, score=-losses)
    undirected = command("scan", "--data", tmp_path / "score.parquet", "--out", tmp_path / "b", "-q")
    assert undirected.returncode == 2 and "--higher-is-better" in undirected.stderr
    scored = command("scan", "--data", tmp_path / "score.parquet", "--out", tmp_path / "b", "-q", "--higher-is-better")
    assert scored.returncode == 0 and scored.stdout.splitlines()[0] == done.stdout.splitlines()[0]

    rng = np.random.default_rng(0)
    passed = np.where(rng.random(len(blob)) < np.where(blob, 0.7, 0.1), "fail", "pass")
    _write(tmp_path / "eval.parquet", embedding=emb, passed=passed, topic=np.where(blob, "tax law", "other"))
    evaluated = command("scan", "--data", tmp_path / "eval.parquet", "--out", tmp_path / "c", "-q", "--finders", "spotlight,error-mixture")
    assert evaluated.returncode == 0 and evaluated.stdout.startswith("failure rate"), evaluated.stderr
    record = json.loads((tmp_path / "c" / "scan.json").read_text())
    assert record["outcome"] == {"failed": True, "threshold": None}
    top = fl.load_run(tmp_path / "c").modes[0]
    assert significant(top) and "topic = tax law" in top.summary
    refused = command("scan", "--data", tmp_path / "eval.parquet", "--out", tmp_path / "d", "-q", "--finders", "density",
                      "--train", tmp_path / "eval.parquet")
    assert refused.returncode == 2 and "classifier's outputs" in refused.stderr

    _write(tmp_path / "both.parquet", embedding=emb, loss=losses, score=losses)
    both = command("scan", "--data", tmp_path / "both.parquet", "--out", tmp_path / "e", "-q")
    assert both.returncode == 2 and "not both" in both.stderr


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_text_evaluation_without_embeddings_is_embedded_offline(tmp_path, monkeypatch, seed):
    pytest.importorskip("sentence_transformers", reason="the text extra is not installed")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rng = np.random.default_rng(seed)
    tax = [f"What is the {w} tax rate on {o} in {y}?" for w in ("income", "sales", "property", "capital gains")
           for o in ("wages", "shares", "a house", "a car", "savings", "a pension", "bonds", "rent", "tips", "a farm")
           for y in ("2019", "2020", "2021", "2022", "2023")]
    other = [f"Write a {k} about {t}." for k in ("poem", "story", "haiku", "limerick", "song", "letter", "riddle", "joke")
             for t in ("the sea", "a cat", "winter", "friendship", "the moon", "coffee", "trains", "rain", "music", "a garden",
                       "a dragon", "the city", "a storm", "my dog", "the forest", "a lighthouse", "spring", "a river", "chess",
                       "a bakery", "the desert", "an owl", "a clock", "the mountains", "a ship")]
    prompts = tax + other
    failed = np.concatenate([rng.random(len(tax)) < 0.7, rng.random(len(other)) < 0.1])
    _write(tmp_path / "eval.parquet", prompt=prompts, failed=failed)
    done = command("scan", "--data", tmp_path / "eval.parquet", "--text-col", "prompt", "--out", tmp_path / "run", "-q",
                   "--seed", str(seed))
    assert done.returncode == 0, done.stderr
    run = fl.load_run(tmp_path / "run")
    assert run.outputs.embeddings.shape == (len(prompts), 384) and run.texts == prompts
    top = run.modes[0]
    assert significant(top) and (np.asarray(top.members) < len(tax)).mean() >= 0.8


def test_a_dataframe_of_scores_or_pass_fail_is_a_table_of_outcomes():
    pd = pytest.importorskip("pandas")
    emb, losses, blob = _region_table(3)
    frame = pd.DataFrame({"embedding": list(emb), "score": -losses, "passed": losses < 2.0, "topic": np.where(blob, "x", "y")})
    scored = fl.data.from_pandas(frame, score="score", higher_is_better=True)
    assert np.allclose(scored.to_outputs().losses, losses, atol=1e-5) and scored.metadata.column_names == ["passed", "topic"]
    judged = fl.data.from_pandas(frame, passed="passed").to_outputs()
    assert judged.failure_kind == "failed" and judged.failures.tolist() == (losses >= 2.0).tolist()
    with pytest.raises(DataError, match="which way the score goes"):
        fl.data.from_pandas(frame, score="score")
