"""Read user data from disk: arrays (.npz), image folders, and embedding tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from faultlines.data.sources import ArraySource, EmbeddingTable, TorchSource
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
COLUMNS = {"embedding": "embedding", "label": "label", "probs": "probs", "text": "text"}


def load_embedding_table(path: str | Path, *, embedding: str = "embedding", label: str = "label", probs: str = "probs",
                         text: str = "text", class_names=None) -> EmbeddingTable:
    """An EmbeddingTable from a .parquet file, a .npz, or a folder of .npy files.

    - .parquet: a column of embeddings (`embedding`: lists of floats), of labels (`label`:
      class ids, or class names of any dtype, see `types.encode_labels`), of predicted
      probabilities (`probs`: lists of floats) and optionally of texts (`text`); every other
      column is kept as the samples' metadata (shown in the report, described per mode, kept
      in samples.parquet).
    - .npz or a folder: arrays `embeddings`, `labels`, `probs` (`embeddings.npy`, ... in a
      folder); optional `class_names`; a folder may hold `texts.txt`, one text per line.

    `class_names` (one per column of the probabilities) overrides any the file holds.
    """
    p = _existing(path)
    chosen = {"embedding": embedding, "label": label, "probs": probs, "text": text}
    if p.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(p)
        except Exception as e:  # pyarrow raises several unrelated types for a corrupt file
            raise DataError(f"cannot read {p} as parquet ({e})") from e
        missing = [f"{c} ('{chosen[c]}')" for c in ("label", "probs", "embedding") if chosen[c] not in table.column_names]
        if text != COLUMNS["text"] and text not in table.column_names:
            missing.append(f"text ('{text}')")
        if missing:
            raise DataError(f"{p} lacks the columns for {', '.join(missing)}; it has {', '.join(table.column_names)} "
                            "(name the columns with --embedding-col, --label-col, --probs-col, --text-col)")
        ragged = lambda col: _stack_lists(table.column(col), col, p)  # noqa: E731
        texts = None
        if text in table.column_names:
            if not (pa_string(table.column(text).type)):
                raise DataError(f"column '{text}' of {p} must hold texts (strings), not {table.column(text).type}")
            texts = ["" if t is None else t for t in table.column(text).to_pylist()]
        used = {embedding, label, probs} | ({text} if texts is not None else set())
        rest = [c for c in table.column_names if c not in used]
        return EmbeddingTable(ragged(embedding), table.column(label), ragged(probs), class_names, texts=texts, name=p.name,
                              metadata=table.select(rest) if rest else None)
    if any(chosen[k] != COLUMNS[k] for k in chosen):
        raise DataError(f"the column options (--embedding-col, --label-col, --probs-col, --text-col) are for a .parquet table; "
                        f"{p.name} is read by its array names (embeddings, labels, probs)")
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
    names = arrays.get("class_names") if class_names is None else class_names
    if texts is None and "texts" in arrays:
        texts = arrays["texts"].tolist()
    return EmbeddingTable(arrays["embeddings"], arrays["labels"], arrays["probs"], names, texts, name=p.name)


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


def load(path: str | Path, columns: dict[str, str] | None = None, class_names=None, size: tuple[int, int] | None = None):
    """Open whatever `path` holds: .npz arrays, an image folder, or an embedding table.

    The word "digits" names the embedded digits' test split (seed 0); "digits:train",
    "digits:val" and "digits:test" name each split.

    Args:
        columns: an embedding table's column names, by role (`embedding`, `label`, `probs`,
            `text`; see `load_embedding_table`).
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
    table = p.suffix == ".parquet" or (p.suffix == ".npz" and {"embeddings", "probs"} <= set(_npz(p))) or (p.is_dir() and (p / "embeddings.npy").exists())
    if table:
        return load_embedding_table(p, **(columns or {}), class_names=class_names)
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
