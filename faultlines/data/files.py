"""Read user data from disk: arrays (.npz), image folders, and embedding tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from faultlines.data.sources import ArraySource, EmbeddingTable, TorchSource, as_failed
from faultlines.errors import DataError, first_line

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}


def _existing(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise DataError(f"no such file or directory: {p}")
    return p


def _npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path} as a numpy .npz file ({e})") from e


def load_npz(path: str | Path, x_key: str = "x", y_key: str = "y", class_names=None) -> ArraySource:
    """An ArraySource from a .npz holding inputs `x` and labels `y` (and optionally `class_names`,
    which `class_names` overrides)."""
    p = _existing(path)
    arrays = _npz(p)
    missing = [k for k in (x_key, y_key) if k not in arrays]
    if missing:
        raise DataError(f"{p} has no array named {missing}; it holds {sorted(arrays)}")
    names = arrays.get("class_names") if class_names is None else class_names
    return ArraySource(arrays[x_key], arrays[y_key], names.tolist() if isinstance(names, np.ndarray) else names, name=p.name)


def image_folder(path: str | Path, size: tuple[int, int] | int | None = None, grayscale: bool | None = None) -> TorchSource:
    """Images in one sub-folder per class (`root/cat/001.png`), read with Pillow a batch at a
    time, as the model runs (never all in memory at once).

    Args:
        path: the root folder; class names are the sub-folder names, sorted.
        size: (height, width) to resize every image to; default: the size of the first
            image, and every other image must match it.
        grayscale: read as one channel; default: one channel if the first image is grayscale.

    Returns:
        A TorchSource whose inputs are (C, H, W) float32 in [0, 1], with each image's path
        (relative to `path`) as the metadata column `path`.
    """
    hw = _image_size(size)
    root = _existing(path)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder: an image folder holds one sub-folder per class")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files = [
        (f, label)
        for label, c in enumerate(classes)
        for f in sorted((root / c).iterdir())
        if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".") and f.is_file()
    ]
    if not files:
        raise DataError(f"no images found under {root}: expected {root}/<class>/<image>.png (or .jpg)")
    first = _read_image(files[0][0])
    if grayscale is None:
        grayscale = first.mode in GRAY_MODES
    images = ImageFiles([f for f, _ in files], [label for _, label in files], hw or (first.height, first.width), grayscale,
                        resized=hw is not None)
    paths = [str(f.relative_to(root)) for f, _ in files]
    return TorchSource(images, classes, name=root.name, metadata={"path": paths})


#: Pillow modes read as one channel.
GRAY_MODES = ("L", "1", "I", "I;16", "I;16B", "I;16L", "F", "LA")


class ImageFiles(torch.utils.data.Dataset):
    """Image files and their labels as a torch Dataset: item i is (the image as a (C, H, W)
    float32 tensor in [0, 1], its label), read when asked for (in DataLoader workers too)."""

    def __init__(self, files: list[Path], labels: list[int], size: tuple[int, int], grayscale: bool, resized: bool) -> None:
        self.files, self.labels, self.size, self.grayscale, self.resized = files, labels, size, grayscale, resized

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        f = self.files[i]
        im = _read_image(f)
        if (im.height, im.width) != self.size and not self.resized:
            raise DataError(f"{f} is {im.height}x{im.width} but {self.files[0]} is {self.size[0]}x{self.size[1]}; resize all "
                            "images to one size: image_folder(size=(H, W)), or --preprocess resize=H,W on the command line")
        try:
            im = _as_8bit(im).convert("L" if self.grayscale else "RGB")
            if (im.height, im.width) != self.size:
                im = im.resize((self.size[1], self.size[0]), Image.BILINEAR)
        except (OSError, ValueError) as e:
            raise DataError(f"cannot convert image {f} (mode {im.mode}) to {'grayscale' if self.grayscale else 'RGB'} ({e}); convert it to PNG") from e
        a = np.asarray(im, dtype=np.float32) / 255.0
        return torch.from_numpy(a[None] if self.grayscale else np.moveaxis(a, -1, 0).copy()), self.labels[i]


def _image_size(size) -> tuple[int, int] | None:
    """`size` as (height, width) of positive whole numbers, or None; a DataError otherwise."""
    if size is None:
        return None
    hw = (size, size) if isinstance(size, (int, np.integer)) and not isinstance(size, bool) else size
    if (not isinstance(hw, (tuple, list)) or len(hw) != 2
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in hw)):
        raise DataError(f"size must be a positive whole number or (height, width) of them, not {size!r}")
    return int(hw[0]), int(hw[1])


def _read_image(f: Path):
    from PIL import Image

    try:
        with Image.open(f) as im:
            im.load()
            return im.copy()
    except Exception as e:  # Pillow raises many types for a corrupt or unsupported file (OSError, SyntaxError, ...)
        raise DataError(f"cannot read image {f} ({first_line(e)}); remove or replace it") from e


def _as_8bit(im):
    """16-bit, 32-bit integer and float images scaled to 8 bits (Pillow's convert would clip them)."""
    from PIL import Image

    if im.mode not in ("I", "I;16", "I;16B", "I;16L", "F"):
        return im
    a = np.asarray(im, dtype=np.float64)
    if not np.isfinite(a).all():
        raise DataError("an image holds NaN or infinite pixel values")
    peak = float(a.max()) if a.size else 0.0
    top = 255.0 if peak <= 255 and not im.mode.startswith("I;16") else 65535.0 if peak <= 65535 else peak
    return Image.fromarray(np.clip(a / top * 255.0, 0, 255).astype(np.uint8), "L")


#: The columns an embedding table's .parquet is read from, by default (`load_embedding_table`).
COLUMNS = {"embedding": "embedding", "label": "label", "probs": "probs", "text": "text",
           "loss": "loss", "score": "score", "passed": "passed", "failed": "failed"}
#: The outcome of a model without classes, by role: the column (.parquet) and the array (.npz, a folder).
OUTCOMES = {"loss": "losses", "score": "scores", "passed": "passed", "failed": "failed"}


def load_embedding_table(path: str | Path, *, embedding: str = "embedding", label: str = "label", probs: str = "probs",
                         text: str = "text", loss: str = "loss", score: str = "score", passed: str = "passed",
                         failed: str = "failed", class_names=None, higher_is_better: bool | None = None,
                         threshold: float | None = None, quiet: bool = True) -> EmbeddingTable:
    """An EmbeddingTable from a .parquet file, a .npz, or a folder of .npy files.

    What the model did on each row is either a classifier's (a column of labels, `label`:
    class ids, or class names of any dtype, see `types.encode_labels`, and of predicted
    probabilities, `probs`: lists of floats), or any model's: a per-row `loss` (lower is
    better), a `score` (with `higher_is_better` saying its direction: it is never guessed),
    and/or a `passed` or `failed` column (true/false, 0/1, yes/no, pass/fail); `threshold`
    makes a loss above it a failure (default: above the median loss, `Outputs.failures`).

    - .parquet: a column of embeddings (`embedding`: lists of floats), the outcome columns and
      optionally texts (`text`); every other column is kept as the samples' metadata (shown
      in the report, described per mode, kept in samples.parquet). A table with texts and no
      embeddings has its texts embedded with the text extra's MiniLM (offline).
    - .npz or a folder: arrays `embeddings`, and `labels` and `probs`, or `losses`, `scores`,
      `passed`, `failed` (`embeddings.npy`, ... in a folder); optional `class_names`; a folder
      may hold `texts.txt`, one text per line.

    `class_names` (one per column of the probabilities) overrides any the file holds.
    """
    p = _existing(path)
    chosen = {"embedding": embedding, "label": label, "probs": probs, "text": text, "loss": loss, "score": score,
              "passed": passed, "failed": failed}
    if p.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(p)
        except Exception as e:  # pyarrow raises several unrelated types for a corrupt file
            raise DataError(f"cannot read {p} as parquet ({e})") from e
        has = lambda role: chosen[role] in table.column_names  # noqa: E731
        named = [role for role in ("text", *OUTCOMES) if chosen[role] != COLUMNS[role] and not has(role)]
        outcome = [role for role in OUTCOMES if has(role)]
        classed = has("label") or has("probs") or not outcome
        missing = [f"{c} ('{chosen[c]}')" for c in (("label", "probs") if classed else ()) if not has(c)]
        if not has("embedding") and not has("text"):
            missing.append(f"embedding ('{embedding}')")
        missing += [f"{c} ('{chosen[c]}')" for c in named]
        if missing:
            raise DataError(f"{p} lacks the columns for {', '.join(missing)}; it has {', '.join(table.column_names)} "
                            "(name the columns with --embedding-col, --label-col, --probs-col, --text-col; a model without "
                            "classes needs a loss, score, passed or failed column: --loss-col, --score-col, --passed-col, --failed-col)")
        texts = None
        if has("text"):
            if not (pa_string(table.column(text).type)):
                raise DataError(f"column '{text}' of {p} must hold texts (strings), not {table.column(text).type}")
            texts = ["" if t is None else t for t in table.column(text).to_pylist()]
        if has("embedding"):
            vectors = _stack_lists(table.column(embedding), embedding, p)
        else:
            from faultlines.data.text import embed_texts

            vectors = embed_texts(texts, quiet=quiet)
        used = {embedding} | ({text} if texts is not None else set()) | (
            {label, probs} if classed else {chosen[role] for role in outcome})
        rest = [c for c in table.column_names if c not in used]
        metadata = table.select(rest) if rest else None
        if classed:
            return EmbeddingTable(vectors, table.column(label), _stack_lists(table.column(probs), probs, p), class_names,
                                  texts=texts, name=p.name, metadata=metadata)
        columns = {role: _numbers(table.column(chosen[role]), chosen[role], p) if role in ("loss", "score") else table.column(chosen[role])
                   for role in outcome}
        return outcome_table(vectors, columns, texts, p.name, metadata, higher_is_better, threshold, class_names)
    if any(chosen[k] != COLUMNS[k] for k in chosen):
        raise DataError(f"the column options (--embedding-col, --label-col, --probs-col, --text-col, --loss-col, ...) are "
                        f"for a .parquet table; {p.name} is read by its array names (embeddings, labels, probs, losses, ...)")
    if p.is_dir():
        # the embeddings are read memory-mapped: only the rows in use need be in memory
        arrays = {f.stem: _load_npy(f, mmap=f.stem == "embeddings") for f in p.glob("*.npy")}
        texts_file = p / "texts.txt"
        texts = texts_file.read_text(encoding="utf-8").splitlines() if texts_file.exists() else None
    else:
        arrays, texts = _npz(p), None
    if texts is None and "texts" in arrays:
        texts = arrays["texts"].tolist()
    outcome = {role: arrays[name] for role, name in OUTCOMES.items() if name in arrays}
    if "embeddings" in arrays and outcome and "labels" not in arrays and "probs" not in arrays:
        return outcome_table(arrays["embeddings"], outcome, texts, p.name, None, higher_is_better, threshold, class_names)
    missing = [k for k in ("embeddings", "labels", "probs") if k not in arrays]
    if missing:
        raise DataError(f"{p} lacks {missing}; an embedding table needs embeddings, and labels and probs (a classifier) "
                        "or losses, scores, passed or failed (any model)")
    names = arrays.get("class_names") if class_names is None else class_names
    return EmbeddingTable(arrays["embeddings"], arrays["labels"], arrays["probs"], names, texts, name=p.name)


def _numbers(column, name: str, path: Path) -> np.ndarray:
    """A parquet column of one number per row as float64; a DataError for missing values or others."""
    import pyarrow as pa

    if column.null_count:
        raise DataError(f"column '{name}' of {path} has {column.null_count} missing values; give every row one")
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_boolean(column.type)):
        raise DataError(f"column '{name}' of {path} must hold numbers, not {column.type}")
    return column.to_numpy().astype(np.float64)


def outcome_table(embeddings, columns: dict[str, Any], texts, name: str, metadata, higher_is_better: bool | None,
                   threshold: float | None, class_names) -> EmbeddingTable:
    """An EmbeddingTable of a model without classes from its outcome columns, by role (OUTCOMES)."""
    if class_names is not None:
        raise DataError("class names are for a classifier's table (labels and probabilities); this one has a loss or a pass/fail per row")
    if "passed" in columns and "failed" in columns:
        raise DataError("give a passed or a failed column, not both")
    if "loss" in columns and "score" in columns:
        raise DataError("give a loss or a score column, not both")
    if "score" in columns and higher_is_better is None:
        raise DataError("say which way the score goes: --higher-is-better or --lower-is-better (higher_is_better= in the API)")
    if higher_is_better is not None and "score" not in columns:
        raise DataError("--higher-is-better / --lower-is-better is for a score column; a loss is always lower-is-better")
    failed = None
    if "passed" in columns or "failed" in columns:
        failed = as_failed(columns.get("passed", columns.get("failed")), passed="passed" in columns)
    losses = columns.get("loss")
    if "score" in columns:
        losses = -np.asarray(columns["score"], np.float64) if higher_is_better else np.asarray(columns["score"], np.float64)
    return EmbeddingTable(embeddings, texts=texts, name=name, metadata=metadata, losses=losses, failed=failed, threshold=threshold)


def pa_string(kind) -> bool:
    """Whether a pyarrow type holds strings."""
    import pyarrow as pa

    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def _load_npy(f: Path, mmap: bool = False) -> np.ndarray:
    try:
        return np.load(f, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {f} as a numpy .npy file ({e})") from e


def _stack_lists(values, column: str, path: Path) -> np.ndarray:
    """A parquet column of equal-length lists as an (N, width) float32 array, without Python rows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    values = values.combine_chunks()
    if not (pa.types.is_list(values.type) or pa.types.is_large_list(values.type) or pa.types.is_fixed_size_list(values.type)):
        raise DataError(f"column '{column}' of {path} must hold lists of numbers, not {values.type}")
    lengths = pc.list_value_length(values)
    if values.null_count or len(values) and pc.min_max(lengths)["min"] != pc.min_max(lengths)["max"]:
        raise DataError(f"column '{column}' of {path} must hold lists of one length in every row")
    flat = values.flatten()
    if flat.null_count:
        raise DataError(f"column '{column}' of {path} holds missing numbers")
    try:
        return flat.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(len(values), -1)
    except (pa.ArrowInvalid, ValueError, TypeError) as e:
        raise DataError(f"column '{column}' of {path} must hold lists of numbers ({e})") from e


#: The words `load` reads as the embedded digits' splits, not as paths.
DIGITS_SPECS = ("digits", "digits:train", "digits:val", "digits:test")


def load(path: str | Path, columns: dict[str, str] | None = None, class_names=None, size: tuple[int, int] | None = None,
         higher_is_better: bool | None = None, threshold: float | None = None, quiet: bool = True):
    """Open whatever `path` holds: .npz arrays, an image folder, or an embedding table.

    The word "digits" names the embedded digits' test split (seed 0); "digits:train",
    "digits:val" and "digits:test" name each split.

    Args:
        columns: an embedding table's column names, by role (`embedding`, `label`, `probs`,
            `text`, `loss`, `score`, `passed`, `failed`; see `load_embedding_table`).
        higher_is_better, threshold: an embedding table's score direction and loss threshold
            (`load_embedding_table`).
        class_names: one name per class, overriding any the data holds (not for image folders,
            whose sub-folders name the classes, or the digits).
        size: (height, width) to resize an image folder's images to.
    """
    if str(path) in DIGITS_SPECS:
        if columns or class_names is not None:
            raise DataError("the digits have their own columns and class names")
        from faultlines.data.digits import digits

        return getattr(digits(), str(path).partition(":")[2] or "test")
    p = _existing(path)
    held = set(_npz(p)) if p.suffix == ".npz" else set()
    table = p.suffix == ".parquet" or ("embeddings" in held and bool(held & {"probs", *OUTCOMES.values()})) or (
        p.is_dir() and (p / "embeddings.npy").exists())
    if table:
        return load_embedding_table(p, **(columns or {}), class_names=class_names, higher_is_better=higher_is_better,
                                    threshold=threshold, quiet=quiet)
    if higher_is_better is not None or threshold is not None:
        raise DataError(f"--higher-is-better, --lower-is-better and --loss-threshold are for a table of losses or scores, not {p.name}")
    if columns:
        raise DataError(f"the column options (--embedding-col, --label-col, --probs-col, --text-col) are for an embedding table, not {p.name}")
    if p.suffix == ".npz":
        return load_npz(p, class_names=class_names)
    if p.is_dir():
        if class_names is not None:
            raise DataError(f"an image folder's sub-folders name its classes ({p}); rename them instead of giving class names")
        return image_folder(p, size=size)
    raise DataError(f"do not know how to read {p}: give a .npz, a .parquet, or a folder")


def load_mask(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """An (H, W) region mask from a .npy array of 0/1 or True/False, checked against the images' size."""
    from faultlines.types import check_mask

    p = _existing(path)
    if p.suffix != ".npy":
        raise DataError(f"give the mask as a .npy file holding an (H, W) array of 0/1, not {p.name}")
    return check_mask(_load_npy(p), shape, f"mask in {p.name}")
