"""The report's pictures, each returned as a PNG data URI so the page needs no other file."""

from __future__ import annotations

import base64
import html
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


def loss_histogram(outputs: Outputs) -> str:
    """The distribution of the losses, of the rows that fail and of the rest (outputs without classes)."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    bins = np.histogram_bin_edges(outputs.losses, bins=40)
    for rows, name, color in ((~outputs.failures, "passes", "#9ecae1"), (outputs.failures, outputs.failure_kind, "#d62728")):
        ax.hist(outputs.losses[rows], bins=bins, color=color, alpha=0.8, label=f"{name} ({int(rows.sum())})")
    ax.set_xlabel("loss")
    ax.set_ylabel("rows")
    ax.legend(fontsize=8)
    return _figure_uri(fig)


def _projection(outputs: Outputs, modes: list[FailureMode], seed: int, limit: int = 10):
    """The rows the map draws (at most MAP_POINTS), the modes shown (the first `limit` about
    these outputs) with the members drawn of each, and a function from rows to their first two
    principal components. Only the rows drawn are projected: the map of a million rows costs
    what one of MAP_POINTS does."""
    rng = np.random.default_rng(seed)
    rows = np.arange(outputs.n) if outputs.n <= MAP_POINTS else np.sort(rng.choice(outputs.n, MAP_POINTS, replace=False))
    shown = [m for m in modes if m.source == outputs.source][:limit]
    members = [m.members if len(m.members) <= MAP_POINTS else rng.choice(m.members, MAP_POINTS, replace=False) for m in shown]
    scaler, pca = fit_space(outputs.embeddings, rows, 2, seed)
    needed = np.unique(np.concatenate([rows, *members]))
    xy = np.concatenate([to_space(outputs.embeddings[needed[part]], scaler, pca) for part in row_chunks(len(needed))])
    xy = np.pad(xy, ((0, 0), (0, max(0, 2 - xy.shape[1]))))

    def at(r: np.ndarray) -> np.ndarray:
        return xy[np.searchsorted(needed, r)]

    return rows, shown, members, at


def outcome_legend(outputs: Outputs) -> tuple[str, str]:
    """What the map calls the rows that do not fail and those that do."""
    return ("correct", "misclassified") if outputs.has_classes else ("passes", outputs.failure_kind)


def embedding_map(outputs: Outputs, modes: list[FailureMode], seed: int = 0) -> str:
    """The embeddings on their first two principal components, with each mode's members coloured."""
    rows, shown, members, at = _projection(outputs, modes, seed)
    wrong = ~outputs.correct[rows]
    right_name, wrong_name = outcome_legend(outputs)
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.scatter(*at(rows[~wrong]).T, s=4, c="#c8c8c8", label=right_name, linewidths=0)
    ax.scatter(*at(rows[wrong]).T, s=10, c="#555555", marker="x", label=wrong_name, linewidths=0.8)
    for j, (mode, drawn) in enumerate(zip(shown, members)):
        ax.scatter(*at(drawn).T, s=16, facecolors="none", edgecolors=[MODE_COLORS[j % 10]], label=mode.id, linewidths=1)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.legend(loc="best", fontsize=8, markerscale=1.5)
    return _figure_uri(fig)


def interactive_map(outputs: Outputs, modes: list[FailureMode], texts: list[str] | None = None, seed: int = 0) -> str | None:
    """The embedding map as a plotly figure (its JavaScript inlined, so the page needs no
    network): hovering a point shows its row, label, prediction and loss (and text); each mode
    is a legend entry that shows or hides its members (double-click: that mode alone).
    None when plotly is not installed (the report then shows `embedding_map`)."""
    try:
        import plotly.graph_objects as go
    except ImportError:
        return None
    rows, shown, members, at = _projection(outputs, modes, seed, limit=20)
    names = np.asarray(outputs.class_names, dtype=object)

    def hover(r: np.ndarray) -> list[str]:
        # plotly reads a few HTML tags in hover text: everything the user gave is escaped
        if outputs.has_classes:
            out = [f"#{i}: {html.escape(names[outputs.labels[i]])} → {html.escape(names[outputs.preds[i]])}, loss {outputs.losses[i]:.2f}"
                   for i in r]
        else:
            out = [f"#{i}: {'fails' if outputs.failures[i] else 'passes'}, loss {outputs.losses[i]:.3g}" for i in r]
        if texts is not None:
            out = [f"{h}<br>{html.escape(texts[i][:90])}" for h, i in zip(out, r)]
        return out

    fig = go.Figure()
    wrong = ~outputs.correct[rows]
    right_name, wrong_name = outcome_legend(outputs)
    for part, name, style in ((rows[~wrong], right_name, dict(size=4, color="#c8c8c8")),
                              (rows[wrong], wrong_name, dict(size=7, color="#555555", symbol="x"))):
        xy = at(part)
        fig.add_trace(go.Scattergl(x=xy[:, 0], y=xy[:, 1], mode="markers", name=name, marker=style, customdata=part,
                                   hovertext=hover(part), hoverinfo="text"))
    for j, (mode, drawn) in enumerate(zip(shown, members)):
        xy = at(drawn)
        color = "#%02x%02x%02x" % tuple(int(255 * c) for c in MODE_COLORS[j % 10][:3])
        fig.add_trace(go.Scattergl(x=xy[:, 0], y=xy[:, 1], mode="markers", name=mode.id, customdata=drawn,
                                   marker=dict(size=10, color="rgba(0,0,0,0)", line=dict(width=1.5, color=color)),
                                   hovertext=hover(drawn), hoverinfo="text"))
    fig.update_layout(height=560, margin=dict(l=40, r=10, t=10, b=40), xaxis_title="PC 1", yaxis_title="PC 2",
                      legend=dict(itemclick="toggle", itemdoubleclick="toggleothers"), template="plotly_white")
    return fig.to_html(full_html=False, include_plotlyjs=True, div_id="embedding-map", config={"displaylogo": False})


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
