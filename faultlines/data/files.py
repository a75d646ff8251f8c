"""Read user data from disk: arrays (.npz), image folders, and embedding tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faultlines.data.sources import ArraySource, EmbeddingTable
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


def load_npz(path: str | Path, x_key: str = "x", y_key: str = "y") -> ArraySource:
    """An ArraySource from a .npz holding inputs `x` and labels `y` (and optionally `class_names`)."""
    p = _existing(path)
    arrays = _npz(p)
    missing = [k for k in (x_key, y_key) if k not in arrays]
    if missing:
        raise DataError(f"{p} has no array named {missing}; it holds {sorted(arrays)}")
    names = arrays.get("class_names")
    return ArraySource(arrays[x_key], arrays[y_key], None if names is None else names.tolist(), name=p.name)


def image_folder(path: str | Path, size: tuple[int, int] | int | None = None, grayscale: bool | None = None) -> ArraySource:
    """Images in one sub-folder per class (`root/cat/001.png`), read with Pillow.

    Args:
        path: the root folder; class names are the sub-folder names, sorted.
        size: (height, width) to resize every image to; default: the size of the first
            image, and every other image must match it.
        grayscale: read as one channel; default: one channel if every image is grayscale.

    Returns:
        ArraySource with x of shape (N, C, H, W), float32 in [0, 1].
    """
    from PIL import Image

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
    images = [_read_image(f) for f, _ in files]
    if grayscale is None:
        grayscale = all(im.mode in ("L", "1", "I", "I;16", "F", "LA") for im in images)
    if hw is None:
        hw = (images[0].height, images[0].width)
        odd = next(((f, im) for (f, _), im in zip(files, images) if (im.height, im.width) != hw), None)
        if odd is not None:
            raise DataError(
                f"{odd[0]} is {odd[1].height}x{odd[1].width} but {files[0][0]} is {hw[0]}x{hw[1]}; "
                "pass size=(height, width) to resize all images"
            )
    arrays = []
    for (f, _), im in zip(files, images):
        try:
            im = _as_8bit(im).convert("L" if grayscale else "RGB")
            if (im.height, im.width) != hw:
                im = im.resize((hw[1], hw[0]), Image.BILINEAR)
        except (OSError, ValueError) as e:
            raise DataError(f"cannot convert image {f} (mode {im.mode}) to {'grayscale' if grayscale else 'RGB'} ({e}); convert it to PNG") from e
        a = np.asarray(im, dtype=np.float32) / 255.0
        arrays.append(a[None] if grayscale else np.moveaxis(a, -1, 0))
    return ArraySource(np.stack(arrays), np.array([label for _, label in files]), classes, name=root.name)


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


def load_embedding_table(path: str | Path) -> EmbeddingTable:
    """An EmbeddingTable from a .parquet file, a .npz, or a folder of .npy files.

    - .parquet: columns `label` (int), `probs` (list of floats), `embedding` (list of
      floats); optional `text`.
    - .npz or a folder: arrays `embeddings`, `labels`, `probs` (`embeddings.npy`, ... in a
      folder); optional `class_names`; a folder may hold `texts.txt`, one text per line.
    """
    p = _existing(path)
    if p.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(p)
        except Exception as e:  # pyarrow raises several unrelated types for a corrupt file
            raise DataError(f"cannot read {p} as parquet ({e})") from e
        missing = [c for c in ("label", "probs", "embedding") if c not in table.column_names]
        if missing:
            raise DataError(f"{p} lacks the columns {missing}; it has {table.column_names}")
        ragged = lambda col: _stack_lists(table.column(col), col, p)  # noqa: E731
        texts = table.column("text").to_pylist() if "text" in table.column_names else None
        return EmbeddingTable(ragged("embedding"), np.asarray(table.column("label")), ragged("probs"), texts=texts, name=p.name)
    if p.is_dir():
        # the embeddings are read memory-mapped: only the rows in use need be in memory
        arrays = {f.stem: _load_npy(f, mmap=f.stem == "embeddings") for f in p.glob("*.npy")}
        texts_file = p / "texts.txt"
        texts = texts_file.read_text(encoding="utf-8").splitlines() if texts_file.exists() else None
    else:
        arrays, texts = _npz(p), None
    missing = [k for k in ("embeddings", "labels", "probs") if k not in arrays]
    if missing:
        raise DataError(f"{p} lacks {missing}; an embedding table needs embeddings, labels and probs")
    names = arrays.get("class_names")
    if texts is None and "texts" in arrays:
        texts = arrays["texts"].tolist()
    mapped = p.is_dir() and arrays["embeddings"].dtype == np.float32
    return EmbeddingTable(
        arrays["embeddings"], arrays["labels"], arrays["probs"],
        names, texts, name=p.name,
        embeddings_file=str((p / "embeddings.npy").resolve()) if mapped else None,
    )


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


def load(path: str | Path) -> ArraySource | EmbeddingTable:
    """Open whatever `path` holds: .npz arrays, an image folder, or an embedding table.

    The word "digits" names the embedded digits' test split (seed 0); "digits:train",
    "digits:val" and "digits:test" name each split.
    """
    if str(path) in ("digits", "digits:train", "digits:val", "digits:test"):
        from faultlines.data.digits import digits

        return getattr(digits(), str(path).partition(":")[2] or "test")
    p = _existing(path)
    if p.suffix == ".parquet":
        return load_embedding_table(p)
    if p.suffix == ".npz":
        keys = set(_npz(p))
        return load_embedding_table(p) if {"embeddings", "probs"} <= keys else load_npz(p)
    if p.is_dir():
        return load_embedding_table(p) if (p / "embeddings.npy").exists() else image_folder(p)
    raise DataError(f"do not know how to read {p}: give a .npz, a .parquet, or a folder")


def load_mask(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """An (H, W) region mask from a .npy array of 0/1 or True/False, checked against the images' size."""
    from faultlines.types import check_mask

    p = _existing(path)
    if p.suffix != ".npy":
        raise DataError(f"give the mask as a .npy file holding an (H, W) array of 0/1, not {p.name}")
    return check_mask(_load_npy(p), shape, f"mask in {p.name}")
