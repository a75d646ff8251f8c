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

from faultlines.errors import FaultlinesError, RunDirError, SettingsError
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
Finders = Annotated[str, typer.Option(help="Comma-separated finders to run: spotlight, error-mixture.")]


def _finders(names: str, size: float, spotlights: int, seed: int, quiet: bool) -> list:
    from faultlines.find import ErrorMixture, Spotlight

    makers = {
        "spotlight": lambda: Spotlight(size=size, n_spotlights=spotlights, seed=seed, quiet=quiet),
        "error-mixture": lambda: ErrorMixture(seed=seed, quiet=quiet),
    }
    chosen = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in chosen if n not in makers]
    if unknown or not chosen:
        raise SettingsError(f"unknown finders {unknown}; choose from {', '.join(makers)}")
    return [makers[n]() for n in chosen]


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
    seed: Seed = 0,
    quiet: Quiet = False,
) -> None:
    """Train a small CNN on scikit-learn's digits, scan its test split, write the report."""
    from faultlines.data.digits import CLASS_NAMES, digits
    from faultlines.model import Classifier, save_checkpoint
    from faultlines.scan import scan
    from faultlines.store import save_run
    from faultlines.train import train_small_cnn

    _writable_run_dir(out)
    chosen = _finders(finders, size, spotlights, seed, quiet)
    splits = digits(seed=seed)
    _status(f"training SmallCNN on {len(splits.train)} digits (16x16), validating on {len(splits.val)}", quiet)
    model = train_small_cnn(splits.train, splits.val, seed=seed, quiet=quiet)
    clf = Classifier(model, class_names=CLASS_NAMES)
    _status(f"scanning {len(splits.test)} test digits with {finders}", quiet)
    result = scan(clf, splits.test, chosen, quiet=quiet, seed=seed)
    buf = io.BytesIO()
    save_checkpoint(model, buf, CLASS_NAMES)
    save_run(result, out, files={"model.pt": buf.getvalue()})
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
    batch_size: Annotated[int, typer.Option(help="Samples per forward pass.")] = 256,
    seed: Seed = 0,
    quiet: Quiet = False,
) -> None:
    """Scan a model on data for failure modes and write a run folder with its report."""
    from faultlines.data.files import load
    from faultlines.data.sources import EmbeddingTable
    from faultlines.errors import ModelError
    from faultlines.model import Classifier
    from faultlines.scan import scan
    from faultlines.store import save_run

    _writable_run_dir(out)
    chosen = _finders(finders, size, spotlights, seed, quiet)
    clf = Classifier.load(model, factory=factory, trust_pickle=trust_pickle, layer=layer) if model is not None else None
    source = load(data)
    if clf is None and not isinstance(source, EmbeddingTable):
        raise ModelError(f"{data} holds inputs, not embeddings: give the model that classifies them with --model")
    result = scan(clf, source, chosen, batch_size=batch_size, quiet=quiet, seed=seed)
    save_run(result, out)
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
