"""The report's pictures, each returned as a PNG data URI so the page needs no other file."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from faultlines.arrays import fit_space, row_chunks, to_space  # noqa: E402
from faultlines.images import png_bytes  # noqa: E402
from faultlines.types import FailureMode, Outputs  # noqa: E402

#: Points drawn in the embedding map at most, and members drawn per mode at most; more are
#: drawn at random. The standardisation and PCA are fitted on the drawn rows.
MAP_POINTS = 20_000
MODE_COLORS = plt.get_cmap("tab10").colors


def png_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _figure_uri(fig: plt.Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return png_uri(buf.getvalue())


def image_uri(image: np.ndarray) -> str:
    """A uint8 image (H, W) or (H, W, 3) as a data URI."""
    return png_uri(png_bytes(image))


def confusion_matrix(outputs: Outputs) -> str:
    """Counts of (true label, prediction), rows = true labels."""
    c = outputs.num_classes
    counts = np.zeros((c, c), int)
    np.add.at(counts, (outputs.labels, outputs.preds), 1)
    side = min(2 + 0.45 * c, 12)
    fig, ax = plt.subplots(figsize=(side, side))
    ax.imshow(np.log1p(counts), cmap="Blues")
    if c <= 20:
        for (i, j), n in np.ndenumerate(counts):
            if n:
                ax.text(j, i, str(n), ha="center", va="center", fontsize=8, color="white" if i == j else "black")
    ticks = np.arange(c) if c <= 30 else np.linspace(0, c - 1, 10).astype(int)
    labels = [outputs.class_names[t][:12] for t in ticks]
    ax.set_xticks(ticks, labels, rotation=90 if c > 10 else 0)
    ax.set_yticks(ticks, labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true label")
    return _figure_uri(fig)


def embedding_map(outputs: Outputs, modes: list[FailureMode], seed: int = 0) -> str:
    """The embeddings on their first two principal components, with each mode's members coloured."""
    rng = np.random.default_rng(seed)
    rows = np.arange(outputs.n) if outputs.n <= MAP_POINTS else np.sort(rng.choice(outputs.n, MAP_POINTS, replace=False))
    shown = [m for m in modes[:10] if m.source == outputs.source]
    # only the rows drawn are projected: the map of a million rows costs what one of MAP_POINTS does
    members = [m.members if len(m.members) <= MAP_POINTS else rng.choice(m.members, MAP_POINTS, replace=False) for m in shown]
    scaler, pca = fit_space(outputs.embeddings, rows, 2, seed)
    needed = np.unique(np.concatenate([rows, *members]))
    xy = np.concatenate([to_space(outputs.embeddings[needed[part]], scaler, pca) for part in row_chunks(len(needed))])
    xy = np.pad(xy, ((0, 0), (0, max(0, 2 - xy.shape[1]))))

    def at(r: np.ndarray) -> np.ndarray:
        return xy[np.searchsorted(needed, r)]

    wrong = ~outputs.correct[rows]
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.scatter(*at(rows[~wrong]).T, s=4, c="#c8c8c8", label="correct", linewidths=0)
    ax.scatter(*at(rows[wrong]).T, s=10, c="#555555", marker="x", label="misclassified", linewidths=0.8)
    for j, (mode, drawn) in enumerate(zip(shown, members)):
        ax.scatter(*at(drawn).T, s=16, facecolors="none", edgecolors=[MODE_COLORS[j % 10]], label=mode.id, linewidths=1)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.legend(loc="best", fontsize=8, markerscale=1.5)
    return _figure_uri(fig)


def density_histograms(log_density: dict[str, list[float]]) -> str:
    """Overlaid histograms of log-density, one per group of inputs."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    values = [np.asarray(v) for v in log_density.values() if len(v)]
    lo, hi = np.percentile(np.concatenate(values), [1, 100])
    bins = np.linspace(lo, hi, 40)
    for (name, v), color in zip(log_density.items(), MODE_COLORS):
        if len(v):
            ax.hist(np.clip(v, lo, hi), bins=bins, density=True, alpha=0.45, color=color, label=f"{name} ({len(v)})")
    ax.set_xlabel("log p(features)  (clipped at the 1st percentile)")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    return _figure_uri(fig)


def sensitivity_maps(maps: np.ndarray, titles: list[str], flagged: list[np.ndarray]) -> str:
    """Heat maps of mean certainty drop under occlusion, one per title (overall first), with
    the flagged regions outlined in each."""
    n = len(maps)
    columns = min(n, 6)
    rows = -(-n // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.9 * columns, 2.1 * rows), squeeze=False)
    top = float(np.max(maps)) or 1.0
    for ax, m, title in zip(axes.flat, maps, titles):
        shown = ax.imshow(m, cmap="magma", vmin=0, vmax=top)
        for j, mask in enumerate(flagged):
            ax.contour(mask.astype(float), levels=[0.5], colors=[MODE_COLORS[j % 10]], linewidths=1.2)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.colorbar(shown, ax=axes.ravel().tolist(), shrink=0.8, label="certainty drop")
    return _figure_uri(fig)
