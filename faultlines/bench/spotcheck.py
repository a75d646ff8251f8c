"""Several blindspots in one data set, after SpotCheck (Plumb, Johnson, Cabrera, Talwalkar,
"Towards a More Rigorous Science of Blindspot Discovery in Image Classification Models", TMLR
2023, arXiv 2207.04104), written from the paper's design for small images on a CPU.

Each image is drawn from known binary attributes, each a fair coin: the background's shade and
texture; whether the target (a square) is there, and its size, colour and stripes; whether a
circle and a rectangle are there, and each one's colour. The task is SpotCheck's: is there a
square? A **blindspot** is a conjunction of attribute values that includes "square present";
its images are labelled "no square" in training and validation, so the model learns to miss
the square exactly there, and the test labels are true. A data set has 1-3 blindspots; each
new one must contradict every earlier one in at least two attributes (the paper's validity
rule: no two blindspots touch), yet they may share attributes (one blindspot "small orange
square", another "small blue square on a dark background" share the size). Every image's
attributes are kept (`facts`), so a mode can be compared with every blindspot.

Scoring, as the paper scores a method: a blindspot is **discovered** when some mode has
precision >= 0.8 and recall >= 0.5 on it (its test images); the **false-discovery rate** is the
share of reported modes (for faultlines: the significant ones) that match no blindspot, a mode
matching one when at least 0.8 of its members lie in it.

Departures from the paper, and why: images are 24x24 (not 224x224) and the model a SmallCNN
trained here, so a benchmark of ten data sets runs in minutes on two cores; the objects are
drawn with numpy (no fonts, so no "text" object); the attributes are fixed and the number of
blindspots (1-3) and their clauses (2-3 besides the square) are drawn per seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from faultlines.bench.planted import PlantedProblem
from faultlines.data.sources import ArraySource, Splits
from faultlines.train import SmallCNN

SIZE = 24
CLASS_NAMES = ("no square", "square")
#: The attributes, each a fair coin. A "sub-attribute" (size, colour, stripes) matters only
#: where its object is there; it is drawn for every image all the same.
ATTRIBUTES = ("background_dark", "background_noisy", "square", "square_small", "square_orange", "square_striped",
              "circle", "circle_orange", "rectangle", "rectangle_orange")
#: The object each attribute belongs to (None: the background).
OWNER = {"square_small": "square", "square_orange": "square", "square_striped": "square", "circle_orange": "circle",
         "rectangle_orange": "rectangle"}
#: Attributes a blindspot may add to "square present" (any but the target's own presence).
CLAUSES = tuple(a for a in ATTRIBUTES if a != "square")
BLUE, ORANGE = np.array([0.12, 0.47, 0.71]), np.array([1.0, 0.5, 0.05])
#: Images per split.
COUNTS = {"train": 6000, "val": 1500, "test": 3000}


@dataclass(frozen=True)
class Blindspot:
    """A conjunction of attribute values (always with square = 1)."""

    clauses: tuple[tuple[str, int], ...]

    def holds(self, attrs: dict[str, np.ndarray]) -> np.ndarray:
        return np.logical_and.reduce([attrs[name] == value for name, value in self.clauses])

    def __str__(self) -> str:
        return " & ".join(f"{name}={value}" for name, value in self.clauses)


def _draw_blindspots(rng: np.random.Generator, count: int) -> list[Blindspot]:
    """`count` blindspots of 2-3 clauses besides "square present", each contradicting every
    earlier one in at least two attributes (SpotCheck's validity rule: no blindspot is one flip
    away from another, which would make the two one blindspot of fewer clauses). A
    sub-attribute of the circle or rectangle comes with its object's presence. Drawn again
    from the start when the ones drawn leave no room for the next."""
    while True:
        found: list[Blindspot] = []
        for _ in range(2000):
            clauses = {"square": 1}
            for name in rng.choice(CLAUSES, rng.integers(2, 4), replace=False):
                clauses[str(name)] = int(rng.integers(0, 2))
            for name in list(clauses):
                owner = OWNER.get(name)
                if owner is not None and owner != "square":
                    clauses[owner] = 1
            candidate = Blindspot(tuple(sorted(clauses.items())))
            contradicts = lambda other: sum(dict(other.clauses).get(k, v) != v for k, v in candidate.clauses) >= 2  # noqa: E731
            if all(contradicts(other) for other in found):
                found.append(candidate)
                if len(found) == count:
                    return found


def _place(rng: np.random.Generator, taken: list[tuple[int, int, int, int]], h: int, w: int) -> tuple[int, int]:
    """A top-left corner for an h x w object that overlaps no box in `taken` (given up after 50 tries)."""
    for _ in range(50):
        r, c = int(rng.integers(0, SIZE - h + 1)), int(rng.integers(0, SIZE - w + 1))
        if all(r + h <= r2 or r2 + h2 <= r or c + w <= c2 or c2 + w2 <= c for r2, c2, h2, w2 in taken):
            break
    taken.append((r, c, h, w))
    return r, c


def render(attrs: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """(N, 3, SIZE, SIZE) float32 images in [0, 1] drawn from the attributes."""
    n = len(attrs["square"])
    images = np.empty((n, SIZE, SIZE, 3), np.float32)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    for i in range(n):
        im = images[i]
        im[:] = 0.55 if attrs["background_dark"][i] else 0.9
        if attrs["background_noisy"][i]:
            im[rng.random((SIZE, SIZE)) < 0.1] = 0.3
        taken: list[tuple[int, int, int, int]] = []
        if attrs["square"][i]:
            side = 5 if attrs["square_small"][i] else 9
            r, c = _place(rng, taken, side, side)
            im[r : r + side, c : c + side] = ORANGE if attrs["square_orange"][i] else BLUE
            if attrs["square_striped"][i]:
                im[r : r + side, c : c + side : 2] = 0.0
        if attrs["circle"][i]:
            r, c = _place(rng, taken, 9, 9)
            disk = (yy - r - 4) ** 2 + (xx - c - 4) ** 2 <= 16
            im[disk] = ORANGE if attrs["circle_orange"][i] else BLUE
        if attrs["rectangle"][i]:
            r, c = _place(rng, taken, 4, 11)
            im[r : r + 4, c : c + 11] = ORANGE if attrs["rectangle_orange"][i] else BLUE
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2))


def spotcheck(seed: int = 0, blindspots: int | None = None, counts: dict[str, int] | None = None) -> PlantedProblem:
    """One SpotCheck-style data set: `blindspots` of them (default 1-3, drawn from `seed`).

    Returns a PlantedProblem whose `in_slice` is the union of the blindspots and whose
    `facts["blindspots"]` lists them (`Blindspot`), `facts["attributes"]` every split's
    attributes (name -> (N,) 0/1) and `facts["masks"]` each split's (N, B) blindspot masks.
    """
    rng = np.random.default_rng(seed)
    spots = _draw_blindspots(rng, int(rng.integers(1, 4)) if blindspots is None else blindspots)
    data, in_slice, attributes, masks = {}, {}, {}, {}
    for split, n in (counts or COUNTS).items():
        attrs = {name: rng.integers(0, 2, n) for name in ATTRIBUTES}
        inside = np.stack([b.holds(attrs) for b in spots], axis=1)
        y = attrs["square"].copy()
        if split != "test":  # the blindspots' squares are labelled "no square" where the model learns
            y[inside.any(1)] = 0
        data[split] = ArraySource(render(attrs, rng), y, CLASS_NAMES, name=f"spotcheck/{split}")
        in_slice[split], attributes[split], masks[split] = inside.any(1), attrs, inside
    text = f"{len(spots)} blindspot(s) whose squares are labelled 'no square' in training: " + "; ".join(map(str, spots))
    return PlantedProblem("spotcheck", seed, 1.0, text, Splits(data["train"], data["val"], data["test"]), in_slice,
                          facts={"blindspots": spots, "attributes": attributes, "masks": masks},
                          make_model=lambda: SmallCNN(in_channels=3, num_classes=2, size=SIZE))


def match(members: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall of one mode (its member rows) on each blindspot ((N, B) masks)."""
    if len(members) == 0:
        return np.zeros(masks.shape[1]), np.zeros(masks.shape[1])
    hits = masks[members].sum(0)
    return hits / len(members), hits / np.maximum(masks.sum(0), 1)


#: SpotCheck's bars: a blindspot is discovered by a mode of precision and recall at least these.
PRECISION, RECALL = 0.8, 0.5


def score(modes: list[np.ndarray], masks: np.ndarray, learned: np.ndarray | None = None) -> dict[str, float]:
    """Discovery and false discovery of `modes` (each its member rows) against the blindspots
    ((N, B) masks); `learned` (B,) marks those the model learned (default: all).

    Returns how many learned blindspots there are and how many are discovered (precision >=
    PRECISION and recall >= RECALL by one mode), the modes that match no blindspot, learned or
    not (precision below PRECISION on every one: a mode on a blindspot the model half-learned
    is a true failure, not a false one), and their share of the modes ("fdr", 0 without modes)."""
    learned = np.ones(masks.shape[1], bool) if learned is None else learned
    found = np.zeros(masks.shape[1], bool)
    false = 0
    for members in modes:
        precision, recall = match(members, masks)
        found |= (precision >= PRECISION) & (recall >= RECALL)
        false += not (precision >= PRECISION).any()
    return {"blindspots": int(learned.sum()), "discovered": int((found & learned).sum()), "modes": len(modes), "false": false,
            "fdr": false / len(modes) if modes else 0.0}


#: A blindspot counts when the trained model gets at least this share of its test images
#: wrong: SpotCheck likewise checks that the model learned each blindspot it planted, since
#: one the model reads right is no blindspot to discover.
LEARNED = 0.5
#: The peers scored beside faultlines, by name (faultlines.bench.peers).
PEERS = ("planespot", "kmeans-errors", "sliceline", "cleanlab-group")


def learned_blindspots(wrong: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """(B,) whether the model gets at least LEARNED of each blindspot's rows wrong ((N,) `wrong`, (N, B) `masks`)."""
    return np.array([wrong[masks[:, b]].mean() >= LEARNED for b in range(masks.shape[1])])


def scan_blindspots(seed: int, cache=None, peers: tuple[str, ...] = PEERS) -> list[dict]:
    """One data set: train (or load) its model, scan its test split with `faultlines scan` as
    a user runs it (a new process, default settings), and score every method on the same
    embeddings. Rows: one per method ("scan" is the CLI's significant modes, "scan, every mode"
    all it reported, "error-mixture" that finder's significant modes as `scan --finders
    error-mixture` would report them, then each peer's slices), with `score`'s figures and
    the seed, the blindspots planted and learned."""
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from faultlines.bench.peers import PlaneSpot
    from faultlines.bench.runner import FINDERS, confirmed_matches
    from faultlines.find.error_mixture import ErrorMixture
    from faultlines.model import save_checkpoint
    from faultlines.significance import significant
    from faultlines.store import load_run

    problem = spotcheck(seed)
    model = problem.model(cache)
    with tempfile.TemporaryDirectory() as tmp:
        save_checkpoint(model, Path(tmp) / "model.pt", CLASS_NAMES)
        test = problem.splits.test
        np.savez(Path(tmp) / "test.npz", x=test.x, y=test.y)
        command = [sys.executable, "-m", "faultlines", "scan", "--model", "model.pt", "--data", "test.npz", "--out", "run", "-q"]
        done = subprocess.run(command, cwd=tmp, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"faultlines scan failed on spotcheck seed {seed}: {done.stderr.strip()}")
        result = load_run(Path(tmp) / "run")
    outputs = result.outputs
    masks = problem.facts["masks"]["test"]
    learned = learned_blindspots(~outputs.correct, masks)
    methods = {"scan": [m.members for m in result.modes if significant(m)], "scan, every mode": [m.members for m in result.modes]}
    mixture = confirmed_matches([ErrorMixture(seed=seed)], outputs, masks.any(1), seed)["error-mixture"]
    methods["error-mixture"] = [m.members for m in mixture.modes if significant(m)]
    by_name = FINDERS | {PlaneSpot.name: PlaneSpot}
    for name in peers:
        methods[name] = [m.members for m in by_name[name](seed=seed).find(outputs)]
    return [{"seed": seed, "method": name, "planted": len(learned), "learned": int(learned.sum()),
             "accuracy": outputs.accuracy} | score(found, masks, learned) for name, found in methods.items()]


def summary(rows: list[dict]) -> list[dict]:
    """Per method over every data set: discovery rate (blindspots discovered / learned) and
    false-discovery rate (modes matching no blindspot / modes reported)."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        spots, found = sum(r["blindspots"] for r in mine), sum(r["discovered"] for r in mine)
        modes, false = sum(r["modes"] for r in mine), sum(r["false"] for r in mine)
        out.append({"method": method, "data sets": len(mine), "blindspots": spots, "discovered": found,
                    "discovery rate": found / spots if spots else 0.0, "modes": modes,
                    "false-discovery rate": false / modes if modes else 0.0})
    return out
