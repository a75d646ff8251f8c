"""Interruptions, kills, concurrent writers, full and read-only disks, tampered runs, and hostile
strings in the report (issue 15). Commands run in processes of their own, as a user runs them."""

from __future__ import annotations

import dataclasses
import errno
import html.parser
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import faultlines as fl
from faultlines import store
from faultlines.atomic import lock, remove_leftovers
from faultlines.errors import INTERRUPTED, RunDirError
from faultlines.report import render

from conftest import assert_interrupt_kept_promise, cli, count_case, ctrl_c_as_in_a_terminal, interrupted, snapshot_tree

SCALE = float(os.environ.get("FAULTLINES_EXAMPLES", "1"))


def leftovers(out: Path) -> list[str]:
    """Hidden files beside the run folder `out` (temporary folders, the lock) and inside it."""
    beside = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    inside = [p.name for p in out.iterdir() if p.name.startswith(".")] if out.is_dir() else []
    return beside + inside


@pytest.fixture(scope="module")
def earlier_run(model_file, tmp_path_factory):
    """A finished scan of the digits, written by the command line: the run every fault must leave intact."""
    folder = tmp_path_factory.mktemp("faults") / "run"
    process = cli("scan", "--model", model_file, "--data", "digits", "--out", folder, "-q")
    start = time.monotonic()
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    return folder, time.monotonic() - start


def fresh_copy(run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(run, target)
    return target


# -- Ctrl-C ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5, 0.7, 0.85, 0.95])
def test_ctrl_c_at_any_stage_of_a_scan(fraction, earlier_run, model_file, tmp_path):
    """Ctrl-C at a spread of moments of a scan over an earlier run: loading, probing, finding,
    writing. Each ends with one line and exit 130 (or, past the end, 0), and the folder holds
    a whole run (the earlier or the new one) with nothing left beside it."""
    run, seconds = earlier_run
    out = fresh_copy(run, tmp_path)
    before = snapshot_tree(out)
    code, err = interrupted(["scan", "--model", model_file, "--data", "digits", "--out", out, "-q"], fraction * seconds)
    if assert_interrupt_kept_promise(code, err, "ctrl-c"):
        assert snapshot_tree(out) == before
    fl.load_run(out)
    assert leftovers(out) == []


PRESSED_AT = """
import signal, sys, typer.main, typer._click.core  # typer carries its own copy of click
from faultlines.__main__ import main
owner, name = {owner}, "{name}"
original = getattr(owner, name)
def pressed(*args, **kwargs):  # Ctrl-C arrives just as typer reaches this step
    signal.raise_signal(signal.SIGINT)
    return original(*args, **kwargs)
setattr(owner, name, pressed)
sys.argv = ["faultlines", "label", "no-such-run", "--auto"]
main()
"""


@pytest.mark.parametrize("owner, name", [("typer.main", "get_command"), ("typer._click.core.Context", "__init__")])
def test_ctrl_c_before_the_command_begins(owner, name):
    """Ctrl-C while typer builds the command line from its functions, or parses the options,
    before any command runs: the same one line and exit 130 as inside a command."""
    count_case("ctrl-c", tried=True)
    process = subprocess.run([sys.executable, "-c", PRESSED_AT.format(owner=owner, name=name)], capture_output=True, text=True,
                             timeout=120, preexec_fn=ctrl_c_as_in_a_terminal)
    assert (process.returncode, process.stderr) == (130, INTERRUPTED)
    count_case("ctrl-c", held=True, refused=True)


# -- SIGKILL --------------------------------------------------------------------------------

WRITER = """
import sys
import faultlines as fl
result = fl.load_run(sys.argv[1])
print("ready", flush=True)
while True:
    fl.save_run(result, sys.argv[2])
"""


def test_a_writer_killed_at_any_moment_leaves_a_whole_run(earlier_run, tmp_path):
    """A process saving a run over and over is killed with SIGKILL at random moments: the folder
    always loads as a whole run, and the next writer removes what the killed one left."""
    run, _ = earlier_run
    out = fresh_copy(run, tmp_path)
    rng = np.random.default_rng(0)
    kills = max(3, int(8 * SCALE))
    for _ in range(kills):
        count_case("sigkill", tried=True)
        process = subprocess.Popen([sys.executable, "-c", WRITER, str(run), str(out)], stdout=subprocess.PIPE, text=True)
        assert process.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 1.5))
        process.kill()
        process.wait()
        again = fl.load_run(out)  # whole: the earlier run or one of the rewrites, never a mix
        assert again.outputs.n == 360 and len(again.modes) == len(fl.load_run(run).modes)
        fl.save_run(again, out)  # the next writer at this path
        assert leftovers(out) == []
        count_case("sigkill", held=True)


def test_killed_between_the_two_renames_the_earlier_run_is_put_back(earlier_run, tmp_path):
    """The one moment a run is not at its path: moved aside, the new one not yet moved in."""
    run, _ = earlier_run
    out = fresh_copy(run, tmp_path)
    before = snapshot_tree(out)
    aside = tmp_path / ".run.old-x1"
    aside.mkdir()
    os.replace(out, aside / "run")
    shutil.copytree(run, tmp_path / ".run.tmp-x2")  # the new run, complete, not yet renamed
    (tmp_path / ".run.probe-x3").mkdir()
    (tmp_path / ".run.lock").write_text("99999\n")  # the killed writer's lock file (its flock died with it)
    with lock(out):
        assert snapshot_tree(out) == before
    assert leftovers(out) == []
    count_case("sigkill", tried=True, held=True)


# -- two writers ----------------------------------------------------------------------------


def test_two_scans_to_one_folder_one_wins_the_other_says_so(earlier_run, model_file, tmp_path):
    run, _ = earlier_run
    out = tmp_path / "shared"
    args = ["scan", "--model", model_file, "--data", "digits", "--out", out, "-q"]
    processes = [cli(*args), cli(*args, "--seed", "1")]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in processes]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    err = next(e for code, e in results if code == 2)
    assert len(err.strip().splitlines()) == 1 and "another faultlines command" in err and str(out) in err
    winner = fl.load_run(out)
    assert winner.config["seed"] == [0, 1][[c for c, _ in results].index(0)]
    assert leftovers(out) == []
    count_case("concurrency", tried=True, held=True)


HOLDER = """
import sys, time
from faultlines.atomic import lock
with lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def test_save_run_refuses_a_folder_another_process_is_writing(earlier_run, tmp_path):
    run, _ = earlier_run
    result = fl.load_run(run)
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirError, match=f"pid {holder.pid}"):
            fl.save_run(result, out)
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
    fl.save_run(result, out)  # a killed holder's lock dies with it
    assert leftovers(out) == []
    count_case("concurrency", tried=True, held=True)


# -- disks ----------------------------------------------------------------------------------


@pytest.fixture
def unwritable_folder(tmp_path):
    """A folder this process cannot write into: read-only by mode, or for root (who writes
    anywhere) immutable (chattr +i), or failing that a folder in read-only /sys."""
    folder = tmp_path / "readonly"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0:
        yield folder
        subprocess.run(["chattr", "-i", str(folder)], check=True)
        return
    yield Path("/sys")


def test_an_output_folder_that_cannot_be_written_is_one_line(model_file, unwritable_folder):
    before = sorted(p.name for p in unwritable_folder.iterdir())
    process = cli("scan", "--model", model_file, "--data", "digits", "--out", unwritable_folder / "run", "-q")
    _, err = process.communicate(timeout=300)
    assert process.returncode == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: cannot write"), err
    assert sorted(p.name for p in unwritable_folder.iterdir()) == before
    count_case("disk", tried=True, held=True, refused=True)


def small_files(limit: int):
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


@pytest.mark.parametrize("limit", [2_000, 100_000, 400_000])
def test_a_disk_that_fills_while_writing_is_one_line_and_leaves_the_earlier_run(limit, earlier_run, model_file, tmp_path):
    """The scan's files may not grow past `limit` bytes (RLIMIT_FSIZE): writes fail part way,
    at the probe's spill, the tables or the report, as they would on a full disk."""
    run, _ = earlier_run
    out = fresh_copy(run, tmp_path)
    before = snapshot_tree(out)
    process = subprocess.Popen([sys.executable, "-m", "faultlines", "scan", "--model", str(model_file), "--data", "digits",
                                "--out", str(out), "-q"], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               preexec_fn=small_files(limit))
    _, err = process.communicate(timeout=300)
    assert process.returncode == 2 and len(err.strip().splitlines()) == 1 and "File too large" in err, err
    assert snapshot_tree(out) == before and leftovers(out) == []
    count_case("disk", tried=True, held=True, refused=True)


#: A before/after table of the shape `faultlines fix` stores.
REPAIR = {"lambda": 1.0, "sweep": [], "labelled_regions": 1, "labels": {"r0": "3"},
          "before": {"test_accuracy": 0.9, "heldout_region_accuracy": 0.1, "per_region": {"r0": 0.1}},
          "after": {"test_accuracy": 0.9, "heldout_region_accuracy": 0.8, "per_region": {"r0": 0.8}}}


def test_no_space_while_adding_labels_or_a_repair_changes_nothing(earlier_run, tmp_path, monkeypatch):
    run, _ = earlier_run
    out = fresh_copy(run, tmp_path)
    result = fl.load_run(out)
    before = snapshot_tree(out)
    real = Path.write_bytes

    def full(self, data, *args, **kwargs):  # half the bytes reach the disk, then it is full
        data = data.encode("utf-8") if isinstance(data, str) else data
        real(self, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    monkeypatch.setattr(Path, "write_text", full)
    for write in (lambda: store.save_labels(out, {"regions": {}}),
                  lambda: store.save_repair(out, result, "defuse", b"model", REPAIR),
                  lambda: store.save_report(out, result),
                  lambda: fl.save_run(result, out)):
        count_case("disk", tried=True)
        with pytest.raises(RunDirError, match="No space left on device") as raised:
            write()
        assert "\n" not in str(raised.value)
        assert snapshot_tree(out) == before and leftovers(out) == []
        assert "defuse" not in result.repairs
        count_case("disk", held=True, refused=True)


# -- tampered runs --------------------------------------------------------------------------


def tamper(folder: Path, file: str, how: str, draw) -> None:
    path = folder / file
    data = path.read_bytes()
    if how == "delete":
        path.unlink()
    elif how == "truncate":
        path.write_bytes(data[: draw(st.integers(0, max(0, len(data) - 1)))])
    elif how == "garbage":
        path.write_bytes(draw(st.binary(max_size=256)))
    elif how == "flip":
        at = draw(st.integers(0, len(data) - 1))
        path.write_bytes(data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:])
    elif how == "json":  # scan.json parsed, one value replaced with another type, or a key removed
        record = json.loads(data)
        node, parent, key = record, None, None
        for _ in range(draw(st.integers(1, 4))):
            keys = list(node) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []
            if not keys:
                break
            parent, key = node, draw(st.sampled_from(keys))
            if not isinstance(node[key], (dict, list)) or draw(st.booleans()):
                break
            node = node[key]
        if parent is not None:
            if isinstance(parent, dict) and draw(st.booleans()):
                del parent[key]
            else:
                parent[key] = draw(st.sampled_from([None, -1, 10**9, "x", [], {}, 0.5, True]))
        path.write_text(json.dumps(record))
    elif how == "newer":
        record = json.loads(data)
        record["format"] = "faultlines-run-2"
        path.write_text(json.dumps(record))


RUN_FILES = ["scan.json", "samples.parquet", "members.parquet", "embeddings.npy"]


@settings(max_examples=max(1, int(150 * SCALE)), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(file=st.sampled_from(RUN_FILES), how=st.sampled_from(["delete", "truncate", "garbage", "flip", "json", "newer"]), data=st.data())
def test_a_tampered_run_loads_or_names_the_broken_file(file, how, data, earlier_run, tmp_path):
    run, _ = earlier_run
    with tempfile.TemporaryDirectory(dir=tmp_path) as d:
        folder = Path(d) / "run"
        shutil.copytree(run, folder)
        if how in ("json", "newer"):
            file = "scan.json"
        tamper(folder, file, how, data.draw)
        count_case("tampered", tried=True)
        try:
            result = fl.load_run(folder)
        except RunDirError as e:
            message = str(e)
            assert "\n" not in message and file in message, message
            if how == "newer":
                assert "newer faultlines" in message
            count_case("tampered", held=True, refused=True)
            return
        assert result.outputs.n == 360  # what loads is whole
        render(result)  # and its report renders
        count_case("tampered", held=True)


def test_the_report_command_names_the_broken_file(earlier_run, tmp_path):
    run, _ = earlier_run
    out = fresh_copy(run, tmp_path)
    (out / "members.parquet").write_bytes(b"PAR1 not really")
    process = cli("report", out)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2 and err.count("\n") == 1 and "members.parquet" in err, err
    count_case("tampered", tried=True, held=True, refused=True)


# -- hostile strings in the report ----------------------------------------------------------

PAYLOADS = [
    '"><img src=x onerror="window.__pwned=1">',
    "' onmouseover='window.__pwned=1' x='",
    "</script><script>window.__pwned=1</script>",
    "</style><svg onload=window.__pwned=1>",
    "javascript:window.__pwned=1",
    "{{7*7}}${7*7}<!--",
    "\u2028\u2029</textarea>",
]


class Tags(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: Counter = Counter()
        self.attributes: Counter = Counter()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags[tag] += 1
        for name, value in attrs:
            self.attributes[name] += 1
            if name in ("href", "src") and value:
                self.urls.append(value)


def hostile_result(strings: list[str]) -> fl.ScanResult:
    """A text table whose class names, texts, file and column names and summaries all carry `strings`."""
    rng = np.random.default_rng(0)
    n = 300
    labels = np.repeat([0, 1, 2], 100)
    emb = rng.normal(size=(n, 8)).astype(np.float32) + labels[:, None]
    probs = np.full((n, 3), 0.1, np.float32)
    probs[np.arange(n), labels] = 0.8
    probs[:40] = probs[:40][:, [1, 0, 2]]
    texts = [strings[i % len(strings)] + f" {i}" for i in range(n)]
    table = fl.data.EmbeddingTable(emb, labels, probs, tuple(s[:40] + str(i) for i, s in enumerate(strings[:3])), texts,
                                   name=strings[0] + ".parquet")
    result = fl.scan(None, table, "spotlight", quiet=True, confirm=0)
    result.config["data"] |= {"spec": strings[1], "train": strings[2]}
    modes = [dataclasses.replace(m, summary=strings[3] + " " + m.summary, evidence=m.evidence | {"note": strings[4]}) for m in result.modes]
    return dataclasses.replace(result, modes=modes)


def test_every_string_the_report_did_not_write_is_escaped():
    harmless = [f"plain{i}" for i in range(len(PAYLOADS))]
    clean, hostile = Tags(), Tags()
    clean.feed(render(hostile_result(harmless)))
    page = render(hostile_result(PAYLOADS))
    hostile.feed(page)
    assert hostile.tags == clean.tags  # no element the strings brought: no img, svg, or extra script
    assert hostile.attributes == clean.attributes  # no attribute either (onerror, onmouseover, ...)
    assert not any(url.startswith("javascript:") for url in hostile.urls)
    assert "window.__pwned=1</script>" not in page and "<img src=x" not in page
    assert '<meta http-equiv="Content-Security-Policy"' in page
    count_case("report", tried=len(PAYLOADS), held=len(PAYLOADS))
