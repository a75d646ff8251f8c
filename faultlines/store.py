"""The run directory, and the only code that writes one: written atomically, read back whole.

    RUN/scan.json         config, package versions, overview metrics, failure modes (their
                          members are in members.parquet)
    RUN/samples.parquet   one row per sample: label and prediction (ids and names), loss, probabilities,
                          the modes it belongs to, whether it was held out to confirm
                          them, its text, a PNG preview where shown, and the data's metadata
                          columns (their names in scan.json, "metadata")
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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from faultlines.arrays import mapped_file, row_chunks
from faultlines.atomic import deferred_interrupt, disk_error, lock, make_temporary, write_file, write_files
from faultlines.errors import RunDirError, SettingsError, first_line
from faultlines.images import png_bytes
from faultlines.types import FailureMode, Outputs, ScanResult, metadata_columns

RUN_FORMAT = "faultlines-run-1"
SCAN_FILE = "scan.json"
SAMPLES_FILE = "samples.parquet"
#: The columns samples.parquet may hold besides the data's metadata.
SAMPLES_COLUMNS = ["index", "label", "pred", "label_name", "pred_name", "correct", "loss", "probs", "modes", "heldout", "text", "preview_png"]
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
    columns = {"index": pa.array(np.arange(out.n))}
    if out.has_classes:
        columns |= {
            "label": pa.array(out.labels),
            "pred": pa.array(out.preds),
            "label_name": pa.DictionaryArray.from_arrays(pa.array(out.labels.astype(np.int32)), pa.array(out.class_names, pa.string())),
            "pred_name": pa.DictionaryArray.from_arrays(pa.array(out.preds.astype(np.int32)), pa.array(out.class_names, pa.string())),
        }
    columns |= {"correct": pa.array(out.correct), "loss": pa.array(out.losses)}
    if out.has_classes:
        columns["probs"] = pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(out.probs, np.float32).ravel()), out.num_classes)
    columns["modes"] = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(ids.tolist(), pa.string()))
    if result.heldout is not None:
        columns["heldout"] = pa.array(np.asarray(result.heldout, bool))
    if result.texts is not None:
        columns["text"] = pa.array(result.texts, type=pa.string())
    images = {i: p for i, p in result.previews.items() if isinstance(p, np.ndarray)}
    if images:
        columns["preview_png"] = pa.array([png_bytes(images[i]) if i in images else None for i in range(out.n)], type=pa.binary())
    for stored, name in metadata_columns(result.metadata, SAMPLES_COLUMNS):
        columns[stored] = result.metadata.column(name)
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
    with lock(path):
        tmp = make_temporary(path, "tmp", folder=True)
        try:
            record = {
                "format": RUN_FORMAT,
                "source": result.outputs.source,
                "class_names": list(result.outputs.class_names),
                # outputs without classes: what a failure is (the failures given, or a loss threshold)
                "outcome": None if result.outputs.has_classes else {"failed": result.outputs.failed is not None,
                                                                    "threshold": result.outputs.threshold},
                "config": result.config,
                "metrics": result.outputs.overview(),
                "modes": [_mode_dict(m) for m in result.modes],
                "analyses": result.analyses,
                "metadata": metadata_columns(result.metadata, SAMPLES_COLUMNS),
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
        except OSError as e:  # no space, no permission: one line, and nothing of the new run is left
            raise disk_error(path, e) from e
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def _store_embeddings(result: ScanResult, target: Path, dtype: str = "float32") -> None:
    """The embeddings as RUN/embeddings.npy: a hard link to the .npy file they are memory-mapped
    from (`arrays.mapped_file`: a folder of .npy read as a table, or the file a probe streamed
    them into), else written out (in `dtype`, a chunk of rows at a time). No path to that file
    is recorded: once linked, the run's own file is the only one the run needs."""
    emb = result.outputs.embeddings
    if dtype == "float16":
        out = np.lib.format.open_memmap(target, mode="w+", dtype=np.float16, shape=emb.shape)
        for part in row_chunks(len(emb)):
            out[part] = emb[part]
        out.flush()
        return
    source = mapped_file(emb) if emb.dtype == np.float32 else None
    if source is not None:
        try:
            os.link(source, target)
            return
        except OSError:
            pass  # another file system: write the embeddings out instead
    np.save(target, emb)


def _swap_into_place(tmp: Path, path: Path) -> None:
    """Rename the new run `tmp` to `path`, moving any earlier run aside first; Ctrl-C waits for
    both renames. Killed between them, the earlier run is in `.NAME.old-*/run`, and the next
    writer at `path` puts it back (`atomic.remove_leftovers`)."""
    if not path.exists():
        os.replace(tmp, path)
        return
    old = make_temporary(path, "old", folder=True)
    with deferred_interrupt():
        os.replace(path, old / "run")
        try:
            os.replace(tmp, path)
        except OSError:
            os.replace(old / "run", path)
            raise
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def _reading(file: Path) -> Iterator[None]:
    """Any failure to read or make sense of `file` as one line that names it."""
    try:
        yield
    except RunDirError:
        raise
    except Exception as e:  # a damaged file fails in as many ways as its readers have errors
        raise RunDirError(f"{file} is damaged or incomplete ({first_line(e)}); scan again to write the run anew") from e


def _format_version(record: Any, file: Path) -> None:
    found = record.get("format") if isinstance(record, dict) else None
    if found == RUN_FORMAT:
        return
    prefix, _, version = str(found).rpartition("-")
    if prefix == RUN_FORMAT.rpartition("-")[0] and version.isdigit():
        raise RunDirError(f"{file} was written by a newer faultlines (format {found}; this one reads {RUN_FORMAT}): "
                          "upgrade faultlines to read it")
    raise RunDirError(f"{file} is not a faultlines run record (format {found!r}, expected {RUN_FORMAT})")


def load_run(path: str | Path) -> ScanResult:
    """Read a run directory written by `save_run` back into a ScanResult.

    Raises:
        RunDirError: `path` is not a run, was written by a newer faultlines, or one of its
            files is missing or damaged (the message names the file).
    """
    import pyarrow.parquet as pq
    from PIL import Image

    path = Path(path)
    if not (path / SCAN_FILE).is_file():
        raise RunDirError(f"{path} is not a faultlines run (it has no scan.json); give the folder a scan wrote")
    for name in (SAMPLES_FILE, MEMBERS_FILE, EMBEDDINGS_FILE):
        if not (path / name).is_file():
            raise RunDirError(f"{path / name} is missing; the run is incomplete: scan again to write it anew")
    with _reading(path / SCAN_FILE):
        record = json.loads((path / SCAN_FILE).read_text(encoding="utf-8"))
    _format_version(record, path / SCAN_FILE)
    with _reading(path / SAMPLES_FILE):
        table = pq.read_table(path / SAMPLES_FILE)
        column = lambda name: table.column(name).to_numpy()  # noqa: E731
        losses = column("loss")
        classed = "probs" in table.column_names
        if classed:
            probs = table.column("probs").combine_chunks()
            labels, preds = column("label").astype(np.int64), column("pred").astype(np.int64)
            probs = probs.flatten().to_numpy().reshape(len(probs), -1).astype(np.float32)
        else:
            labels = preds = probs = None
            failed = ~column("correct").astype(bool)
        texts = table.column("text").to_pylist() if "text" in table.column_names else None
        heldout = column("heldout").astype(bool) if "heldout" in table.column_names else None
    with _reading(path / SCAN_FILE):
        stored = [(str(a), str(b)) for a, b in record.get("metadata") or []]
    with _reading(path / SAMPLES_FILE):
        metadata = table.select([a for a, _ in stored]).rename_columns([b for _, b in stored]) if stored else None
        previews: dict[int, Any] = {}
        if "preview_png" in table.column_names:
            for i, png in enumerate(table.column("preview_png").to_pylist()):
                if png is not None:
                    previews[i] = np.asarray(Image.open(io.BytesIO(png)))
    with _reading(path / EMBEDDINGS_FILE):
        embeddings = np.load(path / EMBEDDINGS_FILE, mmap_mode="r", allow_pickle=False)
        if embeddings.ndim != 2 or len(embeddings) != len(losses):
            raise ValueError(f"it holds an array of shape {embeddings.shape}, not one row for each of the {len(losses)} samples")
    with _reading(path / SCAN_FILE):
        outcome = record.get("outcome") or {}
        outputs = Outputs(
            labels=labels,
            preds=preds,
            probs=probs,
            losses=losses.astype(np.float32),
            embeddings=embeddings,
            class_names=tuple(str(c) for c in record["class_names"]),
            source=str(record["source"]),
            failed=failed if not classed and outcome.get("failed") else None,
            threshold=None if classed or outcome.get("threshold") is None else float(outcome["threshold"]),
        )
        sizes = [int(m["size"]) for m in record["modes"]]
    with _reading(path / MEMBERS_FILE):
        members = pq.read_table(path / MEMBERS_FILE)
        rows, weights = members.column("row").to_numpy(), members.column("weight").to_numpy()
        if len(rows) != sum(sizes):
            raise ValueError(f"its {len(rows)} rows do not match the {sum(sizes)} members of {len(sizes)} modes in {SCAN_FILE}")
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    with _reading(path / SCAN_FILE):
        modes = [
            FailureMode(
                id=str(m["id"]),
                method=str(m["method"]),
                summary=str(m["summary"]),
                members=rows[a:b].astype(np.int64),
                weights=weights[a:b].astype(np.float32) if m["weighted"] else None,
                source=str(m["source"]),
                metrics=dict(m["metrics"]),
                evidence=dict(m["evidence"]),
            )
            for m, a, b in zip(record["modes"], starts[:-1], starts[1:], strict=True)
        ]
    with _reading(path / MEMBERS_FILE):
        for mode in modes:  # members of other tables (Defuse's generated samples) index those
            if mode.source == outputs.source and len(mode.members) and not 0 <= mode.members.min() <= mode.members.max() < outputs.n:
                raise ValueError(f"mode {mode.id} lists rows outside the {outputs.n} samples")
    with _reading(path / SCAN_FILE):
        if texts is not None:
            previews |= {int(i): texts[int(i)] for m in modes for i in m.evidence.get("typical", [])}
        config, analyses = dict(record["config"]), dict(record.get("analyses", {}))
    tables = {}
    for f in sorted(path.glob(f"{TABLE_PREFIX}*.npz")):
        with _reading(f), np.load(f, allow_pickle=False) as arrays:
            tables[f.stem.removeprefix(TABLE_PREFIX)] = {k: arrays[k] for k in arrays.files}
    repairs = {}
    for name, (file, _) in REPAIRS.items():
        if (path / file).is_file():
            with _reading(path / file):
                repairs[name] = dict(json.loads((path / file).read_text(encoding="utf-8")))
    return ScanResult(outputs, modes, config, previews, texts, tables, repairs, analyses, heldout, metadata)


def run_folder(run_dir: str | Path) -> Path:
    """`run_dir` as a Path, checked to be a run folder (a RunDirError if it holds no scan.json)."""
    run_dir = Path(run_dir)
    if not (run_dir / SCAN_FILE).is_file():
        raise RunDirError(f"no run folder at {run_dir}; give the folder a scan wrote")
    return run_dir


def save_labels(run_dir: str | Path, record: dict[str, Any]) -> Path:
    """Write the region labels (`faultlines label`) into the run folder; the rest is untouched."""
    run_dir = run_folder(run_dir)
    with lock(run_dir):
        return write_file(run_dir / LABELS_FILE, json.dumps(record, indent=1))


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
    folder = run_folder(run_dir) / GRIDS_DIR
    with lock(folder.parent):
        try:
            folder.mkdir(exist_ok=True)
        except OSError as e:
            raise disk_error(folder, e) from e
        paths = write_files({folder / f"{region}.png": png for region, png in grids.items()})
    return dict(zip(grids, paths, strict=True))


def save_report(run_dir: str | Path, result: ScanResult) -> Path:
    """Render the run's report.html again (atomically)."""
    from faultlines.report import render

    run_dir = run_folder(run_dir)
    page = render(result)
    with lock(run_dir):
        return write_file(run_dir / REPORT_FILE, page)


def save_repair(run_dir: str | Path, result: ScanResult, name: str, model: bytes, table: dict[str, Any]) -> Path:
    """Store a repair (`name` in REPAIRS): the corrected model, its before/after table, and the
    report again with the table in it, all three or none. Returns the model's path."""
    from faultlines.report import render

    run_dir = run_folder(run_dir)
    table_file, model_file = REPAIRS[name]
    record = json.loads(json.dumps(_jsonable(table)))
    before = result.repairs.get(name)
    result.repairs[name] = record
    try:
        page = render(result)
        with lock(run_dir):
            write_files({run_dir / model_file: model, run_dir / table_file: json.dumps(record, indent=1), run_dir / REPORT_FILE: page})
    except BaseException:
        if before is None:
            result.repairs.pop(name, None)
        else:
            result.repairs[name] = before
        raise
    return run_dir / model_file
