"""The text benchmark problem: sentiment sentences where one website is rare in training.

Reads the UCI "sentiment labelled sentences" files (amazon, imdb, yelp; 1,000 sentences
each, `sentence<TAB>0|1`) from a folder the caller names: the package ships no data.
Sentences are embedded with MiniLM (`faultlines[text]`), the embeddings cached on disk, and a
linear classifier is trained on them. In training (and validation) only 10% of the rare
website's sentences are kept; the test split has every website at its natural share. The
planted slice is the rare website's test sentences.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from faultlines.bench.planted import PlantedProblem, cache_dir
from faultlines.data.sources import ArraySource, EmbeddingTable, Splits
from faultlines.data.text import EMBEDDING_DIM, embed_texts, read_labelled_sentences
from faultlines.errors import DataError
from faultlines.train import LinearClassifier

SITES = ("amazon", "imdb", "yelp")
FILES = {"amazon": "amazon_cells_labelled.txt", "imdb": "imdb_labelled.txt", "yelp": "yelp_labelled.txt"}
CLASS_NAMES = ("negative", "positive")


def _embeddings(texts: list[str], cache: str | Path | None) -> np.ndarray:
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    path = cache_dir(cache) / f"minilm-{digest}.npy"
    if path.exists():
        return np.load(path)
    emb = embed_texts(texts)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, emb)
    return emb


def sentiment(data_dir: str | Path, seed: int = 0, alpha: float = 1.0, rare: str = "imdb", cache: str | Path | None = None) -> PlantedProblem:
    """The rare-website problem. `alpha` sets the rarity: 1 - 0.9 alpha of the rare site is kept (10% at 1.0)."""
    if rare not in SITES:
        raise DataError(f"unknown website {rare!r}; choose from {', '.join(SITES)}")
    texts, labels, site = [], [], []
    for s in SITES:
        t, y = read_labelled_sentences(Path(data_dir) / FILES[s])
        texts += t
        labels.append(y)
        site += [s] * len(t)
    y, site = np.concatenate(labels), np.array(site)
    x = _embeddings(texts, cache)
    strata = np.char.add(site, y.astype(str))
    idx = np.arange(len(y))
    rest, test = train_test_split(idx, test_size=0.35, stratify=strata, random_state=seed)
    train, val = train_test_split(rest, test_size=0.15 / 0.65, stratify=strata[rest], random_state=seed)
    rng = np.random.default_rng(seed)
    keep = 1.0 - 0.9 * alpha

    def thin(rows: np.ndarray) -> np.ndarray:
        rare_rows = rows[site[rows] == rare]
        kept = rng.choice(rare_rows, int(round(keep * len(rare_rows))), replace=False)
        return np.sort(np.concatenate([rows[site[rows] != rare], kept]))

    parts = {"train": thin(train), "val": thin(val), "test": np.sort(test)}
    sources = {
        name: ArraySource(x[rows], y[rows], CLASS_NAMES, name=f"sentiment/{name}", texts=[texts[i] for i in rows])
        for name, rows in parts.items()
    }
    in_slice = {name: site[rows] == rare for name, rows in parts.items()}
    text = f"{rare} sentences kept at {keep:.0%} in training ({in_slice['train'].sum()}), {in_slice['test'].sum()} at test"
    return PlantedProblem(
        "text", seed, alpha, text, Splits(**sources), in_slice,
        facts={"rare_site": rare, "site": {name: site[rows].tolist() for name, rows in parts.items()}},
        make_model=lambda: LinearClassifier(EMBEDDING_DIM, 2),
    )


def failing_site(problem: PlantedProblem, site: str = "yelp", share: float = 0.4, seed: int = 0) -> tuple[EmbeddingTable, np.ndarray, np.ndarray]:
    """The text problem's test split as the embedding table a model that fails on one website
    would give: its trained model's outputs, with the probabilities of `share` of `site`'s
    sentences swapped (the planted failure). Returns the table (texts, no metadata), each
    row's website (for a caller to add as metadata or not) and which rows were swapped."""
    from faultlines.model import Classifier
    from faultlines.probe import probe

    test = problem.splits.test
    out = probe(Classifier(problem.model()), test, quiet=True)
    sites = np.array(problem.facts["site"]["test"])
    probs = out.probs.copy()
    planted = (sites == site) & (np.random.default_rng(seed).random(len(sites)) < share)
    probs[planted] = probs[planted][:, ::-1]
    return EmbeddingTable(out.embeddings, out.labels, probs, CLASS_NAMES, texts=test.texts, name=f"sentiment/test, {site} failing"), sites, planted
