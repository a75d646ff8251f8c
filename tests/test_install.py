"""What a user meets outside this checkout: a package with a file missing, a pickled model of any
protocol, other packages' warnings, and run folders whose files point nowhere else."""

import json
import os
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import command

import faultlines
from faultlines import cli
from faultlines.errors import InputWarning
from faultlines.report.sections import SECTIONS
from faultlines.train import SmallCNN


def test_a_template_missing_from_the_package_is_one_line_before_any_work(tmp_path):
    """A wheel that lost a section's template (as one did: package data without sections/) ends
    at once with a line naming it, not after minutes of work as a disk that cannot be written."""
    package = Path(faultlines.__file__).parent
    copy = tmp_path / "site" / "faultlines"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    name = next(iter(SECTIONS))
    (copy / "report" / "templates" / "sections" / f"{name}.html.j2").unlink()

    result = command("demo", "--finders", "all", "--out", tmp_path / "run", cwd=tmp_path,
                     env={**os.environ, "PYTHONPATH": str(tmp_path / "site")})
    assert result.returncode == 2, result.stderr
    assert result.stderr == (f"error: the report template sections/{name}.html.j2 is missing from the installed faultlines "
                             f"package ({copy / 'report' / 'templates'}); reinstall faultlines\n")
    assert "training" not in result.stderr + result.stdout and not (tmp_path / "run").exists()


@pytest.mark.parametrize("protocol", [2, 4, pickle.HIGHEST_PROTOCOL])
def test_a_pickled_model_of_any_protocol_is_refused_in_one_line(tmp_path, protocol):
    # torch's weights-only loader warns about protocols above 2 before it refuses them
    with open(tmp_path / "model.pkl", "wb") as f:
        pickle.dump(SmallCNN(), f, protocol=protocol)
    result = command("scan", "--model", tmp_path / "model.pkl", "--data", "digits", "--out", tmp_path / "run")
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "--trust-pickle" in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_only_faultlines_own_warnings_reach_the_terminal(capsys, monkeypatch):
    monkeypatch.setattr(sys, "warnoptions", [])
    cli._warning_line("ks_2samp: Exact calculation unsuccessful", RuntimeWarning, "scipy/x.py", 1)
    cli._warning_line("Detected pickle protocol 4", UserWarning, "torch/x.py", 1)
    cli._warning_line("the inputs look\n scaled differently", InputWarning, "faultlines/scan.py", 1)
    assert capsys.readouterr().err == "warning: the inputs look scaled differently\n"
    # a person who asked for warnings (python -W, PYTHONWARNINGS) gets other packages' as Python shows them
    shown = []
    monkeypatch.setattr(cli, "_PYTHON_SHOWWARNING", lambda *warning: shown.append(warning))
    monkeypatch.setattr(sys, "warnoptions", ["default"])
    cli._warning_line("Detected pickle protocol 4", UserWarning, "torch/x.py", 1)
    assert shown == [("Detected pickle protocol 4", UserWarning, "torch/x.py", 1, None, None)]


def _strings(value):
    """Every string in a JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def test_no_path_in_a_run_folder_points_outside_it_or_to_a_file_that_is_gone(tmp_path, model_file, splits):
    """A scan of images streams the embeddings to a temporary folder beside the run, which the
    run links and then removes; nothing in the run may name it. The data the user gave is
    recorded as an absolute path (for `faultlines fix`, run from any folder)."""
    np.savez(tmp_path / "test.npz", x=splits.test.x, y=splits.test.y)
    run = tmp_path / "run"
    result = command("scan", "--model", model_file, "--data", "test.npz", "--out", run, "--finders", "spotlight,error-mixture",
                     "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    record = json.loads((run / "scan.json").read_text())
    given = {str((tmp_path / "test.npz").resolve())}
    for text in _strings(record):
        if os.sep in text:  # a path (the data's own name, "test.npz", is a name)
            assert text in given or (run / text).exists(), f"scan.json names {text!r}, which is neither the data given nor in the run"
    assert ".probe-" not in (run / "scan.json").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # the streamed embeddings' folder is gone
    assert len(np.load(run / "embeddings.npy", mmap_mode="r")) == len(splits.test)
