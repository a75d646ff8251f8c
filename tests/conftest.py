"""Shared fixtures: the real digits data and one SmallCNN trained on it (about 5 s, once per session)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler

import faultlines as fl
from faultlines.data.digits import CLASS_NAMES
from faultlines.model import save_checkpoint
from faultlines.train import train_small_cnn


@pytest.fixture(scope="session")
def splits():
    return fl.data.digits(seed=0)


@pytest.fixture(scope="session")
def cnn(splits):
    return train_small_cnn(splits.train, splits.val, seed=0)


@pytest.fixture(scope="session")
def clf(cnn):
    return fl.Classifier(cnn, class_names=CLASS_NAMES)


@pytest.fixture(scope="session")
def test_outputs(clf, splits):
    return fl.probe(clf, splits.test, quiet=True)


@pytest.fixture(scope="session")
def model_file(cnn, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.pt"
    buf = io.BytesIO()
    save_checkpoint(cnn, buf, CLASS_NAMES)
    path.write_bytes(buf.getvalue())
    return path


#: The UCI sentiment sentences, in ../shared/data beside the checkout: a clone on its own has
#: none, and the tests that read them skip (the `sentiment_dir` fixture).
SENTIMENT = Path(__file__).resolve().parents[2] / "shared" / "data" / "sentiment-labelled-sentences"


@pytest.fixture(scope="session")
def sentiment_dir():
    """The sentiment sentences' folder; skips the test where it is not beside the checkout."""
    if not (SENTIMENT / "imdb_labelled.txt").is_file():
        pytest.skip(f"needs the UCI sentiment sentences in {SENTIMENT} (../shared/data beside the checkout)")
    return SENTIMENT


@pytest.fixture(scope="session")
def sentiment_cache(tmp_path_factory):
    """One cache of MiniLM embeddings and trained models for the tests that read the sentences."""
    return tmp_path_factory.mktemp("sentiment-cache")


@pytest.fixture(scope="session")
def sentiment_problem(sentiment_dir, sentiment_cache):
    """The UCI sentences (seed 0) with no planted failure (every website whole in training):
    MiniLM embeddings, with texts and sites."""
    from faultlines.bench.text import sentiment

    return sentiment(sentiment_dir, seed=0, rare=None, cache=sentiment_cache)


@pytest.fixture(scope="session")
def pool_outputs(clf, splits):
    """The model's outputs on val + test: 720 digits it was not trained on."""
    pool = fl.data.ArraySource(np.concatenate([splits.val.x, splits.test.x]), np.concatenate([splits.val.y, splits.test.y]))
    return fl.probe(clf, pool, quiet=True)


@pytest.fixture(scope="session")
def plant_cluster(pool_outputs):
    """plant(cls, wrong_label) -> (relabelled outputs, planted rows).

    Relabels 10% of one class as another: the 10% of that class's samples nearest one of
    them in the standardised embedding space the finders search, so the planted set is a
    contiguous high-loss region (a random 10% would be scattered among correct samples).
    """

    def plant(cls, wrong_label, seed=0):
        out = pool_outputs
        rows = np.flatnonzero(out.labels == cls)
        z = StandardScaler().fit_transform(out.embeddings)[rows]
        anchor = z[np.random.default_rng(seed).integers(len(rows))]
        planted = rows[np.argsort(((z - anchor) ** 2).sum(1))[: round(0.1 * len(rows))]]
        labels = out.labels.copy()
        labels[planted] = wrong_label
        return fl.Outputs.from_probs(labels, out.probs, out.embeddings, out.class_names), planted

    return plant


#: Cases tried and held per family of the robustness tests (`count_case`); written to the file
#: $FAULTLINES_RELIABILITY_COUNTS names at the end of the session (benchmarks/reliability.py).
CASES: dict[str, dict[str, int]] = {}


def count_case(family: str, tried: bool = False, held: bool = False, refused: bool = False) -> None:
    """Count a case of `family`: tried; held (ended as promised); refused (held, by a one-line error)."""
    counts = CASES.setdefault(family, {"tried": 0, "held": 0, "refused": 0})
    counts["tried"] += tried
    counts["held"] += held
    counts["refused"] += refused


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("FAULTLINES_RELIABILITY_COUNTS")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(CASES, f, indent=1)


def ctrl_c_as_in_a_terminal():
    """`preexec_fn` for a child that is to be pressed Ctrl-C: SIGINT at its default, as a
    terminal starts a command. A test run as a background job (`pytest &`, CI runners) starts
    its children with SIGINT ignored, and Python then turns no SIGINT into a KeyboardInterrupt."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli(*args, **kwargs):
    """Start `python -m faultlines ARGS` in a new process (stdout and stderr piped; Ctrl-C as in a terminal)."""
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-m", "faultlines", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=ctrl_c_as_in_a_terminal, **kwargs)


def command(*args, cwd=None, env=None, module=True):
    """The real command in a new process, run to its end: `python -m faultlines ARGS` or
    (module=False) the installed console script; the CompletedProcess (text output)."""
    import subprocess
    import sys

    program = [sys.executable, "-m", "faultlines"] if module else [str(Path(sys.executable).parent / "faultlines")]
    return subprocess.run([*program, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def interrupted(args, delay: float):
    """Run the command, press Ctrl-C (SIGINT) after `delay` seconds; (exit code, stderr)."""
    import signal
    import time

    process = cli(*args)
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    return process.returncode, err


def snapshot_tree(folder):
    """Every file under `folder` (hidden ones too) by relative path, with a hash of its bytes."""
    import hashlib
    from pathlib import Path

    folder = Path(folder)
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_interrupt_kept_promise(code: int, err: str, family: str) -> bool:
    """Ctrl-C's promise: exit 130 with the one line, or (pressed after the end) exit 0; never a traceback.
    Returns whether the command was interrupted."""
    from faultlines.errors import INTERRUPTED

    import signal

    count_case(family, tried=True)
    assert "Traceback" not in err, err
    # pressed while Python was already shutting down, the command done: Python's own default
    # (death by SIGINT, which a shell shows as exit status 130 too), with nothing printed
    finished_exiting = code == -signal.SIGINT and err == ""
    assert (code == 130 and err == INTERRUPTED) or code == 0 or finished_exiting, (code, err)
    count_case(family, held=True, refused=code == 130)
    return code == 130
