"""Where the model runs: the device, streamed embeddings, the Ray engine, and a scan cut short."""

import numpy as np
import pytest
import torch
from conftest import command
from typer.testing import CliRunner

import faultlines as fl
from faultlines.cli import app
from faultlines.distributed import probe_ray
from faultlines.errors import INTERRUPTED, SettingsError
from faultlines.model import resolve_device


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _absent_gpu() -> str:
    # a GPU this machine does not have, whether or not it has one
    return "cuda" if not torch.cuda.is_available() else f"cuda:{torch.cuda.device_count()}"


def test_a_device_that_is_not_here_is_a_one_line_error(model_file, tmp_path):
    result = run("scan", "--model", model_file, "--data", "digits", "--device", _absent_gpu(), "--out", tmp_path / "r", "-q")
    assert result.exit_code == 2 and result.output.startswith("error: device") and result.output.count("\n") == 1
    assert "CUDA" in result.output and not (tmp_path / "r").exists()
    for bad in ("tpu", "gpu0"):
        with pytest.raises(SettingsError):
            resolve_device(bad)
    assert resolve_device("cpu") == torch.device("cpu") and resolve_device(None).type in ("cpu", "cuda", "mps")


def test_amp_off_cuda_is_refused(model_file, tmp_path):
    result = run("scan", "--model", model_file, "--data", "digits", "--device", "cpu", "--amp", "--out", tmp_path / "r", "-q")
    assert result.exit_code == 2 and "--amp" in result.output


def test_probe_streams_embeddings_into_a_file(clf, splits, tmp_path):
    streamed = fl.probe(clf, splits.test, batch_size=37, quiet=True, embeddings_file=tmp_path / "e.npy")
    in_memory = fl.probe(clf, splits.test, quiet=True)
    assert isinstance(streamed.embeddings.base, np.memmap) or isinstance(streamed.embeddings, np.memmap)
    assert np.array_equal(np.load(tmp_path / "e.npy"), in_memory.embeddings)
    assert np.array_equal(streamed.preds, in_memory.preds) and np.allclose(streamed.probs, in_memory.probs)


def test_the_ray_engine_gives_the_local_outputs(clf, splits):
    local = fl.probe(clf, splits.test, quiet=True)
    remote = probe_ray(clf, splits.test, batch_size=64, quiet=True, workers=1)
    assert np.array_equal(remote.labels, local.labels) and np.array_equal(remote.preds, local.preds)
    np.testing.assert_allclose(remote.embeddings, local.embeddings, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(remote.probs, local.probs, rtol=1e-5, atol=1e-6)


def test_scan_on_the_ray_engine_on_the_cli(model_file, tmp_path):
    out = tmp_path / "r"
    # the real command, so that what Ray's processes and its C++ core print is seen: with -q, nothing
    result = command("scan", "--model", model_file, "--data", "digits", "--engine", "ray", "--out", out, "-q")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    again = fl.load_run(out)
    assert again.config["data"]["engine"] == "ray" and again.outputs.n == 360
    assert run("scan", "--model", model_file, "--data", "digits", "--engine", "spark", "--out", tmp_path / "x", "-q").exit_code == 2
    assert run("scan", "--model", model_file, "--data", "digits", "--ray-address", "auto", "--out", tmp_path / "x", "-q").exit_code == 2


def test_an_interrupted_scan_leaves_no_temporary_files(model_file, tmp_path, monkeypatch):
    def interrupt(self, outputs, **_):
        raise KeyboardInterrupt

    monkeypatch.setattr(fl.Spotlight, "_find", interrupt)
    before = set(tmp_path.iterdir())
    result = run("scan", "--model", model_file, "--data", "digits", "--out", tmp_path / "r", "-q")
    assert result.exit_code == 130 and result.output == INTERRUPTED  # one line, no traceback
    assert set(tmp_path.iterdir()) == before  # no run folder, no streamed embeddings, no hidden temporary folder
    # and a scan that completes leaves only its run folder, with the embeddings linked in it
    monkeypatch.undo()
    assert run("scan", "--model", model_file, "--data", "digits", "--out", tmp_path / "r", "-q").exit_code == 0
    assert set(tmp_path.iterdir()) == before | {tmp_path / "r"}
    assert np.load(tmp_path / "r" / "embeddings.npy").shape == (360, fl.load_run(tmp_path / "r").outputs.embeddings.shape[1])
