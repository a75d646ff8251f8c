"""The text benchmark problem: sentiment sentences where one website is rare and one-sided in training.

Reads the UCI "sentiment labelled sentences" files (amazon, imdb, yelp; 1,000 sentences
each, `sentence<TAB>0|1`) from a folder the caller names: the package ships no data.
Sentences are embedded with MiniLM (`faultlines[text]`), the embeddings cached on disk, and a
linear classifier is trained on them. In training (and validation) only 10% of the rare
website's sentences are kept, and those are its negative ones, as if they had been collected
from complaints; the test split has every website at its natural share and balance. The
planted slice is the rare website's test sentences.

Rarity alone planted almost nothing: MiniLM's sentiment carries across websites, and with imdb
kept at 10% (both labels) a linear model misread 14-17% of imdb's test sentences against 11-12%
of the rest (8-11% with imdb kept whole), too little for the slice itself to be a significant
failure on the held-out half `scan` measures it on (p 0.06-0.24). One-sided, the model reads
movie reviews as negative: 22-25% of imdb wrong (about half its positive sentences), p 6e-6 to
9e-4 (seeds 0-2). `tests/test_text_bench.py` checks it in seed 0.
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


def sentiment(data_dir: str | Path, seed: int = 0, alpha: float = 1.0, rare: str | None = "imdb",
              cache: str | Path | None = None) -> PlantedProblem:
    """The rare-website problem. `alpha` sets the rarity and the one-sidedness: 1 - 0.9 alpha
    of the rare site's training (and validation) sentences are kept, a share 0.5 + 0.5 alpha of
    them negative (10%, all negative, at 1.0). `rare=None` plants nothing: every website whole
    (the planted slice is empty)."""
    if rare is not None and rare not in SITES:
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
    keep, negative = 1.0 - 0.9 * alpha, 0.5 + 0.5 * alpha

    def thin(rows: np.ndarray) -> np.ndarray:
        rare_rows = rows[site[rows] == rare]
        n = round(keep * len(rare_rows))
        by_label = [rare_rows[y[rare_rows] == label] for label in (0, 1)]
        n_neg = min(round(negative * n), len(by_label[0]))
        kept = [rng.choice(by_label[0], n_neg, replace=False), rng.choice(by_label[1], n - n_neg, replace=False)]
        return np.sort(np.concatenate([rows[site[rows] != rare], *kept]))

    parts = {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}
    if rare is not None:
        parts |= {"train": thin(train), "val": thin(val)}
    sources = {
        name: ArraySource(x[rows], y[rows], CLASS_NAMES, name=f"sentiment/{name}", texts=[texts[i] for i in rows])
        for name, rows in parts.items()
    }
    in_slice = {name: (site[rows] == rare) if rare else np.zeros(len(rows), bool) for name, rows in parts.items()}
    text = (f"{rare} sentences kept at {keep:.0%} in training, {negative:.0%} of them negative ({in_slice['train'].sum()}), "
            f"{in_slice['test'].sum()} at test" if rare else "every website whole in training: nothing planted")
    return PlantedProblem(
        "text", seed, alpha, text, Splits(**sources), in_slice,
        facts={"rare_site": rare, "site": {name: site[rows].tolist() for name, rows in parts.items()}},
        make_model=lambda: LinearClassifier(EMBEDDING_DIM, 2),
    )


def failing_site(problem: PlantedProblem, site: str = "yelp", share: float = 0.4, seed: int = 0) -> tuple[EmbeddingTable, np.ndarray, np.ndarray]:
    """A text problem's test split as the embedding table a model that fails on one website
    would give: its trained model's outputs, with the probabilities of `share` of `site`'s
    sentences swapped (the planted failure). Give it `sentiment(folder, rare=None)`, whose
    model has no planted failure of its own. Returns the table (texts, no metadata), each
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
