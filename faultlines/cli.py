"""The `faultlines` command: demo, scan, report.

Bad input ends a command with one line on stderr ("error: ...") and exit code 2; status
and progress go to stderr, and what a command produces (the summary, the report path) to stdout.
"""

from __future__ import annotations

import functools
import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import typer

from faultlines.errors import DataError, FaultlinesError, ModelError, RunDirError, SettingsError
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
Size = Annotated[float, typer.Option(help="Least size of a spotlight: a fraction of the samples (< 1) or a count.")]
Spotlights = Annotated[int, typer.Option("--spotlights", help="How many spotlights to find.")]
Finders = Annotated[str, typer.Option(help="Comma-separated finders to run: spotlight, error-mixture, defuse, perturb.")]
FINDER_NAMES = ("spotlight", "error-mixture", "defuse", "perturb")


def _finder_names(names: str) -> list[str]:
    chosen = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in FINDER_NAMES]
    if unknown or not chosen:
        raise SettingsError(f"unknown finders {unknown}; choose from {', '.join(FINDER_NAMES)}")
    return chosen


def _finders(names: list[str], size: float, spotlights: int, seed: int, quiet: bool, vae=None, object_mask=None) -> list:
    from faultlines.find import ErrorMixture, PerturbationProbe, Spotlight
    from faultlines.find.defuse import Defuse

    makers = {
        "spotlight": lambda: Spotlight(size=size, n_spotlights=spotlights, seed=seed, quiet=quiet),
        "error-mixture": lambda: ErrorMixture(seed=seed, quiet=quiet),
        "defuse": lambda: Defuse(vae, seed=seed, quiet=quiet),
        "perturb": lambda: PerturbationProbe(object_mask=object_mask, seed=seed, quiet=quiet),
    }
    return [makers[n]() for n in names]


def _vae(names: list[str], path: Path | None, data, epochs: int, seed: int, quiet: bool):
    """The VAE for Defuse: loaded from `path`, or trained on `data`; None if Defuse is not run."""
    from faultlines.generative import VAE
    from faultlines.model import load_module

    if "defuse" not in names:
        return None
    if path is not None:
        vae, _ = load_module(path)
        if not isinstance(vae, VAE):
            raise ModelError(f"{path} holds a {type(vae).__name__}, not a faultlines VAE")
        return vae
    x, _ = next(iter(data.batches(1)))
    if x.ndim != 4:
        raise DataError("Defuse needs image inputs (N, C, H, W) for its VAE")
    _status(f"training a VAE on {len(data)} images ({epochs} epochs)", quiet)
    return VAE(in_channels=x.shape[1], size=x.shape[-1]).fit(data, epochs=epochs, seed=seed, quiet=quiet)


def _density(result, clf, train, val, test, seed: int, quiet: bool) -> None:
    from faultlines.bench.density import analyse

    _status("feature density: fitting the flow and the detectors, attacking and scoring", quiet)
    result.analyses["density"] = analyse(clf, train, val, test, seed=seed, quiet=quiet)
    _status(result.analyses["density"]["test"]["sentence"], quiet)


def _checkpoint_bytes(module, class_names) -> bytes:
    from faultlines.model import save_checkpoint

    buf = io.BytesIO()
    save_checkpoint(module, buf, class_names)
    return buf.getvalue()


def _fail(message: str) -> NoReturn:
    sys.stderr.write("error: " + " ".join(message.split()) + "\n")
    raise typer.Exit(2)


def _one_line_errors(command: F) -> F:
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except FaultlinesError as e:
            _fail(str(e))

    return wrapper  # type: ignore[return-value]


def _status(message: str, quiet: bool) -> None:
    if not quiet:
        from faultlines.progress import console

        console.print(message, highlight=False)


def _writable_run_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise RunDirError(f"the output path {out} is a file; give a folder for the run")


def _print_result(result: ScanResult, out: Path) -> None:
    o = result.outputs
    typer.echo(f"accuracy {o.accuracy:.4f} on {o.n} {o.source} samples; {len(result.modes)} failure modes:")
    for mode in result.modes:
        typer.echo(f"  {mode.id}: {mode.summary}")
    typer.echo(f"report: {out / 'report.html'}")


@app.command()
@_one_line_errors
def demo(
    out: Annotated[Path, typer.Option(help="Run folder to write.")] = Path("faultlines-demo"),
    size: Size = 0.02,
    spotlights: Spotlights = 5,
    finders: Finders = "spotlight",
    density: Annotated[bool, typer.Option("--density", help="Add the feature-density analysis (flow, tests, detectors) to the report.")] = False,
    seed: Seed = 0,
    quiet: Quiet = False,
) -> None:
    """Train a small CNN on scikit-learn's digits, scan its test split, write the report."""
    from faultlines.data.digits import CLASS_NAMES, digits
    from faultlines.generative import VAE
    from faultlines.model import Classifier
    from faultlines.scan import scan
    from faultlines.store import save_run
    from faultlines.train import train_small_cnn

    _writable_run_dir(out)
    names = _finder_names(finders)
    _finders(names, size, spotlights, seed, quiet, vae=VAE())  # check the settings before any work
    splits = digits(seed=seed)
    _status(f"training SmallCNN on {len(splits.train)} digits (16x16), validating on {len(splits.val)}", quiet)
    model = train_small_cnn(splits.train, splits.val, seed=seed, quiet=quiet)
    clf = Classifier(model, class_names=CLASS_NAMES)
    vae = _vae(names, None, splits.train, 80, seed, quiet)
    _status(f"scanning {len(splits.test)} test digits with {finders}", quiet)
    result = scan(clf, splits.test, _finders(names, size, spotlights, seed, quiet, vae), quiet=quiet, seed=seed)
    result.config["data"]["spec"] = "digits"
    if density:
        _density(result, clf, splits.train, splits.val, splits.test, seed, quiet)
    files = {"model.pt": _checkpoint_bytes(model, CLASS_NAMES)}
    if vae is not None:
        files["vae.pt"] = _checkpoint_bytes(vae, None)
    save_run(result, out, files=files)
    _print_result(result, out)


@app.command("scan")
@_one_line_errors
def scan_command(
    data: Annotated[str, typer.Option(help="Data: a .npz (x, y), an image folder, an embedding table (.parquet, or a folder of .npy), or 'digits'.")],
    out: Annotated[Path, typer.Option(help="Run folder to write.")],
    model: Annotated[Path | None, typer.Option(help="Model file: TorchScript, a faultlines checkpoint, or a state dict with --factory. Not needed for an embedding table.")] = None,
    layer: Annotated[str | None, typer.Option(help="Layer whose output is the embedding (default: input of the last nn.Linear).")] = None,
    factory: Annotated[str | None, typer.Option(help="package.module:callable that builds the model, for a state-dict file.")] = None,
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle", help="Allow a pickled model file. Unpickling can run arbitrary code: only for files you trust.")] = False,
    size: Size = 0.02,
    spotlights: Spotlights = 5,
    finders: Finders = "spotlight",
    vae: Annotated[Path | None, typer.Option(help="A saved faultlines VAE for Defuse (default: train one on --data).")] = None,
    vae_epochs: Annotated[int, typer.Option(help="Epochs to train Defuse's VAE when none is given.")] = 80,
    object_mask: Annotated[Path | None, typer.Option(help="For perturb: a .npy (H, W) 0/1 mask of where the object is; regions outside it count as carrying none of it.")] = None,
    density: Annotated[bool, typer.Option("--density", help="Add the feature-density analysis; needs --train and --val (or --data digits).")] = False,
    train: Annotated[str | None, typer.Option(help="The model's training data (as for --data), for --density.")] = None,
    val: Annotated[str | None, typer.Option(help="Held-out data (as for --data), for --density's early stopping and calibration.")] = None,
    batch_size: Annotated[int, typer.Option(help="Samples per forward pass.")] = 256,
    seed: Seed = 0,
    quiet: Quiet = False,
) -> None:
    """Scan a model on data for failure modes and write a run folder with its report."""
    from faultlines.data.files import load
    from faultlines.data.sources import EmbeddingTable
    from faultlines.generative import VAE
    from faultlines.model import Classifier
    from faultlines.scan import scan
    from faultlines.store import save_run

    _writable_run_dir(out)
    names = _finder_names(finders)
    _finders(names, size, spotlights, seed, quiet, vae=VAE())  # check the settings before any work
    clf = Classifier.load(model, factory=factory, trust_pickle=trust_pickle, layer=layer) if model is not None else None
    source = load(data)
    if clf is None and not isinstance(source, EmbeddingTable):
        raise ModelError(f"{data} holds inputs, not embeddings: give the model that classifies them with --model")
    if density:
        if data == "digits":
            from faultlines.data.digits import digits

            digit_splits = digits(seed=seed)
            fit_on = (digit_splits.train, digit_splits.val)
        elif train is None or val is None:
            raise SettingsError("--density needs the model's training and held-out data: --train PATH --val PATH")
        else:
            fit_on = (load(train), load(val))
        if clf is None or isinstance(source, EmbeddingTable):
            raise SettingsError("--density attacks and probes the model: give --model and input data")
    mask = None
    if object_mask is not None:
        from faultlines.data.files import load_mask

        x, _ = next(iter(source.batches(1)))
        mask = load_mask(object_mask, tuple(x.shape[-2:]))
    trained_vae = _vae(names, vae, source, vae_epochs, seed, quiet)
    result = scan(clf, source, _finders(names, size, spotlights, seed, quiet, trained_vae, mask), batch_size=batch_size, quiet=quiet, seed=seed)
    result.config["data"]["spec"] = data
    if density:
        _density(result, clf, *fit_on, source, seed, quiet)
    files = {"model.pt": model.read_bytes()} if model is not None else {}
    if trained_vae is not None:
        files["vae.pt"] = _checkpoint_bytes(trained_vae, None)
    save_run(result, out, files=files)
    _print_result(result, out)


@app.command()
@_one_line_errors
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `faultlines scan` or `faultlines demo`.")],
    out: Annotated[Path | None, typer.Option(help="Where to write the page (default RUN_DIR/report.html).")] = None,
    quiet: Quiet = False,
    seed: Annotated[int | None, typer.Option(help="Seed of the embedding map's subsample (default: the run's seed).")] = None,
) -> None:
    """Render the HTML report of a run folder again."""
    from faultlines.report import report as write_report
    from faultlines.store import load_run

    result = load_run(run_dir)
    if seed is not None:
        result.config["seed"] = seed
    path = write_report(result, out or run_dir / "report.html")
    _status(f"rendered {len(result.modes)} failure modes", quiet)
    typer.echo(f"report: {path}")


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
    from faultlines.atomic import write_file
    from faultlines.repair import labels as region_labels
    from faultlines.report.figures import tile
    from faultlines.store import load_run

    if sum([labels is not None, interactive, auto]) != 1:
        raise SettingsError("give exactly one of --labels CSV, --interactive or --auto")
    result = load_run(run_dir)
    found = region_labels.regions(result)
    if not found:
        raise RunDirError(f"{run_dir} has no Defuse regions to label; scan with --finders defuse")
    if labels is not None:
        chosen, how = region_labels.read_csv(labels, result), "csv"
    elif auto:
        chosen, how = region_labels.from_seeds(result, agreement), "auto"
    else:
        from PIL import Image

        grid_dir = run_dir / "regions"
        grid_dir.mkdir(exist_ok=True)
        grids = {}
        table = result.tables["generated"]
        for region, evidence in found.items():
            buf = io.BytesIO()
            grid = tile(table["images"][evidence["typical"]], columns=8)
            Image.fromarray(grid).resize((6 * grid.shape[1], 6 * grid.shape[0]), Image.NEAREST).save(buf, format="PNG")
            grids[region] = write_file(grid_dir / f"{region}.png", buf.getvalue())
        chosen, how = region_labels.prompt(result, grids, ask=lambda q: typer.prompt(q, prompt_suffix=""), say=typer.echo), "prompt"
    path = region_labels.save(run_dir, chosen, result, how)
    named = sum(v is not None for v in chosen.values())
    typer.echo(f"labelled {named} of {len(found)} regions ({len(chosen) - named} skipped): {path}")
    if not named:
        typer.echo("nothing for `faultlines fix` to correct: label regions from the report's grids "
                   "(--labels CSV or --interactive)" + (", or lower --agreement" if auto else ""))


def _fix_data(result: ScanResult, train: str | None, val: str | None):
    """Training, validation and test data for a repair: the digits when the run scanned them,
    else --train and --val, with the run's own data as the test set."""
    from faultlines.data.digits import digits
    from faultlines.data.files import load

    spec = result.config.get("data", {}).get("spec")
    if spec == "digits":
        splits = digits(seed=result.config.get("seed", 0))
        train_data, val_data, test_data = splits.train, splits.val, splits.test
    else:
        if train is None or val is None or spec is None:
            raise SettingsError("give the model's training and validation data: --train PATH --val PATH")
        test_data = load(spec)
    if train is not None:
        train_data = load(train)
    if val is not None:
        val_data = load(val)
    return train_data, val_data, test_data


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
    from faultlines.store import load_run

    result = load_run(run_dir)
    if mask is not None and not xbl:
        raise SettingsError("--mask is for --xbl")
    if not (run_dir / "model.pt").is_file():
        raise RunDirError(f"{run_dir} keeps no model.pt to correct; scan with --model")
    # unset settings are left to the repair's own defaults
    settings = {k: v for k, v in (("lambdas", None if lambdas is None else _weights(lambdas)), ("epochs", epochs)) if v is not None}
    if xbl:
        _fix_xbl(run_dir, result, mask, train, val, settings, seed, quiet)
    else:
        _fix_defuse(run_dir, result, train, val, settings, seed, quiet)


def _save_repair(run_dir: Path, result: ScanResult, name: str, model_file: str, module, table: dict) -> None:
    """The corrected model, its table (json) and the report again, each written atomically."""
    import json

    from faultlines.atomic import write_file
    from faultlines.report import render
    from faultlines.store import FIX_FILE, XBL_FILE

    write_file(run_dir / model_file, _checkpoint_bytes(module, result.outputs.class_names))
    write_file(run_dir / {"defuse": FIX_FILE, "xbl": XBL_FILE}[name], json.dumps(table, indent=1))
    result.repairs[name] = json.loads(json.dumps(table))
    write_file(run_dir / "report.html", render(result))
    typer.echo(f"model: {run_dir / model_file}")


def _fix_defuse(run_dir: Path, result: ScanResult, train, val, settings: dict, seed: int, quiet: bool) -> None:
    from faultlines.model import load_module
    from faultlines.repair import labels as region_labels
    from faultlines.repair.finetune import finetune, region_samples

    chosen = region_labels.load(run_dir, result)
    train_data, val_data, test_data = _fix_data(result, train, val)
    module, _ = load_module(run_dir / "model.pt")
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
    _save_repair(run_dir, result, "defuse", "model-fixed.pt", fixed.module, table)


def _fix_xbl(run_dir: Path, result: ScanResult, mask_file: Path | None, train, val, settings: dict, seed: int, quiet: bool) -> None:
    import numpy as np

    from faultlines.data.files import load_mask
    from faultlines.model import load_module
    from faultlines.repair.xbl import xbl

    train_data, val_data, test_data = _fix_data(result, train, val)
    x, _ = next(iter(test_data.batches(1)))
    if x.ndim != 4:
        raise DataError(f"--xbl needs image data (N, C, H, W); the run's data has inputs of shape {tuple(x.shape)}")
    if mask_file is not None:
        mask, where = load_mask(mask_file, tuple(x.shape[-2:])), str(mask_file)
    else:
        flagged = [np.array(m.evidence["mask"], bool) for m in result.modes if m.method == "perturb"]
        if not flagged:
            if "perturb" in result.analyses:
                raise RunDirError(f"the perturbation probe flagged no region in {run_dir}; give --mask FILE to unlearn a region of your choice")
            raise RunDirError(f"{run_dir} has no flagged regions to unlearn; scan with --finders perturb, or give --mask FILE")
        mask, where = np.any(flagged, axis=0), f"{len(flagged)} flagged region(s)"
    _status(f"retraining with the explanation penalty on {int(mask.sum())} pixels ({where})", quiet)
    module, _ = load_module(run_dir / "model.pt")
    fixed = xbl(module, train_data, val_data, test_data, mask, seed=seed, quiet=quiet, **settings)
    table = {"lambda": fixed.lam, "sweep": fixed.sweep, "models": fixed.table, "mask_from": where, "mask": mask.tolist()}
    t = fixed.table
    typer.echo(f"lambda {fixed.lam:g}: test accuracy {t['original']['test_accuracy']:.4f} -> {t['xbl']['test_accuracy']:.4f} "
               f"(occlusion retraining {t['occlusion']['test_accuracy']:.4f}); with the region swapped "
               f"{t['original']['swapped_accuracy']:.4f} -> {t['xbl']['swapped_accuracy']:.4f}")
    _save_repair(run_dir, result, "xbl", "model-xbl.pt", fixed.module, table)


@app.command()
@_one_line_errors
def bench(
    problems: Annotated[str, typer.Option(help="Comma-separated problems: rare, decoy, noisy, shift, heldout, text.")] = "rare,decoy,noisy,shift,heldout,text",
    seeds: Annotated[int, typer.Option(help="Seeds per problem (seed, seed+1, ...).")] = 3,
    alpha: Annotated[float, typer.Option(help="Strength of every planted effect, in (0, 1].")] = 1.0,
    out: Annotated[Path, typer.Option(help="Markdown file for the tables (a .json of every row is written beside it).")] = Path("bench.md"),
    cache: Annotated[Path | None, typer.Option(help="Where trained models and embeddings are cached (default $FAULTLINES_CACHE or ~/.cache/faultlines).")] = None,
    sentiment_dir: Annotated[Path | None, typer.Option(help="Folder of the sentiment labelled sentences (amazon/imdb/yelp .txt), for the text problem.")] = None,
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
    rows = run_bench(names, range(seed, seed + seeds), alpha, cache, sentiment_dir, quiet=quiet)
    table = markdown(rows)
    command = f"faultlines bench --problems {','.join(names)} --seeds {seeds} --alpha {alpha} --seed {seed}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"`{command}`\n\n{table}", encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps(rows_as_dicts(rows), indent=1), encoding="utf-8")
    typer.echo(table)
    typer.echo(f"tables: {out}")


def main() -> None:
    app()
