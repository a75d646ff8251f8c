"""The run directory, and the only code that writes one: written atomically, read back whole.

    RUN/scan.json         config, package versions, overview metrics, failure modes (their
                          members are in members.parquet)
    RUN/samples.parquet   one row per sample: label, prediction, loss, probabilities,
                          the modes it belongs to, whether it was held out to confirm
                          them, its text, and a PNG preview where shown
    RUN/members.parquet   one row per (mode, member): mode id, row, weight, in each mode's order
    RUN/embeddings.npy    (N, D) float32 embeddings the finders searched: a hard link to the
                          user's own .npy where the embeddings were read from one (no copy)
    RUN/report.html       the self-contained report
    RUN/table-NAME.npz    other tables the modes refer to (Defuse's generated samples, ...)
    RUN/model.pt          the scanned model; RUN/vae.pt the VAE Defuse searched
    RUN/labels.json       region labels (`faultlines label`); RUN/regions/ID.png their grids
    RUN/fix.json, RUN/model-fixed.pt   the correction (`faultlines fix`)
    RUN/xbl.json, RUN/model-xbl.pt     explanation-based learning (`faultlines fix --xbl`)

A run is assembled in a hidden temporary folder beside RUN and renamed into place, so an
interrupted write leaves the previous run as it was; files added later (labels, repairs)
are each written to a temporary name and renamed. Every file name is a constant here.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from faultlines.arrays import row_chunks
from faultlines.atomic import write_file
from faultlines.errors import RunDirError, SettingsError
from faultlines.images import png_bytes
from faultlines.types import FailureMode, Outputs, ScanResult

RUN_FORMAT = "faultlines-run-1"
SCAN_FILE = "scan.json"
SAMPLES_FILE = "samples.parquet"
MEMBERS_FILE = "members.parquet"
EMBEDDINGS_FILE = "embeddings.npy"
REPORT_FILE = "report.html"
#: How a run may store its embeddings.
EMBEDDING_DTYPES = ("float32", "float16")
MODEL_FILE = "model.pt"
VAE_FILE = "vae.pt"
LABELS_FILE = "labels.json"
GRIDS_DIR = "regions"
TABLE_PREFIX = "table-"
#: Repairs by name: (the before/after table, the corrected model).
REPAIRS = {"defuse": ("fix.json", "model-fixed.pt"), "xbl": ("xbl.json", "model-xbl.pt")}


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def _mode_dict(mode: FailureMode) -> dict[str, Any]:
    return {
        "id": mode.id,
        "method": mode.method,
        "summary": mode.summary,
        "source": mode.source,
        "size": len(mode.members),
        "weighted": mode.weights is not None,
        "metrics": mode.metrics,
        "evidence": mode.evidence,
    }


def _members_table(modes: list[FailureMode]):
    """One row per (mode, member), in each mode's order; weight is NaN for modes without weights."""
    import pyarrow as pa

    sizes = [len(m.members) for m in modes]
    rows = np.concatenate([m.members for m in modes]) if modes else np.zeros(0, np.int64)
    weights = [m.weights if m.weights is not None else np.full(len(m.members), np.nan, np.float32) for m in modes]
    ids = pa.DictionaryArray.from_arrays(pa.array(np.repeat(np.arange(len(modes)), sizes), pa.int32()),
                                         pa.array([m.id for m in modes], pa.string()))
    return pa.table({"mode": ids, "row": pa.array(rows.astype(np.int64)),
                     "weight": pa.array(np.concatenate(weights).astype(np.float32) if modes else np.zeros(0, np.float32))})


def _samples_table(result: ScanResult):
    import pyarrow as pa

    out = result.outputs
    offsets, ids = result.membership()
    columns = {
        "index": pa.array(np.arange(out.n)),
        "label": pa.array(out.labels),
        "pred": pa.array(out.preds),
        "correct": pa.array(out.correct),
        "loss": pa.array(out.losses),
        "probs": pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(out.probs, np.float32).ravel()), out.num_classes),
        "modes": pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(ids.tolist(), pa.string())),
    }
    if result.heldout is not None:
        columns["heldout"] = pa.array(np.asarray(result.heldout, bool))
    if result.texts is not None:
        columns["text"] = pa.array(result.texts, type=pa.string())
    images = {i: p for i, p in result.previews.items() if isinstance(p, np.ndarray)}
    if images:
        columns["preview_png"] = pa.array([png_bytes(images[i]) if i in images else None for i in range(out.n)], type=pa.binary())
    return pa.table(columns)


def save_run(result: ScanResult, path: str | Path, model: bytes | None = None, vae: bytes | None = None,
             report: bool = True, embeddings_dtype: str = "float32") -> Path:
    """Write `result` as a run directory at `path`, replacing any run there, atomically.

    Args:
        result: the scan to store.
        path: the run directory; its parent folders are created.
        model, vae: the scanned model's and Defuse's VAE's files, as bytes (`model.checkpoint_bytes`).
        report: also render report.html.
        embeddings_dtype: "float32" (as searched; a hard link where the embeddings were read
            from a .npy file) or "float16" (half the bytes, about 3 significant digits).

    Raises:
        RunDirError: `path` is a file, or the folder cannot be written.
    """
    import pyarrow.parquet as pq

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"the output path {path} is a file; give a folder for the run")
    if embeddings_dtype not in EMBEDDING_DTYPES:
        raise SettingsError(f"embeddings_dtype must be one of {', '.join(EMBEDDING_DTYPES)}, not {embeddings_dtype!r}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; a run folder is an ordinary one
    except OSError as e:
        raise RunDirError(f"cannot create the run folder {path} ({e.strerror or e})") from e
    try:
        record = {
            "format": RUN_FORMAT,
            "source": result.outputs.source,
            "class_names": list(result.outputs.class_names),
            "config": result.config,
            "metrics": result.outputs.overview(),
            "modes": [_mode_dict(m) for m in result.modes],
            "analyses": result.analyses,
        }
        (tmp / SCAN_FILE).write_text(json.dumps(_jsonable(record), indent=1), encoding="utf-8")
        pq.write_table(_samples_table(result), tmp / SAMPLES_FILE)
        pq.write_table(_members_table(result.modes), tmp / MEMBERS_FILE)
        _store_embeddings(result, tmp / EMBEDDINGS_FILE, embeddings_dtype)
        for name, table in result.tables.items():
            np.savez_compressed(tmp / f"{TABLE_PREFIX}{name}.npz", **table)
        for name, content in ((MODEL_FILE, model), (VAE_FILE, vae)):
            if content is not None:
                (tmp / name).write_bytes(content)
        if report:
            from faultlines.report import render

            (tmp / REPORT_FILE).write_text(render(result), encoding="utf-8")
        _swap_into_place(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _store_embeddings(result: ScanResult, target: Path, dtype: str = "float32") -> None:
    """The embeddings as RUN/embeddings.npy: a hard link to the .npy they were read from when
    that file holds exactly them (float32, same shape; `config["data"]["embeddings_file"]`),
    else written out (in `dtype`, a chunk of rows at a time)."""
    emb = result.outputs.embeddings
    source = result.config.get("data", {}).get("embeddings_file")
    if dtype == "float16":
        out = np.lib.format.open_memmap(target, mode="w+", dtype=np.float16, shape=emb.shape)
        for part in row_chunks(len(emb)):
            out[part] = emb[part]
        out.flush()
        return
    if source:
        try:
            on_disk = np.load(source, mmap_mode="r", allow_pickle=False)
            if on_disk.dtype == np.float32 and on_disk.shape == emb.shape and np.array_equal(on_disk[[0, -1]], emb[[0, -1]]):
                os.link(source, target)
                return
        except (OSError, ValueError):
            pass  # another file system, or the file changed: write the embeddings out instead
    np.save(target, emb)


def _swap_into_place(tmp: Path, path: Path) -> None:
    if not path.exists():
        os.replace(tmp, path)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
    os.replace(path, old / "run")
    try:
        os.replace(tmp, path)
    except OSError:
        os.replace(old / "run", path)
        raise
    shutil.rmtree(old, ignore_errors=True)


def load_run(path: str | Path) -> ScanResult:
    """Read a run directory written by `save_run` back into a ScanResult."""
    import pyarrow.parquet as pq
    from PIL import Image

    path = Path(path)
    if not (path / SCAN_FILE).is_file():
        raise RunDirError(f"{path} is not a faultlines run (it has no scan.json); give the folder a scan wrote")
    try:
        record = json.loads((path / SCAN_FILE).read_text(encoding="utf-8"))
        table = pq.read_table(path / SAMPLES_FILE)
        members = pq.read_table(path / MEMBERS_FILE)
        embeddings = np.load(path / EMBEDDINGS_FILE, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, KeyError) as e:
        raise RunDirError(f"the run in {path} is incomplete or corrupt ({e}); scan again") from e
    if record.get("format") != RUN_FORMAT:
        raise RunDirError(f"{path} was written in format {record.get('format')!r}, not {RUN_FORMAT}")
    column = lambda name: table.column(name).to_numpy()  # noqa: E731
    probs = table.column("probs").combine_chunks()
    outputs = Outputs(
        labels=column("label").astype(np.int64),
        preds=column("pred").astype(np.int64),
        probs=probs.flatten().to_numpy().reshape(len(probs), -1).astype(np.float32),
        losses=column("loss").astype(np.float32),
        embeddings=embeddings,
        class_names=tuple(record["class_names"]),
        source=record["source"],
    )
    rows, weights = members.column("row").to_numpy(), members.column("weight").to_numpy()
    starts = np.concatenate([[0], np.cumsum([m["size"] for m in record["modes"]])])
    modes = [
        FailureMode(
            id=m["id"],
            method=m["method"],
            summary=m["summary"],
            members=rows[a:b].astype(np.int64),
            weights=weights[a:b].astype(np.float32) if m["weighted"] else None,
            source=m["source"],
            metrics=m["metrics"],
            evidence=m["evidence"],
        )
        for m, a, b in zip(record["modes"], starts[:-1], starts[1:], strict=True)
    ]
    previews: dict[int, Any] = {}
    if "preview_png" in table.column_names:
        for i, png in enumerate(table.column("preview_png").to_pylist()):
            if png is not None:
                previews[i] = np.asarray(Image.open(io.BytesIO(png)))
    texts = table.column("text").to_pylist() if "text" in table.column_names else None
    if texts is not None:
        previews |= {i: texts[i] for m in modes for i in m.evidence.get("typical", [])}
    tables = {}
    for f in sorted(path.glob(f"{TABLE_PREFIX}*.npz")):
        with np.load(f, allow_pickle=False) as arrays:
            tables[f.stem.removeprefix(TABLE_PREFIX)] = {k: arrays[k] for k in arrays.files}
    repairs = {}
    for name, (file, _) in REPAIRS.items():
        if (path / file).is_file():
            repairs[name] = json.loads((path / file).read_text(encoding="utf-8"))
    heldout = column("heldout").astype(bool) if "heldout" in table.column_names else None
    return ScanResult(outputs, modes, record["config"], previews, texts, tables, repairs, record.get("analyses", {}), heldout)


def _run_folder(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    if not (run_dir / SCAN_FILE).is_file():
        raise RunDirError(f"no run folder at {run_dir}; give the folder a scan wrote")
    return run_dir


def save_labels(run_dir: str | Path, record: dict[str, Any]) -> Path:
    """Write the region labels (`faultlines label`) into the run folder; the rest is untouched."""
    return write_file(_run_folder(run_dir) / LABELS_FILE, json.dumps(record, indent=1))


def load_labels(run_dir: str | Path) -> dict[str, Any]:
    """The stored region labels record; a RunDirError if there are none yet."""
    path = Path(run_dir) / LABELS_FILE
    if not path.is_file():
        raise RunDirError(f"{run_dir} has no labels yet; run `faultlines label {run_dir}` first")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RunDirError(f"cannot read {path} ({e}); label the regions again") from e


def save_region_grids(run_dir: str | Path, grids: Mapping[str, bytes]) -> dict[str, Path]:
    """PNG grids of region samples, one per region id, under RUN/regions/; returns their paths."""
    folder = _run_folder(run_dir) / GRIDS_DIR
    folder.mkdir(exist_ok=True)
    return {region: write_file(folder / f"{region}.png", png) for region, png in grids.items()}


def save_report(run_dir: str | Path, result: ScanResult) -> Path:
    """Render the run's report.html again (atomically)."""
    from faultlines.report import render

    return write_file(_run_folder(run_dir) / REPORT_FILE, render(result))


def save_repair(run_dir: str | Path, result: ScanResult, name: str, model: bytes, table: dict[str, Any]) -> Path:
    """Store a repair (`name` in REPAIRS): the corrected model, its before/after table, and the
    report again with the table in it. Returns the model's path."""
    run_dir = _run_folder(run_dir)
    table_file, model_file = REPAIRS[name]
    path = write_file(run_dir / model_file, model)
    write_file(run_dir / table_file, json.dumps(_jsonable(table), indent=1))
    result.repairs[name] = json.loads(json.dumps(_jsonable(table)))
    save_report(run_dir, result)
    return path

