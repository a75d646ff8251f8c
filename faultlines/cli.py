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

from faultlines.errors import FaultlinesError, RunDirError
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
    seed: Seed = 0,
    quiet: Quiet = False,
) -> None:
    """Train a small CNN on scikit-learn's digits, scan its test split with Spotlight, write the report."""
    from faultlines.data.digits import CLASS_NAMES, digits
    from faultlines.find.spotlight import Spotlight
    from faultlines.model import Classifier, save_checkpoint
    from faultlines.scan import scan
    from faultlines.store import save_run
    from faultlines.train import train_small_cnn

    _writable_run_dir(out)
    finder = Spotlight(size=size, n_spotlights=spotlights, seed=seed, quiet=quiet)
    splits = digits(seed=seed)
    _status(f"training SmallCNN on {len(splits.train)} digits (16x16), validating on {len(splits.val)}", quiet)
    model = train_small_cnn(splits.train, splits.val, seed=seed, quiet=quiet)
    clf = Classifier(model, class_names=CLASS_NAMES)
    _status(f"scanning {len(splits.test)} test digits with Spotlight", quiet)
    result = scan(clf, splits.test, [finder], quiet=quiet, seed=seed)
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
    batch_size: Annotated[int, typer.Option(help="Samples per forward pass.")] = 256,
    seed: Seed = 0,
    quiet: Quiet = False,
) -> None:
    """Scan a model on data for failure modes and write a run folder with its report."""
    from faultlines.data.files import load
    from faultlines.data.sources import EmbeddingTable
    from faultlines.errors import ModelError
    from faultlines.find.spotlight import Spotlight
    from faultlines.model import Classifier
    from faultlines.scan import scan
    from faultlines.store import save_run

    _writable_run_dir(out)
    finder = Spotlight(size=size, n_spotlights=spotlights, seed=seed, quiet=quiet)
    clf = Classifier.load(model, factory=factory, trust_pickle=trust_pickle, layer=layer) if model is not None else None
    source = load(data)
    if clf is None and not isinstance(source, EmbeddingTable):
        raise ModelError(f"{data} holds inputs, not embeddings: give the model that classifies them with --model")
    result = scan(clf, source, [finder], batch_size=batch_size, quiet=quiet, seed=seed)
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


def main() -> None:
    app()
