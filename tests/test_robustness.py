"""Generated and hostile input at every reader and the public boundary (issue 15).

Each generated case must end in a valid result or a `FaultlinesError` whose message is one
line; any other exception fails the test. `FAULTLINES_EXAMPLES` scales how many cases each
property test tries (1: the default run; `python benchmarks/reliability.py` runs more and
prints the counts that BENCHMARKS.md's "Reliability" table holds).
"""

from __future__ import annotations

import builtins
import functools
import io
import json
import math
import os
import pickle
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import count_case
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

import faultlines as fl
from faultlines.data.files import image_folder, load, load_embedding_table, load_npz
from faultlines.data.sources import ArraySource, EmbeddingTable
from faultlines.errors import FaultlinesError, ModelError, SettingsError
from faultlines.model import load_module
from faultlines.registry import FINDERS

SCALE = float(os.environ.get("FAULTLINES_EXAMPLES", "1"))


def examples(n: int):
    return settings(max_examples=max(1, int(n * SCALE)), deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])


def holds(family: str, call):
    """Run `call`: its result, or None when it raised a one-line FaultlinesError. Anything else
    (another exception, a message over several lines) propagates and fails the test."""
    count_case(family, tried=True)
    try:
        result = call()
    except FaultlinesError as e:
        message = str(e)
        assert message and "\n" not in message.strip(), f"not one line: {message!r}"
        count_case(family, held=True, refused=True)
        return None
    count_case(family, held=True)
    return result


# -- strategies ---------------------------------------------------------------------------

DTYPES = st.sampled_from(["float32", "float64", "float16", "int8", "int64", "uint8", "bool", "complex64", "U3", "S2"])


@st.composite
def arrays(draw, min_dims=0, max_dims=4):
    """Arrays of any of DTYPES and shape, with NaN, inf and huge values among the floats; or
    ragged / object arrays of Python lists."""
    kind = draw(st.sampled_from(["plain", "plain", "plain", "ragged", "object-strings"]))
    if kind == "ragged":
        rows = draw(st.lists(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=4), min_size=2, max_size=6))
        out = np.empty(len(rows), dtype=object)
        out[:] = rows
        return out
    if kind == "object-strings":
        return np.array(draw(st.lists(st.text(max_size=5), max_size=6)), dtype=object)
    dtype = np.dtype(draw(DTYPES))
    shape = draw(hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=0, max_side=6))
    elements = None
    if dtype.kind == "f":
        elements = st.floats(allow_nan=True, allow_infinity=True, width=min(64, dtype.itemsize * 8))
    return draw(hnp.arrays(dtype, shape, elements=elements))


def save_npz(path: Path, named: dict) -> None:
    with open(path, "wb") as f:
        np.savez(f, **named)  # object arrays are pickled into the file (allow_pickle on saving)


texts = st.text(st.characters(codec="utf-8"), max_size=20)


# -- .npz arrays --------------------------------------------------------------------------


@st.composite
def samples(draw):
    """x and y for a data set: half of them of matching lengths (the cases a user means to give)."""
    if draw(st.booleans()):
        return draw(arrays()), draw(arrays(max_dims=2))
    n = draw(st.integers(0, 8))
    dtype = np.dtype(draw(DTYPES))
    elements = st.floats(allow_nan=True, allow_infinity=True, width=min(64, dtype.itemsize * 8)) if dtype.kind == "f" else None
    if draw(st.booleans()) and dtype.kind == "f":
        elements = st.floats(-1e3, 1e3, width=min(64, dtype.itemsize * 8))
    x = draw(hnp.arrays(dtype, (n, *draw(hnp.array_shapes(min_dims=0, max_dims=3, max_side=5))), elements=elements))
    y = draw(hnp.arrays(draw(st.sampled_from([np.int64, np.int8, np.float32, np.int16])), (n,), elements=st.integers(-1, 12)))
    return x, y


@examples(300)
@given(xy=samples(), names=st.one_of(st.none(), arrays(max_dims=1), st.lists(texts, max_size=12).map(np.array)), extra=st.booleans())
def test_npz_arrays_load_or_fail_in_one_line(xy, names, extra):
    x, y = xy
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "data.npz"
        named = {"x": x, "y": y} | ({"class_names": names} if names is not None else {})
        if extra and names is None:
            named.pop("y")
        save_npz(path, named)
        source = holds("npz", lambda: load(path))
        if source is not None:
            assert isinstance(source, ArraySource) and len(source) == len(np.asarray(y))
            got_x, got_y = source.arrays()
            assert got_x.dtype == np.float32 and np.isfinite(got_x).all() and got_y.dtype == np.int64


# -- embedding tables ---------------------------------------------------------------------


@st.composite
def tables(draw):
    """The columns of an embedding table, well formed or not in every way a user's export can be."""
    n = draw(st.integers(0, 12))
    c = draw(st.integers(1, 4))
    d = draw(st.integers(1, 5))
    finite = st.floats(-1e6, 1e6, width=32)
    anyfloat = st.floats(allow_nan=True, allow_infinity=True, width=32)

    def rows(width, elements):
        ragged = draw(st.booleans()) and draw(st.booleans())
        return [draw(st.lists(elements, min_size=0 if ragged else width, max_size=width + (1 if ragged else 0))) for _ in range(n)]

    probs_kind = draw(st.sampled_from(["softmax", "softmax", "raw", "nan"]))
    if probs_kind == "softmax":
        p = np.asarray(draw(hnp.arrays(np.float32, (n, c), elements=st.floats(0.0625, 1, width=32))))
        probs = (p / p.sum(1, keepdims=True)).tolist()
    else:
        probs = rows(c, anyfloat if probs_kind == "nan" else finite)
    label_kind = draw(st.sampled_from(["int", "int", "outside", "float", "string", "null"]))
    labels = {
        "int": lambda: [draw(st.integers(0, c - 1)) for _ in range(n)],
        "outside": lambda: [draw(st.integers(-3, c + 3)) for _ in range(n)],
        "float": lambda: [draw(st.floats(allow_nan=True, width=32)) for _ in range(n)],
        "string": lambda: [draw(texts) for _ in range(n)],
        "null": lambda: [None] * n,
    }[label_kind]()
    columns = {
        "label": labels,
        "probs": probs,
        "embedding": rows(d, draw(st.sampled_from([finite, anyfloat]))),
    }
    if draw(st.integers(0, 2)) == 0:  # a model without classes: a loss, a score and/or a pass/fail instead
        del columns["label"], columns["probs"]
        flags = st.sampled_from([True, False, 0, 1, 2, "pass", "FAIL", "yes", "maybe", None, 0.5])
        for role in draw(st.lists(st.sampled_from(["loss", "score", "passed", "failed"]), min_size=1, max_size=2, unique=True)):
            kind = draw(st.sampled_from(["number", "number", "any", "text"])) if role in ("loss", "score") else "flag"
            element = {"number": finite, "any": anyfloat, "text": texts, "flag": flags}[kind]
            columns[role] = [draw(element) for _ in range(n)]
    if draw(st.booleans()):
        columns["text"] = [draw(texts) for _ in range(n)]
    if draw(st.booleans()):
        columns[draw(st.sampled_from(["site", "label ", "<b>x</b>", "é"]))] = [draw(texts) for _ in range(n)]
    for name in draw(st.lists(st.sampled_from(["label", "probs", "embedding"]), max_size=1)):
        columns.pop(name, None)  # a missing column
    return columns


def parquet_table(columns: dict) -> pa.Table:
    out = {}
    for name, values in columns.items():
        try:
            out[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            out[name] = pa.array([json.dumps(v) for v in values])  # mixed types: written as strings
    return pa.table(out) if out else pa.table({"empty": pa.array([], pa.int8())})


def check_table(reader) -> None:
    """A table read and validated into Outputs, or one line."""

    def read():
        table = reader()
        assert isinstance(table, EmbeddingTable)
        return table.to_outputs()

    out = holds("tables", read)
    if out is not None:
        assert np.isfinite(out.losses).all() and out.embeddings.dtype == np.float32 and out.embeddings.ndim == 2


@examples(300)
@given(columns=tables())
def test_parquet_tables_load_or_fail_in_one_line(columns):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "table.parquet"
        pq.write_table(parquet_table(columns), path)
        check_table(lambda: load(path))


def as_array(values):
    try:
        return np.asarray(values)
    except ValueError:  # ragged rows: what np.savez would have to pickle
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out


@examples(300)
@given(columns=tables(), folder=st.booleans(), names=st.one_of(st.none(), st.lists(texts, max_size=5)))
def test_npz_and_folder_tables_load_or_fail_in_one_line(columns, folder, names):
    renamed = {{"label": "labels", "embedding": "embeddings", "text": "texts", "loss": "losses", "score": "scores"}.get(k, k): as_array(v)
               for k, v in columns.items()}
    if names is not None:
        renamed["class_names"] = np.array(names, dtype=str)
    with tempfile.TemporaryDirectory() as d:
        if folder:
            path = Path(d) / "table"
            path.mkdir()
            for key, value in renamed.items():
                if key == "texts":  # a folder keeps its texts one per line, as the docs say
                    (path / "texts.txt").write_text("\n".join(map(str, value)), encoding="utf-8")
                elif key.isidentifier():
                    np.save(path / f"{key}.npy", value, allow_pickle=True)
            if not (path / "embeddings.npy").exists():
                np.save(path / "embeddings.npy", np.zeros((1, 1), np.float32))
            reader = lambda: load_embedding_table(path)  # noqa: E731
        else:
            path = Path(d) / "table.npz"
            save_npz(path, {k: v for k, v in renamed.items() if k.isidentifier()} | {"embeddings": renamed.get("embeddings", np.zeros(0))})
            reader = lambda: load_embedding_table(path)  # noqa: E731
        check_table(reader)


# -- image folders ------------------------------------------------------------------------

MODES = st.sampled_from(["L", "RGB", "RGBA", "P", "1", "I;16", "I", "F", "LA", "CMYK"])


def image_bytes(mode: str, size: tuple[int, int], fmt: str, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    im = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    im = im.convert("L").convert(mode) if mode in ("I;16", "I", "F") else im.convert(mode)
    buf = io.BytesIO()
    try:
        im.save(buf, format=fmt)
    except (OSError, ValueError):  # a mode the format cannot hold (JPEG and RGBA, ...): fall back to RGB
        buf = io.BytesIO()
        im.convert("RGB").save(buf, format=fmt)
    return buf.getvalue()


@st.composite
def image_files(draw):
    kind = draw(st.sampled_from(["image", "image", "image", "truncated", "garbage", "empty", "text", "hidden"]))
    fmt = draw(st.sampled_from(["PNG", "JPEG", "BMP", "GIF"]))
    suffix = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "GIF": ".gif"}[fmt]
    size = (draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    data = image_bytes(draw(MODES), size, fmt, draw(st.integers(0, 10**6)))
    if kind == "truncated":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif kind == "garbage":
        data = draw(st.binary(max_size=64))
    elif kind == "empty":
        data = b""
    elif kind == "text":
        return "notes.txt", draw(st.binary(max_size=32))
    return (".hidden" if kind == "hidden" else "") + f"{draw(st.integers(0, 99))}{suffix}", data


@examples(200)
@given(classes=st.lists(st.lists(image_files(), max_size=3), max_size=4), size=st.one_of(st.none(), st.integers(-1, 6), st.tuples(st.integers(0, 5), st.integers(1, 5))))
def test_image_folders_load_or_fail_in_one_line(classes, size):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "images"
        root.mkdir()
        for i, files in enumerate(classes):
            (root / f"class{i}").mkdir()
            for name, data in files:
                (root / f"class{i}" / name).write_bytes(data)
        read = holds("images", lambda: image_folder(root, size=size).arrays())  # read lazily: errors come when read
        if read is not None:
            x, y = read
            assert x.ndim == 4 and x.dtype == np.float32 and np.isfinite(x).all() and 0 <= x.min() and x.max() <= 1
            assert set(y.tolist()) <= set(range(len(classes)))


# -- Outputs.from_probs -------------------------------------------------------------------


@st.composite
def outputs_arrays(draw):
    """labels, probs, embeddings: anything, or (half the time) of matching rows with near-valid values."""
    if draw(st.booleans()):
        return draw(arrays(max_dims=2)), draw(arrays(max_dims=3)), draw(arrays(max_dims=3))
    n, c, d = draw(st.integers(0, 8)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    labels = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, c - 1) if draw(st.booleans()) else st.integers(-1, c)))
    raw = draw(hnp.arrays(np.float64, (n, c), elements=st.floats(0, 2) | st.just(np.nan) if draw(st.sampled_from([True, False, False])) else st.floats(0.001, 1)))
    with np.errstate(invalid="ignore", divide="ignore"):
        probs = raw / raw.sum(1, keepdims=True) if draw(st.sampled_from([True, True, True, False])) else raw
    wild = draw(st.sampled_from([True, False, False]))
    embeddings = draw(hnp.arrays(np.float64, (n, d), elements=st.floats(allow_nan=True, allow_infinity=True) if wild else st.floats(-1e30, 1e30)))
    return labels, probs, embeddings


@examples(300)
@given(arrays_=outputs_arrays(), names=st.one_of(st.none(), st.lists(texts, max_size=5)))
def test_outputs_from_probs_is_valid_or_one_line(arrays_, names):
    labels, probs, embeddings = arrays_
    out = holds("outputs", lambda: fl.Outputs.from_probs(labels, probs, embeddings, names))
    if out is not None:
        assert out.probs.dtype == np.float32 and np.isfinite(out.losses).all() and (out.losses >= 0).all()
        assert out.embeddings.ndim == 2 and len(out.class_names) == out.num_classes


# -- every finder's settings --------------------------------------------------------------

ANY_SETTING = st.one_of(
    st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8), st.lists(st.integers(), max_size=2), st.sampled_from(["linear", "gaussian", "all", "auto"]),
)


@examples(300)
@given(name=st.sampled_from(sorted(FINDERS)), data=st.data())
def test_finder_settings_are_accepted_or_refused_in_one_line(name, data):
    cls = FINDERS[name]
    params = [p for p in cls.param_names() if p not in ("quiet",)]
    chosen = data.draw(st.lists(st.sampled_from(params), min_size=1, max_size=3, unique=True))
    settings_ = {p: data.draw(ANY_SETTING, label=p) for p in chosen}
    finder = holds("settings", lambda: cls(**settings_, quiet=True))
    if finder is not None:
        assert all(getattr(finder, p) is v or getattr(finder, p) == v or v != v for p, v in settings_.items())


@pytest.fixture(scope="module")
def small_outputs():
    """120 rows in three blobs, one of them mostly mistaken: small enough to run a finder hundreds of times."""
    rng = np.random.default_rng(0)
    emb = np.concatenate([rng.normal(c, 1, (40, 6)) for c in (0, 5, 10)]).astype(np.float32)
    labels = np.repeat([0, 1, 2], 40)
    probs = np.full((120, 3), 0.05, np.float32)
    probs[np.arange(120), labels] = 0.9
    probs[80:110] = probs[80:110][:, [1, 2, 0]]  # the third blob's first 30 rows: mistakes
    return fl.Outputs.from_probs(labels, probs, emb)


SMALL = st.one_of(st.integers(-2, 40), st.floats(-1, 3), st.just(math.nan), st.none(), st.booleans(), st.sampled_from(["linear", "gaussian", "x"]))


@examples(150)
@given(name=st.sampled_from(["spotlight", "error-mixture"]), data=st.data())
def test_finders_run_on_any_accepted_settings(name, data, small_outputs):
    """Settings that construct must also run: the modes come back valid, or the run refuses
    the settings in one line (e.g. more mixture components than rows). Values stay small so a
    case runs in well under a second."""
    cls = FINDERS[name]
    params = [p for p in cls.param_names() if p not in ("quiet", "seed")]
    settings_ = {p: data.draw(SMALL, label=p) for p in data.draw(st.lists(st.sampled_from(params), max_size=4, unique=True))}
    finder = holds("settings", lambda: cls(**settings_, quiet=True))
    if finder is None:
        return
    modes = holds("settings", lambda: finder.find(small_outputs))
    if modes is not None:
        for mode in modes:
            assert len(mode.members) and 0 <= mode.members.min() and mode.members.max() < small_outputs.n


@examples(100)
@given(seed=st.one_of(st.integers(-5, 2**70), st.floats(allow_nan=True)), name=st.sampled_from(["spotlight", "error-mixture"]))
def test_any_seed_is_taken_or_refused(seed, name, small_outputs):
    finder = holds("settings", lambda: FINDERS[name](seed=seed, quiet=True, n_spotlights=1) if name == "spotlight"
                   else FINDERS[name](seed=seed, quiet=True, n_slices=1))
    if finder is not None:
        holds("settings", lambda: finder.find(small_outputs))


# -- hostile files ------------------------------------------------------------------------


class Payload:
    """Unpickling this creates the marker file: proof that a reader ran code from the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return builtins.open, (str(self.marker), "w")


def planted(tmp_path: Path) -> tuple[Path, Payload]:
    marker = tmp_path / "PWNED"
    return marker, Payload(marker)


def test_pickle_payloads_in_npz_and_npy_are_never_unpickled(tmp_path):
    marker, payload = planted(tmp_path)
    hostile = np.array([payload, payload], dtype=object)
    cases = {
        "x.npz": {"x": hostile, "y": np.array([0, 1])},
        "y.npz": {"x": np.zeros((2, 3), np.float32), "y": hostile},
        "names.npz": {"x": np.zeros((2, 3), np.float32), "y": np.array([0, 1]), "class_names": hostile},
        "table.npz": {"embeddings": hostile, "labels": np.array([0, 1]), "probs": np.eye(2, dtype=np.float32)},
        "texts.npz": {"embeddings": np.zeros((2, 2), np.float32), "labels": np.array([0, 1]), "probs": np.eye(2, dtype=np.float32), "texts": hostile},
    }
    for name, named in cases.items():
        save_npz(tmp_path / name, named)
        for reader in (load, load_npz, load_embedding_table):
            assert holds("hostile", lambda: reader(tmp_path / name)) is None
    folder = tmp_path / "folder"
    folder.mkdir()
    np.save(folder / "embeddings.npy", np.zeros((2, 2), np.float32))
    np.save(folder / "probs.npy", np.eye(2, dtype=np.float32))
    np.save(folder / "labels.npy", hostile, allow_pickle=True)
    assert holds("hostile", lambda: load(folder)) is None
    assert not marker.exists()


def test_a_parquet_extension_type_carrying_a_pickle_is_never_unpickled(tmp_path):
    """pyarrow's old `arrow.py_extension_type` stored its type as a pickle (CVE-2023-47248):
    a file declaring it must be read as plain data or refused, never unpickled."""
    marker, payload = planted(tmp_path)

    class Hostile(pa.ExtensionType):
        def __init__(self):
            super().__init__(pa.int64(), "arrow.py_extension_type")

        def __arrow_ext_serialize__(self):
            return pickle.dumps(payload)

        @classmethod
        def __arrow_ext_deserialize__(cls, storage_type, serialized):
            return cls()

    labels = pa.ExtensionArray.from_storage(Hostile(), pa.array([0, 1, 1]))
    table = pa.table({"label": labels, "probs": pa.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]]),
                      "embedding": pa.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])})
    pq.write_table(table, tmp_path / "t.parquet")
    check_table(lambda: load(tmp_path / "t.parquet"))
    assert not marker.exists()


def test_a_pickled_model_is_refused_without_trust_pickle(tmp_path, model_file):
    from typer.testing import CliRunner

    from faultlines.cli import app

    marker, payload = planted(tmp_path)
    torch.save({"weights": payload}, tmp_path / "hostile.pt")
    result = CliRunner().invoke(app, ["scan", "--model", str(tmp_path / "hostile.pt"), "--data", "digits", "--out", str(tmp_path / "r"), "-q"])
    assert result.exit_code == 2 and "--trust-pickle" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not marker.exists() and not (tmp_path / "r").exists()
    count_case("hostile", tried=True, held=True, refused=True)


@functools.cache
def tiny_models() -> dict[str, bytes]:
    """A small model in each format a user hands over: .pt2, TorchScript, a state dict, a checkpoint."""
    from faultlines.model import checkpoint_bytes

    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3)).eval()
    example = torch.zeros(2, 6)
    files = {}
    buf = io.BytesIO()
    torch.export.save(torch.export.export(module, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},)), buf)
    files["model.pt2"] = buf.getvalue()
    buf = io.BytesIO()
    torch.jit.save(torch.jit.trace(module, example), buf)
    files["scripted.pt"] = buf.getvalue()
    files["state.pt"] = checkpoint_bytes(module)
    return files


@examples(40)
@given(data=st.data())
def test_truncated_or_corrupt_model_files_give_one_line(data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    files = tiny_models()
    name = data.draw(st.sampled_from(sorted(files)))
    content = files[name]
    how = data.draw(st.sampled_from(["truncate", "flip", "zero-run"]))
    at = data.draw(st.integers(0, len(content) - 1))
    if how == "truncate":
        broken = content[:at]
    elif how == "flip":
        broken = content[:at] + bytes([content[at] ^ 0xFF]) + content[at + 1:]
    else:
        broken = content[:at] + bytes(min(64, len(content) - at)) + content[at + 64:]
    path = folder / name
    path.write_bytes(broken)
    factory = lambda: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))  # noqa: E731
    module = holds("models", lambda: load_module(path, factory=factory)[0])
    if module is not None:
        assert isinstance(module, torch.nn.Module)


class Misbehaving(torch.nn.Module):
    """A model that returns what a broken model returns."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.fc = torch.nn.Linear(256, 10)

    def forward(self, x):
        logits = self.fc(x.flatten(1))
        if self.how == "nan":
            return logits * float("nan")
        if self.how == "inf-some":
            return torch.where(torch.arange(len(x))[:, None] == 1, torch.inf, logits)
        if self.how == "classes":
            return logits[:, :3]
        if self.how == "shape":
            return logits[:, :, None]
        if self.how == "rows":
            return logits[:1]
        if self.how == "scalar":
            return logits.sum()
        if self.how == "not-a-tensor":
            return {"logits": logits}
        return logits


@pytest.mark.parametrize("how", ["nan", "inf-some", "classes", "shape", "rows", "scalar", "not-a-tensor"])
def test_a_misbehaving_model_is_caught_before_the_finders_run(how, splits, monkeypatch):
    def reached(*args, **kwargs):
        raise AssertionError("a finder ran on a misbehaving model's outputs")

    monkeypatch.setattr(fl.Spotlight, "_find", reached)
    clf = fl.Classifier(Misbehaving(how), layer="fc" if how == "not-a-tensor" else None)
    with pytest.raises(FaultlinesError) as raised:
        fl.scan(clf, splits.test, "spotlight", quiet=True)
    assert "\n" not in str(raised.value)
    count_case("models", tried=True, held=True, refused=True)
