"""Run every finder and peer on every planted problem, side by side, and tabulate the scores."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from faultlines.bench.metrics import mode_scores, slice_precision
from faultlines.bench.peers import (
    CleanlabLabelIssues,
    ConfusionCells,
    DatalabGroups,
    ErrorKMeans,
    SliceLine,
)
from faultlines.bench.planted import PROBLEMS, PlantedProblem, make_problem
from faultlines.errors import SettingsError
from faultlines.find.base import Finder
from faultlines.model import Classifier
from faultlines.probe import probe
from faultlines.progress import console
from faultlines.registry import FINDERS as REGISTRY
from faultlines.significance import (
    DEFAULT_FRACTION,
    assess,
    enrichment_p,
    find_all,
    significant,
    split_rows,
)
from faultlines.types import FailureMode

#: faultlines' own finders the benchmark runs (those that need no model or images: the density
#: finder takes the training and validation outputs), by registry name.
OURS = ("spotlight", "error-mixture", "density")
#: The name of the bench's row for one scan with all of OURS together (confirmation only).
SCAN = "scan"
#: Every finder the benchmark runs, by name: faultlines' own first, then the peers.
FINDERS: dict[str, type[Finder]] = {name: REGISTRY[name] for name in OURS} | {
    peer.name: peer for peer in (SliceLine, ErrorKMeans, ConfusionCells, DatalabGroups, CleanlabLabelIssues)}
ALL_PROBLEMS = PROBLEMS + ("text",)


@dataclass
class BenchRow:
    """One finder on one problem and seed."""

    problem: str
    seed: int
    finder: str
    p10: float
    p25: float
    ap: float
    seconds: float
    accuracy: float
    slice_size: int
    slice_error: float
    #: With held-out confirmation (as `scan` runs it; faultlines' finders only): whether the
    #: mode that best matches the planted slice is significant, its q-value, and how many of
    #: the run's modes are significant. None for peers.
    best_significant: bool | None = None
    best_q: float | None = None
    n_significant: int | None = None
    #: The planted slice itself measured the same way (its held-out rows against the other
    #: held-out rows, one-sided Fisher): the most any mode could show. None for peers.
    slice_p: float | None = None


def load_problem(name: str, seed: int, alpha: float = 1.0, cache=None, sentiment_dir=None) -> PlantedProblem:
    """Planted problem `name` (one of ALL_PROBLEMS; "text" needs `sentiment_dir`)."""
    if name == "text":
        from faultlines.bench.text import sentiment

        return sentiment(sentiment_dir, seed=seed, alpha=alpha, cache=cache)
    return make_problem(name, seed=seed, alpha=alpha)


def run_bench(
    problems: Sequence[str] = ALL_PROBLEMS,
    seeds: Sequence[int] = (0, 1, 2),
    alpha: float = 1.0,
    cache: str | Path | None = None,
    sentiment_dir: str | Path | None = None,
    finders: Sequence[str] = tuple(FINDERS),
    quiet: bool = False,
    split: str = "test",
) -> list[BenchRow]:
    """Score each finder's slices against each problem's planted slice of `split` (dcbench P@k),
    and, for faultlines' own finders, whether the best-matching mode is significant as `scan`
    measures it (`confirmed_matches`): each alone, and (a row named SCAN) all of them in one run."""
    unknown = [p for p in problems if p not in ALL_PROBLEMS] + [f for f in finders if f not in FINDERS]
    if unknown:
        raise SettingsError(f"unknown problems or finders: {unknown}; problems: {', '.join(ALL_PROBLEMS)}")
    if split not in ("train", "val", "test"):
        raise SettingsError(f"split must be train, val or test, not {split!r}")
    if "text" in problems and sentiment_dir is None:
        raise SettingsError("the text problem needs the sentiment sentences folder (--sentiment-dir)")
    rows = []
    for name in problems:
        for seed in seeds:
            problem = load_problem(name, seed, alpha, cache, sentiment_dir)
            if not quiet:
                console.print(f"[bold]{name}[/] seed {seed}: {problem.description}", highlight=False)
            clf = Classifier(problem.model(cache, quiet))
            outputs = probe(clf, getattr(problem.splits, split), quiet=True)
            # the density finder is fitted on the training outputs, as `scan --density` fits it
            fitting = {"train": probe(clf, problem.splits.train, quiet=True, source="train"),
                       "val": probe(clf, problem.splits.val, quiet=True, source="val")} if "density" in finders else {}
            truth = problem.in_slice[split]
            ours: dict[str, tuple[BenchRow, Finder]] = {}
            for finder_name in finders:
                finder = make_finder(finder_name, seed)
                start = time.perf_counter()
                modes = finder.find(outputs, **fitting)
                seconds = time.perf_counter() - start
                row = BenchRow(name, seed, finder_name, *_scores(modes, truth), seconds,
                               outputs.accuracy, int(truth.sum()), float(1 - outputs.correct[truth].mean()))
                if finder_name in OURS:
                    ours[finder_name] = row, finder
                rows.append(row)
            if ours:
                runs = confirmed_matches([finder for _, finder in ours.values()], outputs, truth, seed, fitting)
                if SCAN in runs:  # P@k as the best of its finders' candidates: theirs, found on every row
                    top = max((r for r, _ in ours.values()), key=lambda r: r.ap)
                    rows.append(BenchRow(name, seed, SCAN, top.p10, top.p25, top.ap, sum(r.seconds for r, _ in ours.values()),
                                         outputs.accuracy, int(truth.sum()), float(1 - outputs.correct[truth].mean())))
                    ours[SCAN] = rows[-1], None
                for finder_name, (row, _) in ours.items():
                    record(row, runs[finder_name], outputs, truth)
    return rows


def make_finder(name: str, seed: int, **settings) -> Finder:
    """The bench's finder `name`, at its defaults or `settings` (the density finder without its
    comparison of detectors, which is `benchmarks/density.py`'s work, not finding slices)."""
    return FINDERS[name](seed=seed, **({"compare": False} if name == "density" else {}) | settings)


def _scores(modes: Sequence[FailureMode], truth: np.ndarray) -> tuple[float, float, float]:
    """P@10, P@25 and average precision of `modes` against the planted slice `truth` (0 without modes)."""
    if not modes:
        return 0.0, 0.0, 0.0
    score = slice_precision(mode_scores(modes, len(truth)), truth)
    return score["p@10"], score["p@25"], score["ap"]


def record(row: BenchRow, run: ConfirmedRun, outputs, truth: np.ndarray) -> None:
    """Record on `row` whether the mode of `run` that best matches the planted slice `truth` (by
    average precision over all rows) is significant, and the held-out p-value of the slice itself."""
    row.n_significant = sum(significant(m) for m in run.modes)
    row.slice_p = planted_p(outputs, truth, run.heldout)
    row.best_significant = run.best is not None and significant(run.best)
    row.best_q = None if run.best is None else float(run.best.metrics["q_value"])


@dataclass
class ConfirmedRun:
    """A finder's modes as `scan` reports them, each with how well it matches a planted slice."""

    modes: list[FailureMode]
    #: Each mode's average precision against the planted slice, over all rows.
    aps: list[float]
    #: The rows held out to measure the modes on.
    heldout: np.ndarray

    @property
    def best(self) -> FailureMode | None:
        """The mode that best matches the planted slice (None without modes)."""
        return self.modes[int(np.argmax(self.aps))] if self.modes else None


def confirmed_matches(finders: Sequence[Finder], outputs, truth: np.ndarray, seed: int,
                      fitting: dict | None = None) -> dict[str, ConfirmedRun]:
    """The modes of `finders` as `scan` reports them, each matched against the planted slice
    `truth`: by finder name, each finder as if scanned alone, and (key SCAN, with more than one
    finder) all of them in one scan. `scan`'s default held-out split for `seed`: the finders
    that choose by errors found on half the rows and measured on the other half, the density
    finder fitted on `fitting`'s train / val outputs and measured on every row. Each finder is
    run once; alone, its modes get its own Benjamini-Hochberg correction, in the scan one across
    them all."""
    heldout = split_rows(outputs.n, DEFAULT_FRACTION, seed)
    modes, measured = find_all(finders, outputs, heldout, **(fitting or {}))
    groups = {f.name: [m for m in modes if m.method == f.name] for f in finders} | ({SCAN: modes} if len(finders) > 1 else {})
    runs = {}
    for name, group in groups.items():
        assessed = assess(group, outputs, measured, heldout)
        runs[name] = ConfirmedRun(assessed, [_scores([m], truth)[2] for m in assessed], heldout)
    return runs


def planted_p(outputs, truth: np.ndarray, heldout: np.ndarray) -> float:
    """The planted slice measured as a confirmed mode is: its `heldout` rows' error rate against
    the other held-out rows' (one-sided Fisher p, before any multiple-testing correction)."""
    wrong, inside, outside = ~outputs.correct, truth & heldout, heldout & ~truth
    return enrichment_p(int(wrong[inside].sum()), int(inside.sum()), int(wrong[outside].sum()), int(outside.sum()))


def markdown(rows: Sequence[BenchRow]) -> str:
    """Mean P@10, P@25 and seconds per (problem, finder) over seeds, as markdown tables; then the
    confirmation of faultlines' own finders, alone and together (the SCAN rows). The P@k tables
    leave SCAN out: its best candidate is, by construction, the best of its finders' own."""
    finders = [f for f in dict.fromkeys(r.finder for r in rows) if f != SCAN]
    problems = list(dict.fromkeys(r.problem for r in rows))
    cell: dict[tuple[str, str], list[BenchRow]] = defaultdict(list)
    for r in rows:
        cell[r.problem, r.finder].append(r)
    n_seeds = len({r.seed for r in rows})
    context = {p: cell[p, finders[0]] for p in problems}
    lines = []
    for metric, title in (("p10", "P@10"), ("p25", "P@25"), ("seconds", "seconds per run")):
        lines += [f"**{title}** (mean over {n_seeds} seeds)", ""]
        head = "| problem | accuracy | slice size | slice error | " + " | ".join(finders) + " |"
        lines += [head, "|" + "---|" * (4 + len(finders))]
        for p in problems:
            c = context[p]
            stats = f"{np.mean([r.accuracy for r in c]):.3f} | {np.mean([r.slice_size for r in c]):.0f} | {np.mean([r.slice_error for r in c]):.2f}"
            values = [np.mean([getattr(r, metric) for r in cell[p, f]]) for f in finders]
            lines.append(f"| {p} | {stats} | " + " | ".join(f"{v:.2f}" for v in values) + " |")
        if metric != "seconds":
            means = [np.mean([np.mean([getattr(r, metric) for r in cell[p, f]]) for p in problems]) for f in finders]
            lines.append("| **mean** | | | | " + " | ".join(f"**{v:.3f}**" for v in means) + " |")
        lines.append("")
    ours = [f for f in dict.fromkeys(r.finder for r in rows) if any(r.best_significant is not None for r in cell[problems[0], f])] if problems else []
    if ours:
        together = " + ".join(f for f in ours if f != SCAN)
        lines += [f"**Confirmed as `scan` measures modes** (alpha 0.05; finders that choose by errors found on half of each scanned split "
                  f"and measured on the other half, the density finder fitted on the training split and measured on every row; "
                  f"`{SCAN}` is {together} in one run, one Benjamini-Hochberg correction across all their modes): "
                  f"seeds whose best-matching mode is significant, of {n_seeds}; median q-value of that mode; significant modes per run (mean); "
                  f"and the planted slice itself, measured on the held-out half: seeds where its p-value is at most 0.05 (the most a confirmed mode could show)", ""]
        lines += ["| problem | planted slice: significant | planted slice: median p | "
                  + " | ".join(f"{f}: best significant | {f}: median q | {f}: significant modes" for f in ours) + " |",
                  "|" + "---|" * (3 + 3 * len(ours))]
        for p in problems:
            c = cell[p, ours[0]]
            cells = [f"{sum(r.slice_p <= 0.05 for r in c)} of {len(c)}", f"{np.median([r.slice_p for r in c]):.2g}"]
            for f in ours:
                c = cell[p, f]
                qs = [r.best_q for r in c if r.best_q is not None]
                cells += [f"{sum(bool(r.best_significant) for r in c)} of {len(c)}", f"{np.median(qs):.2g}" if qs else "-",
                          f"{np.mean([r.n_significant for r in c]):.1f}"]
            lines.append(f"| {p} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def rows_as_dicts(rows: Sequence[BenchRow]) -> list[dict]:
    return [asdict(r) for r in rows]
