"""`scan`: probe a model on data once, run every finder on the outputs, gather what the report needs.

    result = fl.scan(clf, splits, finders="all")            # test split scanned, train/val probed for density
    result = fl.scan(clf, data, [fl.Spotlight(size=0.05)], train=train_data)

`scan` checks every finder's settings and what it requires (`Finder.requires`) before any
work: a finder named in a list that cannot run on the inputs given is a `SettingsError`
naming the missing piece; with `finders="all"` it is skipped, and `config["skipped"]` says
why. The data is probed once; the training and held-out data only when a finder requires
them. Each finder then gets `find(outputs, clf=, data=, train=, val=)`, and its `tables_` and
`analyses_` join the result.

Every mode is then measured for significance (`faultlines.significance`): finders that choose
modes by the rows' errors are run on part of the rows and their modes confirmed on the rest
(`confirm`, half the rows by default from 200 rows on), and each mode gets its error rate with
a Wilson interval, a one-sided Fisher test and a Benjamini-Hochberg q-value across the run.
"""

from __future__ import annotations

import functools
import platform
import time
import warnings
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from faultlines.data.sources import EmbeddingTable, Source, Splits
from faultlines.descriptions import describe_modes
from faultlines.errors import InputWarning, SettingsError
from faultlines.find.base import SEED, Finder, missing
from faultlines.model import Classifier, Estimator
from faultlines.preprocess import describe_preprocess
from faultlines.probe import check_alignment, check_inputs as check_scaling
from faultlines.probe import probe
from faultlines.progress import stage_done
from faultlines.registry import build
from faultlines.significance import (
    ALPHA,
    assess,
    check_alpha,
    check_fraction,
    confirmable,
    default_fraction,
    find_all,
    split_rows,
)
from faultlines.types import FailureMode, ScanResult

#: Where the model runs over the data: this process, or a Ray cluster.
ENGINES = ("local", "ray")


#: Rows the report can show a picture (or text) of: every row of a table this small, else each
#: mode's typical members and its first PREVIEW_MEMBERS members, at most PREVIEW_ROWS in all.
PREVIEW_ALL = 5000
PREVIEW_MEMBERS = 2000
PREVIEW_ROWS = 20_000


def preview_rows(modes: list[FailureMode], outputs) -> list[int]:
    """The rows whose previews a scan keeps (for the report's member tables and map), sorted."""
    if outputs.n <= PREVIEW_ALL:
        return list(range(outputs.n))
    own = [m for m in modes if m.source == outputs.source]
    rows = {i for m in own for i in m.evidence.get("typical", [])}
    for mode in own:
        rows.update(int(i) for i in mode.members[:PREVIEW_MEMBERS][: max(0, PREVIEW_ROWS - len(rows))])
    return sorted(rows)


def versions() -> dict[str, str]:
    """Versions of Python and of the packages a result depends on, for the run record."""
    found = {"python": platform.python_version()}
    for name in ("faultlines", "torch", "numpy", "scikit-learn", "scipy"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def scan(
    clf: Classifier | None,
    data: Source | EmbeddingTable | Splits,
    finders: str | Sequence[Finder] | None = None,
    *,
    train: Source | EmbeddingTable | None = None,
    val: Source | EmbeddingTable | None = None,
    strict: bool | None = None,
    confirm: float | None = None,
    alpha: float = ALPHA,
    batch_size: int = 256,
    num_workers: int = 0,
    amp: bool = False,
    engine: str = "local",
    ray_address: str | None = None,
    embeddings_file: str | Path | None = None,
    check_inputs: bool = True,
    quiet: bool = False,
    seed: int = 0,
) -> ScanResult:
    """Probe `clf` on `data` once and run every finder on the outputs.

    Args:
        clf: the classifier; None when `data` is an EmbeddingTable.
        data: what to scan; for `Splits`, the test split (and its train / val splits are
            the defaults of `train` / `val`).
        finders: Finder instances; or names ("all", "spotlight,defuse"), built with `seed`
            and `quiet`; default `[Spotlight(seed=seed)]`.
        train, val: the model's training and held-out data, probed only when a finder
            requires them (FeatureDensity).
        strict: a finder that cannot run on these inputs is an error (True) or skipped
            (False); default: skipped for "all", an error otherwise.
        confirm: the share of the scanned rows held out to confirm the modes of finders that
            choose by the rows' errors (Spotlight, ErrorMixture); 0 turns it off (those modes
            are then never significant); default 0.5 from 200 rows on, else 0.
        alpha: the level of the significance tests (and 1 - alpha of the intervals).
        batch_size, num_workers, amp: how the model is run (`faultlines.probe`); the device is
            the classifier's (`Classifier(device=...)`).
        engine: "local" (`faultlines.probe`) or "ray" (`faultlines.distributed.probe_ray`:
            Ray Data batch inference, on the cluster at `ray_address` or a local instance).
        embeddings_file: stream the scanned data's embeddings into this new .npy file and
            keep them memory-mapped from it (a run folder then links to it).
        check_inputs: first run the model on a batch of the data as given and rescaled
            (`faultlines.probe.check_inputs`), and warn (`InputWarning`) when the inputs seem
            scaled differently from training; the finding is in `config["checks"]`. Whatever
            this says, the probed outputs are checked for labels and probability columns in
            different class orders (`faultlines.probe.check_alignment`), warned the same way;
            turn `InputWarning` into an error (`warnings.simplefilter("error", InputWarning)`;
            CLI: --strict) to refuse such inputs.
        seed: given to finders built by name, and to the held-out split; recorded.

    Returns:
        ScanResult with the outputs, the modes of every finder in order (each with its
        significance), the config (the finders run and their settings, those skipped and why,
        the confirmation, seconds per stage: probe, each finder, significance), the finders' tables and analyses, the held-out rows, and previews (images or texts) of the rows `preview_rows` names.
    """
    alpha = check_alpha(alpha)
    if confirm is not None:
        check_fraction(confirm)
    if not SEED.holds(seed):
        raise SettingsError(f"seed must be {SEED.describe()}, not {seed!r}")
    if isinstance(data, Splits):
        train = train if train is not None else data.train
        val = val if val is not None else data.val
        data = data.test
    if strict is None:
        strict = finders != "all"
    if finders is None:
        finders = build("spotlight", seed=seed, quiet=quiet)
    elif isinstance(finders, str):
        finders = build(finders, seed=seed, quiet=quiet)
    bad = [f for f in finders if not isinstance(f, Finder)]
    if bad:
        raise SettingsError(f"finders must be faultlines finders (or their names), not {type(bad[0]).__name__}")
    for finder in finders:
        finder.validate()
    inputs = data if isinstance(data, Source) else None
    chosen, skipped = [], {}
    for finder in finders:
        reason = missing(finder, clf, data, train)
        if reason and strict:
            raise SettingsError(reason)
        if reason:
            skipped[finder.name] = reason
        else:
            chosen.append(finder)
    clock = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = round(timings.get(stage, 0.0) + now - clock, 3)
        stage_done(stage, now - clock, quiet)
        clock = now

    if engine not in ENGINES:
        raise SettingsError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    if engine == "ray":
        from faultlines.distributed import probe_ray

        run_probe = functools.partial(probe_ray, address=ray_address, amp=amp)
    else:
        run_probe = functools.partial(probe, num_workers=num_workers, amp=amp)
    checking = check_inputs and clf is not None and isinstance(data, Source)
    finding = check_scaling(clf, data) if checking else None
    if checking:
        lap("input check")
    outputs = run_probe(clf, data, batch_size=batch_size, quiet=quiet, embeddings_file=embeddings_file)
    # a finder that declares it requires the training outputs uses them when given, even if it
    # needs them no more (a FeatureDensity fitted already still compares itself with the baselines)
    uses_train = train is not None and any("train" in f.requires for f in chosen)
    train_out = run_probe(clf, train, batch_size=batch_size, quiet=quiet, source="train") if uses_train else None
    val_out = run_probe(clf, val, batch_size=batch_size, quiet=quiet, source="val") if uses_train and val is not None else None
    aligned = check_alignment(outputs)
    if aligned is not None:  # then any rescaling's gain is the misread classes' (the scaling check's premise fails)
        warnings.warn(aligned["message"], InputWarning, stacklevel=2)
    elif finding is not None:
        warnings.warn(finding["message"], InputWarning, stacklevel=2)
    lap("probe")
    fraction = default_fraction(outputs.n) if confirm is None else confirm
    heldout = split_rows(outputs.n, fraction, seed) if fraction > 0 and any(confirmable(f) for f in chosen) else None
    tables: dict[str, dict] = {}
    analyses: dict[str, dict] = {}

    def collect(finder: Finder) -> None:
        tables.update(finder.tables_)
        analyses.update(finder.analyses_)
        lap(finder.name)

    modes, measured = find_all(chosen, outputs, heldout, after=collect, clf=clf, data=inputs, train=train_out, val=val_out)
    modes = assess(modes, outputs, measured, heldout, alpha)
    lap("significance")
    shown = preview_rows(modes, outputs)
    previews = data.preview(shown)
    modes = describe_modes(modes, outputs, texts=data.texts, metadata=data.metadata, previews=previews, alpha=alpha)
    lap("descriptions")
    config = {
        "data": {"name": data.name, "samples": outputs.n, "classes": list(outputs.class_names), "engine": engine},
        "model": None if clf is None else {"class": type(clf.module.estimator if isinstance(clf.module, Estimator) else clf.module).__name__, "embedding_layer": clf.layer_name,
                                           "preprocess": describe_preprocess(clf.preprocess), "fixed_batch": clf.fixed_batch},
        "finders": [{"name": f.name, **f.settings()} for f in chosen],
        "skipped": skipped,
        "confirm": {"fraction": fraction if heldout is not None else 0.0, "heldout_rows": 0 if heldout is None else int(heldout.sum()),
                    "alpha": alpha, "measured": measured},
        "checks": {"inputs": finding if finding is not None else ("passed" if checking else "not run"),
                   "alignment": aligned if aligned is not None else "passed"},
        "seed": seed,
        "timings": timings,
        "versions": versions(),
    }
    return ScanResult(outputs, modes, config, previews=previews, texts=data.texts, tables=tables, analyses=analyses,
                      heldout=heldout, metadata=data.metadata)
