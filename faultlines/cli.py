"""The `faultlines` command: demo, scan, report.

Bad input ends a command with one line on stderr ("error: ...") and exit code 2; status
and progress go to stderr, and what a command produces (the summary, the report path) to stdout.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import typer

from faultlines.atomic import lock, make_temporary
from faultlines.errors import INTERRUPTED, DataError, exit_interrupted, FaultlinesError, InputWarning, ModelError, RunDirError, SettingsError
from faultlines.types import ScanResult

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Find, explain and fix the systematic errors of trained classifiers.",
)

F = TypeVar("F", bound=Callable)

Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or status lines.")]
Seed = Annotated[int, typer.Option(help="Seed for every random choice; the same seed gives the same modes.")]
Size = Annotated[float | None, typer.Option(help="Least size of a spotlight: a fraction of the samples (< 1) or a count. Default: 5% of the rows, at most 100.")]
Spotlights = Annotated[int, typer.Option("--spotlights", help="How many spotlights to find.")]
Finders = Annotated[str, typer.Option(help="Comma-separated finders: spotlight, error-mixture, defuse, density, perturb; or all (every finder the inputs allow).")]
Density = Annotated[bool, typer.Option("--density", help="Add the density finder (the same as naming it in --finders).")]
Confirm = Annotated[float | None, typer.Option(help="Share of the rows held out to confirm the modes of finders that choose by errors (spotlight, error-mixture); 0: off. Default 0.5 from 200 rows on.")]
Alpha = Annotated[float, typer.Option(help="Significance level: a mode is significant when its q-value (Benjamini-Hochberg) is at most this.")]
ShowAll = Annotated[bool, typer.Option("--show-all", help="Print every mode's summary, not only the significant ones'.")]


def _finder_spec(finders: str, density: bool) -> str:
    """--finders, with density added by --density."""
    from faultlines.registry import finder_names

    names = finder_names(finders)
    if density and "density" not in names:
        names.append("density")
    return "all" if finders.strip() == "all" else ",".join(names)


def _finders(spec: str, seed: int, quiet: bool, size: float | None, spotlights: int, vae_epochs: int = 80) -> list:
    """The finders named by `spec`, each given the command's settings it takes (checked now, before any work)."""
    from faultlines.registry import build

    return build(spec, seed=seed, quiet=quiet, size=size, n_spotlights=spotlights, vae_epochs=vae_epochs)


def _named(finders: list, name: str):
    return next((f for f in finders if f.name == name), None)


def _fail(message: str) -> NoReturn:
    sys.stderr.write("error: " + " ".join(message.split()) + "\n")
    raise typer.Exit(2)


#: whether `main` runs the command line as this whole process (not typer's test runner)
_whole_process = False


def _load_torch_holding_ctrl_c() -> None:
    """Import torch with SIGINT held back. torch's C++ start-up calls back into Python, and a
    KeyboardInterrupt raised inside such a callback ends the process with a C++ abort
    ("terminate called after throwing ... KeyboardInterrupt", exit -6) instead of one line and
    exit 130. A Ctrl-C pressed while torch loads is delivered as soon as it has loaded."""
    if "torch" in sys.modules or not hasattr(signal, "pthread_sigmask"):
        return
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        import torch  # noqa: F401
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _one_line_errors(command: F) -> F:
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            if _whole_process:
                _load_torch_holding_ctrl_c()
            result = command(*args, **kwargs)
            if _whole_process:  # done, its files written: Ctrl-C from here on changes nothing
                signal.signal(signal.SIGINT, signal.SIG_IGN)
            return result
        except FaultlinesError as e:
            _fail(str(e))
        except OSError as e:  # the machine, not the input: a full disk, a folder without permission
            where = f" ({e.filename})" if e.filename else ""
            _fail(f"{e.strerror or e}{where}; free some space, or use a folder you can write to")
        except (KeyboardInterrupt, typer.Abort):  # Abort: Ctrl-C at a prompt (`label --interactive`)
            # every write is atomic and temporary files are removed on the way out
            if _whole_process:
                exit_interrupted()
            sys.stderr.write(INTERRUPTED)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _status(message: str, quiet: bool) -> None:
    if not quiet:
        from faultlines.progress import console

        console.print(message, highlight=False)


def _page_size(path: Path) -> str:
    """The report's path and size, as the command prints it."""
    return f"{path} ({path.stat().st_size / 1e6:.1f} MB)"


def _writable_run_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise RunDirError(f"the output path {out} is a file; give a folder for the run")


def _save(result: ScanResult, out: Path, finders: list, model: bytes | None, show_all: bool = False,
          embeddings_dtype: str = "float32", quiet: bool = False) -> None:
    """Write the run folder (with the model and the VAE Defuse searched) and print what was found:
    the significant modes first (by q-value), each with its measurement; the others marked, and
    their summaries only with `show_all`."""
    from faultlines.model import checkpoint_bytes
    from faultlines.progress import stage
    from faultlines.significance import ranked, significant
    from faultlines.store import save_run

    defuse = _named(finders, "defuse")
    vae = checkpoint_bytes(defuse.vae_) if defuse is not None and hasattr(defuse, "vae_") else None
    with stage("writing the run folder and report", quiet):
        save_run(result, out, model=model, vae=vae, embeddings_dtype=embeddings_dtype)
    o = result.outputs
    confirm = result.config.get("confirm", {})
    order = ranked(result.modes)
    kept = [m for m in order if significant(m)]
    held = f", {confirm['heldout_rows']} rows held out to confirm them" if confirm.get("heldout_rows") else ""
    typer.echo(f"{o.headline()} on {o.n} {o.source} samples; {len(result.modes)} failure modes, "
               f"{len(kept)} significant at alpha {confirm.get('alpha', 0.05):g}{held}:")
    for mode in order if show_all else kept:
        typer.echo(f"  {mode.id}{'' if significant(mode) else ' (not significant)'}: {mode.summary}")
        typer.echo(f"      {mode.evidence.get('significance', {}).get('sentence', '')}")
    rest = [m.id for m in result.modes if not significant(m)]
    if rest and not show_all:
        typer.echo(f"  not significant (--show-all to list them; all are in the report and scan.json): {', '.join(rest)}")
    spot = result.analyses.get("spotlight")
    if spot and spot["kept"] < spot["asked"]:
        typer.echo(f"  spotlight: {spot['kept']} of {spot['asked']} searches found a new region with errors above the rest's")
    for name, reason in result.config.get("skipped", {}).items():
        typer.echo(f"  skipped {name}: {reason}")
    typer.echo(f"report: {_page_size(out / 'report.html')}")


@app.command()
@_one_line_errors
def demo(
    out: Annotated[Path, typer.Option(help="Run folder to write.")] = Path("faultlines-demo"),
    size: Size = None,
    spotlights: Spotlights = 5,
    finders: Finders = "spotlight",
    density: Density = False,
    confirm: Confirm = None,
    alpha: Alpha = 0.05,
    show_all: ShowAll = False,
    seed: Seed = 0,
    quiet: Quiet = False,
) -> None:
    """Train a small CNN on scikit-learn's digits, scan its test split, write the report."""
    from faultlines.report.html import check_templates

    _writable_run_dir(out)
    check_templates()  # a broken install is one line now, not after minutes of work
    spec = _finder_spec(finders, density)
    found = _finders(spec, seed, quiet, size, spotlights)
    with lock(out):  # one writer per run folder, from start to end
        _demo(out, spec, found, confirm, alpha, show_all, seed, quiet)


def _demo(out: Path, spec: str, found: list, confirm: float | None, alpha: float, show_all: bool, seed: int, quiet: bool) -> None:
    from faultlines.data.digits import CLASS_NAMES, digits
    from faultlines.generative import VAE
    from faultlines.model import Classifier, checkpoint_bytes, expectation
    from faultlines.probe import probe
    from faultlines.progress import stage
    from faultlines.scan import scan
    from faultlines.train import train_small_cnn

    splits = digits(seed=seed)
    _status(f"training SmallCNN on {len(splits.train)} digits (16x16), validating on {len(splits.val)}", quiet)
    with stage("training the model", quiet):
        model = train_small_cnn(splits.train, splits.val, seed=seed, quiet=quiet)
    clf = Classifier(model, class_names=CLASS_NAMES)
    defuse = _named(found, "defuse")
    if defuse is not None:  # the VAE learns the training digits, as the paper's does
        _status(f"training a VAE on {len(splits.train)} digits ({defuse.vae_epochs} epochs)", quiet)
        with stage("training the VAE", quiet):
            defuse.set_params(vae=VAE().fit(splits.train, epochs=defuse.vae_epochs, seed=seed, quiet=quiet))
    _status(f"scanning {len(splits.test)} test digits with {', '.join(f.name for f in found)}", quiet)
    result = scan(clf, splits, found, strict=spec != "all", confirm=confirm, alpha=alpha, quiet=quiet, seed=seed)
    result.config["data"] |= {"spec": "digits"}
    expected = expectation(probe(clf, splits.val, quiet=True))  # kept in the checkpoint for later scans' input check
    _save(result, out, found, checkpoint_bytes(model, CLASS_NAMES, expected), show_all, quiet=quiet)


@app.command("scan")
@_one_line_errors
def scan_command(
    data: Annotated[str, typer.Option(help="Data: a .npz (x, y), an image folder, an embedding table (.parquet, or a folder of .npy), or 'digits'.")],
    out: Annotated[Path, typer.Option(help="Run folder to write.")],
    model: Annotated[Path | None, typer.Option(help="Model file: TorchScript, a torch.export program (.pt2), a faultlines checkpoint, a state dict with --factory, a scikit-learn classifier saved with skops (.skops), or an ONNX model (.onnx). Not needed for an embedding table.")] = None,
    layer: Annotated[str | None, typer.Option(help="Layer whose output is the embedding (default: input of the last nn.Linear); for an ONNX model, the name of an intermediate tensor (default: its inputs).")] = None,
    factory: Annotated[str | None, typer.Option(help="package.module:callable that builds the model, for a state-dict file.")] = None,
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle", help="Allow a pickled model file. Unpickling can run arbitrary code: only for files you trust.")] = False,
    finders: Finders = "spotlight",
    size: Size = None,
    spotlights: Spotlights = 5,
    vae: Annotated[Path | None, typer.Option(help="For defuse: a saved faultlines VAE (default: train one on --data).")] = None,
    vae_epochs: Annotated[int, typer.Option(help="For defuse: epochs to train its VAE when none is given.")] = 80,
    object_mask: Annotated[Path | None, typer.Option(help="For perturb: a .npy (H, W) 0/1 mask of where the object is; regions outside it count as carrying none of it.")] = None,
    density: Density = False,
    train: Annotated[str | None, typer.Option(help="The model's training data (as for --data), for density; kept for `faultlines fix`.")] = None,
    val: Annotated[str | None, typer.Option(help="Held-out data (as for --data), for density's early stopping and calibration; kept for `faultlines fix`.")] = None,
    batch_size: Annotated[int, typer.Option(help="Samples per forward pass.")] = 256,
    device: Annotated[str | None, typer.Option(help="Where the model runs: cpu, cuda, cuda:N or mps. Default: the best available.")] = None,
    num_workers: Annotated[int, typer.Option(help="Processes that load batches of a torch Dataset (0: this process).")] = 0,
    amp: Annotated[bool, typer.Option("--amp", help="Run the model in float16 autocast (CUDA only).")] = False,
    engine: Annotated[str, typer.Option(help="Where the probe runs: local, or ray (Ray Data batch inference; pip install 'faultlines[ray]').")] = "local",
    ray_address: Annotated[str | None, typer.Option(help="With --engine ray: the cluster to join (e.g. auto, ray://host:10001); default: a local Ray instance.")] = None,
    embeddings_dtype: Annotated[str, typer.Option(help="How the run folder stores the embeddings: float32 (linked to yours where it can) or float16 (half the bytes).")] = "float32",
    preprocess: Annotated[str | None, typer.Option(help="What the model expects done to its inputs: a preset (imagenet, cifar10, mnist, symmetric) and/or mean=M1,M2,M3 std=S1,S2,S3 resize=H,W (an image folder is read at that size).")] = None,
    check_inputs: Annotated[bool, typer.Option("--check-inputs/--no-check-inputs", help="Warn when the model does much better on the first inputs rescaled (they may be scaled differently from training).")] = True,
    strict: Annotated[bool, typer.Option("--strict", help="Refuse (exit 2) instead of warning when the inputs look wrong: scaled differently from training, or labels and probability columns in different class orders.")] = False,
    label_col: Annotated[str, typer.Option(help="Embedding table (.parquet): the column of labels (class ids, or class names of any type).")] = "label",
    embedding_col: Annotated[str, typer.Option(help="Embedding table (.parquet): the column of embeddings (lists of numbers).")] = "embedding",
    probs_col: Annotated[str, typer.Option(help="Embedding table (.parquet): the column of predicted probabilities (lists of numbers).")] = "probs",
    text_col: Annotated[str, typer.Option(help="Embedding table (.parquet): the column of texts, if any (embedded with MiniLM where there is no embedding column). Every other column is kept as metadata.")] = "text",
    loss_col: Annotated[str, typer.Option(help="Table of a model without classes: the column of per-row losses (lower is better).")] = "loss",
    score_col: Annotated[str, typer.Option(help="Table of a model without classes: the column of per-row scores (say which way with --higher-is-better or --lower-is-better).")] = "score",
    passed_col: Annotated[str, typer.Option(help="Table of a model without classes: the column saying whether each row passed (true/false, 0/1, pass/fail).")] = "passed",
    failed_col: Annotated[str, typer.Option(help="Table of a model without classes: the column saying whether each row failed.")] = "failed",
    higher_is_better: Annotated[bool | None, typer.Option("--higher-is-better/--lower-is-better", help="Which way the score column goes (never guessed).", show_default=False)] = None,
    loss_threshold: Annotated[float | None, typer.Option(help="Table of losses without a pass/fail column: a row fails where its loss is above this (default: above the median loss).")] = None,
    class_names: Annotated[str | None, typer.Option(help="Comma-separated class names, one per class id (for a table: in the order of its probabilities).")] = None,
    confirm: Confirm = None,
    alpha: Alpha = 0.05,
    show_all: ShowAll = False,
    seed: Seed = 0,
    quiet: Quiet = False,
) -> None:
    """Scan a model on data for failure modes and write a run folder with its report."""
    from faultlines.data.files import COLUMNS, load, load_mask
    from faultlines.data.sources import EmbeddingTable
    from faultlines.generative import VAE
    from faultlines.model import Classifier, Estimator, OnnxModel, load_module, resolve_device
    from faultlines.preprocess import Preprocess
    from faultlines.report.html import check_templates
    from faultlines.scan import ENGINES, scan
    from faultlines.store import EMBEDDING_DTYPES

    _writable_run_dir(out)
    check_templates()  # a broken install is one line now, not after minutes of work
    steps = Preprocess.parse(preprocess) if preprocess is not None else None
    if steps is not None and model is None:
        raise SettingsError("--preprocess is for the model's inputs; an embedding table needs no model")
    given = {"embedding": embedding_col, "label": label_col, "probs": probs_col, "text": text_col, "loss": loss_col,
             "score": score_col, "passed": passed_col, "failed": failed_col}
    columns = {role: name for role, name in given.items() if name != COLUMNS[role]}
    names = [n.strip() for n in class_names.split(",")] if class_names is not None else None
    read = lambda spec: load(spec, columns=columns, class_names=names, size=steps.resize if steps else None,  # noqa: E731
                             higher_is_better=higher_is_better, threshold=loss_threshold, quiet=quiet)
    spec = _finder_spec(finders, density)
    found = _finders(spec, seed, quiet, size, spotlights, vae_epochs)
    if engine not in ENGINES:
        raise SettingsError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if embeddings_dtype not in EMBEDDING_DTYPES:
        raise SettingsError(f"--embeddings-dtype must be one of {', '.join(EMBEDDING_DTYPES)}, not {embeddings_dtype!r}")
    if ray_address is not None and engine != "ray":
        raise SettingsError("--ray-address is for --engine ray")
    if engine == "ray":
        from faultlines.distributed import _ray

        _ray()  # a missing extra is a one-line error before any work
    device = resolve_device(device)
    if amp and device.type != "cuda":
        raise SettingsError(f"--amp (mixed precision) is for a CUDA device; the model would run on {device.type}")
    with lock(out):  # one writer per run folder, from loading the model to the last file
        clf = (Classifier.load(model, factory=factory, trust_pickle=trust_pickle, layer=layer, device=device, preprocess=steps)
               if model is not None else None)
        if clf is not None and names is not None:
            clf.class_names = None  # the names given on the command line win over the model file's
        source = read(data)
        if clf is None and not isinstance(source, EmbeddingTable):
            raise ModelError(f"{data} holds inputs, not embeddings: give the model that classifies them with --model")
        train = train or ("digits:train" if data == "digits" else None)
        val = val or ("digits:val" if data == "digits" else None)
        for option, value, name in (("--vae", vae, "defuse"), ("--object-mask", object_mask, "perturb")):
            if value is not None and _named(found, name) is None:
                raise SettingsError(f"{option} is for the {name} finder; add it to --finders")
        defuse, probe_finder = _named(found, "defuse"), _named(found, "perturb")
        if vae is not None:
            module, _ = load_module(vae)
            if not isinstance(module, VAE):
                raise ModelError(f"{vae} holds a {type(module).__name__}, not a faultlines VAE")
            defuse.set_params(vae=module)
        if object_mask is not None:
            if isinstance(source, EmbeddingTable):
                raise SettingsError("--object-mask is for image data; an embedding table has no images")
            probe_finder.set_params(object_mask=load_mask(object_mask, tuple(source.sample_shape()[-2:])))
        # the probed embeddings stream to a folder beside the run, on its file system (the run
        # folder links the file), removed however the command ends; a killed scan's is removed
        # by the next writer at `out` (`atomic.remove_leftovers`)
        spill = None if clf is None or isinstance(source, EmbeddingTable) else make_temporary(out, "probe", folder=True)
        try:
            with warnings.catch_warnings():
                if strict:
                    warnings.simplefilter("error", InputWarning)
                try:
                    result = scan(clf, source, found, train=read(train) if train else None, val=read(val) if val else None,
                                  strict=spec != "all", confirm=confirm, alpha=alpha, batch_size=batch_size, num_workers=num_workers,
                                  check_inputs=check_inputs, amp=amp, engine=engine, ray_address=ray_address,
                                  embeddings_file=None if spill is None else spill / "embeddings.npy", quiet=quiet, seed=seed)
                except InputWarning as e:
                    raise DataError(f"{' '.join(str(e).split())} (refused: --strict)") from e
            result.config["data"] |= {"spec": _absolute(data), "train": _absolute(train), "val": _absolute(val), "columns": columns,
                                      "class_names": names}
            if result.config["model"] is not None:
                result.config["model"] |= {"factory": factory, "layer": layer, "device": str(device)}
            # a scikit-learn or ONNX model is not kept: the repairs (`faultlines fix`) fine-tune torch models only
            kept = model.read_bytes() if model is not None and not isinstance(clf.module, (Estimator, OnnxModel)) else None
            _save(result, out, found, kept, show_all, embeddings_dtype, quiet)
        finally:
            if spill is not None:
                shutil.rmtree(spill, ignore_errors=True)


def _absolute(spec: str | None) -> str | None:
    """A data spec as the run records it: a path as an absolute one (`faultlines fix` reads it
    from any folder), anything else ("digits:train") as given."""
    from faultlines.data.files import DIGITS_SPECS

    return str(Path(spec).resolve()) if spec is not None and spec not in DIGITS_SPECS and Path(spec).exists() else spec


@app.command()
@_one_line_errors
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `faultlines scan` or `faultlines demo`.")],
    out: Annotated[Path | None, typer.Option(help="Where to write the page (default RUN_DIR/report.html).")] = None,
    quiet: Quiet = False,
    seed: Annotated[int | None, typer.Option(help="Seed of the embedding map's subsample (default: the run's seed).")] = None,
) -> None:
    """Render the HTML report of a run folder again."""
    from faultlines import store
    from faultlines.report import report as write_report

    result = store.load_run(run_dir)
    if seed is not None:
        result.config["seed"] = seed
    path = write_report(result, out) if out is not None else store.save_report(run_dir, result)
    _status(f"rendered {len(result.modes)} failure modes", quiet)
    typer.echo(f"report: {_page_size(path)}")


@app.command()
@_one_line_errors
def label(
    run_dir: Annotated[Path, typer.Argument(help="A run folder with Defuse regions.")],
    labels: Annotated[Path | None, typer.Option(help="CSV with columns region,label (a class name or 'skip').")] = None,
    interactive: Annotated[bool, typer.Option("--interactive", help="Ask for each region's class at the terminal.")] = False,
    auto: Annotated[bool, typer.Option("--auto", help="Label each region with the majority seed label of the hits around it (its mixture component).")] = False,
    agreement: Annotated[float, typer.Option(help="With --auto: share of those hits whose seeds must agree, else skip.")] = 0.8,
    quiet: Quiet = False,
    seed: Seed = 0,
) -> None:
    """Give each Defuse region the class its samples truly show (or 'skip'); stored as RUN_DIR/labels.json."""
    from faultlines import store
    from faultlines.images import png_bytes, tile
    from faultlines.repair import labels as region_labels

    if sum([labels is not None, interactive, auto]) != 1:
        raise SettingsError("give exactly one of --labels CSV, --interactive or --auto")
    with lock(store.run_folder(run_dir)):  # no scan may replace the run while its regions are labelled
        result = store.load_run(run_dir)
        found = region_labels.regions(result)
        if not found:
            raise RunDirError(f"{run_dir} has no Defuse regions to label; scan with --finders defuse")
        if labels is not None:
            chosen, how = region_labels.read_csv(labels, result), "csv"
        elif auto:
            chosen, how = region_labels.from_seeds(result, agreement), "auto"
        else:
            table = result.tables["generated"]
            grids = store.save_region_grids(run_dir, {region: png_bytes(tile(table["images"][evidence["typical"]], columns=8), scale=6)
                                                      for region, evidence in found.items()})
            chosen, how = region_labels.prompt(result, grids, ask=lambda q: typer.prompt(q, prompt_suffix=""), say=typer.echo), "prompt"
        path = store.save_labels(run_dir, region_labels.to_record(chosen, result, how))
        named = sum(v is not None for v in chosen.values())
        typer.echo(f"labelled {named} of {len(found)} regions ({len(chosen) - named} skipped): {path}")
        if not named:
            typer.echo("nothing for `faultlines fix` to correct: label regions from the report's grids "
                       "(--labels CSV or --interactive)" + (", or lower --agreement" if auto else ""))


def _fix_data(result: ScanResult, train: str | None, val: str | None):
    """Training, validation and test data for a repair: --train and --val, else the ones the
    scan recorded (the digits splits of the run's seed for the demo), with the run's own data
    as the test set."""
    from faultlines.data.digits import digits
    from faultlines.data.files import load

    recorded = result.config.get("data", {})
    spec = recorded.get("spec")
    steps = _recorded_preprocess(result)
    resize = steps.resize if steps is not None else None
    read = lambda path: load(path, columns=recorded.get("columns") or None, class_names=recorded.get("class_names"), size=resize)  # noqa: E731
    if spec == "digits" and not recorded.get("train"):  # the demo: the digits split by the run's seed
        splits = digits(seed=result.config.get("seed", 0))
        return (read(train) if train else splits.train), (read(val) if val else splits.val), splits.test
    train, val = train or recorded.get("train"), val or recorded.get("val")
    if train is None or val is None or spec is None:
        raise SettingsError("give the model's training and validation data: --train PATH --val PATH")
    return read(train), read(val), read(spec)


def _recorded_preprocess(result: ScanResult):
    """The `Preprocess` the run's model was scanned with (None without one); a RunDirError for a
    preprocessing function, which a run folder cannot keep."""
    from faultlines.preprocess import Preprocess

    spec = (result.config.get("model") or {}).get("preprocess")
    if spec is None:
        return None
    if str(spec).startswith("callable"):
        raise RunDirError("the run's model was scanned with a preprocessing function, which a run folder cannot keep; "
                          "scan with --preprocess (a spec) to correct it here, or retrain it in Python")
    return Preprocess.parse(spec)


def _weights(lambdas: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in lambdas.split(","))
    except ValueError as e:
        raise SettingsError(f"--lambdas must be numbers separated by commas, not {lambdas!r}") from e


@app.command()
@_one_line_errors
def fix(
    run_dir: Annotated[Path, typer.Argument(help="A labelled run folder (see `faultlines label`), or with --xbl a run with flagged regions.")],
    xbl: Annotated[bool, typer.Option("--xbl", help="Explanation-based learning: retrain so the model stops using the flagged regions (or --mask).")] = False,
    mask: Annotated[Path | None, typer.Option(help="With --xbl: a .npy (H, W) 0/1 mask of the pixels to unlearn, instead of the flagged regions.")] = None,
    train: Annotated[str | None, typer.Option(help="Training data (as for scan --data); default: the digits when the run scanned them.")] = None,
    val: Annotated[str | None, typer.Option(help="Validation data for choosing lambda; default: the digits' validation split.")] = None,
    lambdas: Annotated[str | None, typer.Option(help="Comma-separated weights of the region loss (default 0.1,0.3,1,3) or, with --xbl, of the explanation penalty (default 0.1,1,10).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs per lambda: fine-tuning (default 10) or, with --xbl, retraining (default 30).")] = None,
    seed: Seed = 0,
    quiet: Quiet = False,
) -> None:
    """Correct the run's model: fine-tune on its labelled Defuse regions, or with --xbl unlearn its flagged image regions; write the model and a before/after table."""
    from faultlines import store
    from faultlines.model import checkpoint_bytes, load_module
    from faultlines.preprocess import Preprocessed

    with lock(store.run_folder(run_dir)):  # no scan may replace the run while its model is corrected
        result = store.load_run(run_dir)
        if mask is not None and not xbl:
            raise SettingsError("--mask is for --xbl")
        if not (run_dir / store.MODEL_FILE).is_file():
            raise RunDirError(f"{run_dir} keeps no {store.MODEL_FILE} to correct; scan with --model")
        # unset settings are left to the repair's own defaults
        settings = {k: v for k, v in (("lambdas", None if lambdas is None else _weights(lambdas)), ("epochs", epochs)) if v is not None}
        fixing = _fix_xbl if xbl else _fix_defuse
        module, _ = load_module(run_dir / store.MODEL_FILE, factory=(result.config.get("model") or {}).get("factory"))
        steps = _recorded_preprocess(result)
        if steps is not None:  # retrained as it was scanned: on preprocessed inputs
            module = Preprocessed(steps, module)
        name, fixed, table = fixing(run_dir, result, module, mask, train, val, settings, seed, quiet)
        fixed = fixed.module if isinstance(fixed, Preprocessed) else fixed
        path = store.save_repair(run_dir, result, name, checkpoint_bytes(fixed, result.outputs.class_names), table)
        typer.echo(f"model: {path}")


def _fix_defuse(run_dir: Path, result: ScanResult, module, mask, train, val, settings: dict, seed: int, quiet: bool):
    from faultlines import store
    from faultlines.repair import labels as region_labels
    from faultlines.repair.finetune import finetune, region_samples

    chosen = region_labels.from_record(store.load_labels(run_dir), result, str(run_dir / store.LABELS_FILE))
    train_data, val_data, test_data = _fix_data(result, train, val)
    index = {evidence["region"]: chosen.get(region) for region, evidence in region_labels.regions(result).items()}
    samples = region_samples(result.tables["generated"], index)
    _status(f"fine-tuning on {len(train_data)} training samples and {len(samples.y['train'])} labelled region samples", quiet)
    fixed = finetune(module, train_data, val_data, test_data, samples, seed=seed, quiet=quiet, **settings)
    names = result.outputs.class_names
    table = {"lambda": fixed.lam, "sweep": fixed.sweep, "before": fixed.before, "after": fixed.after,
             "labelled_regions": sum(v is not None for v in index.values()),
             "labels": {str(k): names[v] for k, v in index.items() if v is not None}}
    b, a = fixed.before, fixed.after
    typer.echo(f"lambda {fixed.lam:g}: test accuracy {b['test_accuracy']:.4f} -> {a['test_accuracy']:.4f}; "
               f"held-out region accuracy {b['heldout_region_accuracy']:.4f} -> {a['heldout_region_accuracy']:.4f}")
    return "defuse", fixed.module, table


def _fix_xbl(run_dir: Path, result: ScanResult, module, mask_file: Path | None, train, val, settings: dict, seed: int, quiet: bool):
    import numpy as np

    from faultlines.data.files import load_mask
    from faultlines.repair.xbl import xbl

    train_data, val_data, test_data = _fix_data(result, train, val)
    shape = test_data.sample_shape()
    if len(shape) != 3:
        raise DataError(f"--xbl needs image data (N, C, H, W); the run's data has inputs of shape {shape}")
    if mask_file is not None:
        mask, where = load_mask(mask_file, tuple(shape[-2:])), str(mask_file)
    else:
        flagged = [np.array(m.evidence["mask"], bool) for m in result.modes if m.method == "perturb"]
        if not flagged:
            if "perturb" in result.analyses:
                raise RunDirError(f"the perturbation probe flagged no region in {run_dir}; give --mask FILE to unlearn a region of your choice")
            raise RunDirError(f"{run_dir} has no flagged regions to unlearn; scan with --finders perturb, or give --mask FILE")
        mask, where = np.any(flagged, axis=0), f"{len(flagged)} flagged region(s)"
    _status(f"retraining with the explanation penalty on {int(mask.sum())} pixels ({where})", quiet)
    fixed = xbl(module, train_data, val_data, test_data, mask, seed=seed, quiet=quiet, **settings)
    table = {"lambda": fixed.lam, "sweep": fixed.sweep, "models": fixed.table, "mask_from": where, "mask": mask.tolist()}
    t = fixed.table
    typer.echo(f"lambda {fixed.lam:g}: test accuracy {t['original']['test_accuracy']:.4f} -> {t['xbl']['test_accuracy']:.4f} "
               f"(occlusion retraining {t['occlusion']['test_accuracy']:.4f}); with the region swapped "
               f"{t['original']['swapped_accuracy']:.4f} -> {t['xbl']['swapped_accuracy']:.4f}")
    return "xbl", fixed.module, table


@app.command()
@_one_line_errors
def bench(
    problems: Annotated[str, typer.Option(help="Comma-separated problems: rare, decoy, noisy, shift, heldout, text.")] = "rare,decoy,noisy,shift,heldout,text",
    seeds: Annotated[int, typer.Option(help="Seeds per problem (seed, seed+1, ...).")] = 3,
    alpha: Annotated[float, typer.Option(help="Strength of every planted effect, in (0, 1].")] = 1.0,
    out: Annotated[Path, typer.Option(help="Markdown file for the tables (a .json of every row is written beside it).")] = Path("bench.md"),
    cache: Annotated[Path | None, typer.Option(help="Where trained models and embeddings are cached (default $FAULTLINES_CACHE or ~/.cache/faultlines).")] = None,
    sentiment_dir: Annotated[Path | None, typer.Option(help="Folder of the sentiment labelled sentences (amazon/imdb/yelp .txt), for the text problem.")] = None,
    split: Annotated[str, typer.Option(help="Split scanned: test (the planted slices), or train (e.g. noisy's flipped labels).")] = "test",
    seed: Seed = 0,
    quiet: Quiet = False,
) -> None:
    """Run every finder and peer on planted-failure problems and print a table of P@10, P@25 and time."""
    import json

    from faultlines.bench.runner import markdown, rows_as_dicts, run_bench

    names = [p.strip() for p in problems.split(",") if p.strip()]
    if "text" in names and sentiment_dir is None:
        default = Path("../shared/data/sentiment-labelled-sentences")
        if default.is_dir():
            sentiment_dir = default
        else:
            names.remove("text")
            _status("skipping the text problem: no --sentiment-dir given and ../shared/data has none", quiet)
    if seeds < 1:
        raise SettingsError("--seeds must be at least 1")
    rows = run_bench(names, range(seed, seed + seeds), alpha, cache, sentiment_dir, quiet=quiet, split=split)
    table = markdown(rows)
    command = f"faultlines bench --problems {','.join(names)} --seeds {seeds} --alpha {alpha} --seed {seed} --split {split}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"`{command}`\n\n{table}", encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps(rows_as_dicts(rows), indent=1), encoding="utf-8")
    typer.echo(table)
    typer.echo(f"tables: {out}")


def main() -> None:
    sys.unraisablehook = _interrupt_again
    warnings.showwarning = _warning_line
    usable = usable_cpus()
    if usable is not None:  # before torch starts its thread pool: one thread per CPU this process may really use
        os.environ.setdefault("OMP_NUM_THREADS", str(usable))
    global _whole_process
    _whole_process = True
    try:
        # Ctrl-C in a command ends in `_one_line_errors`; while typer parses the options it
        # arrives here as typer's own (silent) exit 130; earlier, `__main__` catches it
        app()
    except SystemExit as e:
        if e.code == 130:
            exit_interrupted()
        raise
    finally:
        # the command is over (its files written or not): Ctrl-C while Python shuts down changes nothing
        signal.signal(signal.SIGINT, signal.SIG_IGN)


_PYTHON_SHOWWARNING = warnings.showwarning


def usable_cpus(cgroup: Path = Path("/sys/fs/cgroup")) -> int | None:
    """How many CPUs this process may use, where that is fewer than the machine has: its CPU
    affinity, or a container's CPU quota (cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us`). torch
    starts a thread per core it sees, and a container given 2 of a host's 64 cores would
    otherwise run 64 threads on 2 cores, many times slower than 2. None: no limit found."""
    limits = [len(os.sched_getaffinity(0))] if hasattr(os, "sched_getaffinity") else []
    for quota_file, period_file in ((cgroup / "cpu.max", None), (cgroup / "cpu" / "cpu.cfs_quota_us", cgroup / "cpu" / "cpu.cfs_period_us")):
        try:
            words = quota_file.read_text().split()
            quota, period = words[0], (words[1] if period_file is None else period_file.read_text().strip())
            if quota not in ("max", "-1"):
                limits.append(max(1, -(-int(quota) // int(period))))
        except (OSError, ValueError, IndexError):
            continue
    usable = min(limits) if limits else None
    return usable if usable is not None and usable < (os.cpu_count() or usable + 1) else None


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    """faultlines' own warnings about the user's input as one line on stderr. Other packages'
    warnings (torch's about a pickle's protocol, scipy's about falling back to an asymptotic
    test, deprecation notices) are for their callers' authors, not for the person running the
    command: they are dropped, unless that person asked for warnings (python -W, PYTHONWARNINGS)."""
    if issubclass(category, InputWarning):
        sys.stderr.write("warning: " + " ".join(str(message).split()) + "\n")
    elif sys.warnoptions:
        _PYTHON_SHOWWARNING(message, category, filename, lineno, file, line)


def _interrupt_again(unraisable) -> None:
    """Ctrl-C that Python raised inside a callback it cannot propagate from (a weakref or an
    import lock's callback) is raised again, so it stops the command instead of being printed
    and ignored; every other unraisable error goes to Python's own hook."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
        return
    sys.__unraisablehook__(unraisable)
