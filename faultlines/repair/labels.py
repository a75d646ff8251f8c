"""One label per Defuse region, from a person (CSV or a terminal prompt) or from the seeds.

A region's label is the class its samples truly show, or None ("skip": not a valid image, or
not one class); skipped regions are not used to correct the model. Labels are stored in the
run folder as labels.json (`faultlines.store.save_labels`).
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from faultlines.errors import DataError, RunDirError, SettingsError
from faultlines.types import ScanResult

SKIP = "skip"


def regions(result: ScanResult) -> dict[str, dict]:
    """The Defuse regions of a scan, by id, with their evidence."""
    return {m.id: m.evidence for m in result.modes if m.method == "defuse"}


def _class_id(result: ScanResult, name: str, where: str) -> int | None:
    name = name.strip()
    if name.lower() == SKIP:
        return None
    names = result.outputs.class_names
    if name not in names:
        raise DataError(f"{where}: unknown class {name!r}; use one of {', '.join(names)} or '{SKIP}'")
    return names.index(name)


def read_csv(path: str | Path, result: ScanResult) -> dict[str, int | None]:
    """Labels from a CSV with columns `region` and `label` (a class name, or "skip").

    Every row must name a region of the run; regions the file leaves out stay unlabelled.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"no such file: {p}")
    known = regions(result)
    with p.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("region", "label") if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{p} lacks the column(s) {missing}; it needs 'region' and 'label'")
        labels = {}
        for n, row in enumerate(reader, 2):
            region = (row["region"] or "").strip()
            if region not in known:
                raise DataError(f"{p}:{n}: unknown region {region!r}; the run's regions are {', '.join(known) or '(none)'}")
            labels[region] = _class_id(result, row["label"] or "", f"{p}:{n}")
    if not labels:
        raise DataError(f"{p} labels no region")
    return labels


def from_seeds(result: ScanResult, agreement: float = 0.8) -> dict[str, int | None]:
    """The programmatic labeller: the majority seed label of the hits around a region.

    Around a region means in its mixture component: every hit there, whatever the model
    predicted for it (a region is the part of a component with one prediction). A region gets
    the majority label when at least `agreement` of those hits came from seeds of that class,
    else None (skip). Where two classes meet, seeds of each cross into the other, so the
    component's seeds are mixed and its regions are skipped: their samples are as likely to be
    the predicted class as the seeds' (the VAE drifting, not the model erring). A region inside
    one class's real inputs, which the model nevertheless misreads, draws hits from that class's
    seeds only.
    """
    if not 0.0 <= agreement <= 1.0:
        raise SettingsError(f"agreement must be between 0 and 1, not {agreement}")
    hits = result.tables.get("defuse_hits")
    if not hits or "component" not in hits:
        raise RunDirError("the run has no Defuse hits to label from; scan with the defuse finder")
    labels = {}
    for region, evidence in regions(result).items():
        around = hits["seed_label"][hits["component"] == evidence["component"]]
        label, count = Counter(around.tolist()).most_common(1)[0]
        labels[region] = int(label) if count / len(around) >= agreement else None
    return labels


def prompt(result: ScanResult, grids: dict[str, Path], ask: Callable[[str], str] = input, say: Callable[[str], None] = print) -> dict[str, int | None]:
    """Ask for each region's class at the terminal, showing where its sample grid is."""
    names = result.outputs.class_names
    summaries = {m.id: m.summary for m in result.modes}
    labels = {}
    for region in regions(result):
        say(f"{region}: {summaries[region]}\n  samples: {grids[region]}")
        while True:
            answer = ask(f"  class ({', '.join(names)}) or '{SKIP}': ")
            try:
                labels[region] = _class_id(result, answer, region)
                break
            except DataError as e:
                say(f"  {e}")
    return labels


def to_record(labels: dict[str, int | None], result: ScanResult, how: str) -> dict:
    """The labels as the run folder keeps them (`store.save_labels`): by class name, and how they were given."""
    names = result.outputs.class_names
    return {"how": how, "labels": {r: (None if c is None else names[c]) for r, c in labels.items()}}


def from_record(record: dict, result: ScanResult, where: str) -> dict[str, int | None]:
    """Stored labels (`store.load_labels`) as class ids (None = skip); `where` names the file in errors."""
    stored = record.get("labels")
    if not isinstance(stored, dict):
        raise RunDirError(f"{where} holds no labels; label the regions again")
    return {r: (None if name is None else _class_id(result, name, where)) for r, name in stored.items()}
