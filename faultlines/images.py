"""Images for people: a sample as a displayable uint8 picture, PNG bytes, and a grid of samples.

The ground floor: numpy and Pillow only, so data sources, the run store, the report and the
CLI can all show images without importing one another.
"""

from __future__ import annotations

import io

import numpy as np


def to_image_uint8(x: np.ndarray) -> np.ndarray | None:
    """One sample as a displayable uint8 image, (H, W) or (H, W, 3); None if it is not an image.

    Inputs in [0, 1] are scaled by 255; any other range is stretched per image.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 3 and x.shape[0] in (1, 3):
        x = x[0] if x.shape[0] == 1 else np.moveaxis(x, 0, -1)
    elif not (x.ndim == 2 or (x.ndim == 3 and x.shape[-1] == 3)):
        return None
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    return np.round(x * 255).astype(np.uint8)


def png_bytes(image: np.ndarray, scale: int = 1) -> bytes:
    """A uint8 image (H, W) or (H, W, 3) as PNG bytes, enlarged `scale` times (nearest neighbour)."""
    from PIL import Image

    picture = Image.fromarray(image)
    if scale > 1:
        picture = picture.resize((scale * picture.width, scale * picture.height), Image.NEAREST)
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    return buf.getvalue()


def tile(images: np.ndarray, columns: int = 16, pad: int = 1) -> np.ndarray:
    """(N, C, H, W) images in [0, 1] side by side, `columns` per row, as one uint8 image."""
    images = np.clip(np.asarray(images, np.float32), 0, 1)
    n, c, h, w = images.shape
    rows = -(-n // columns)
    grid = np.ones((c, rows * (h + pad) + pad, columns * (w + pad) + pad), np.float32)
    for i, im in enumerate(images):
        r, q = divmod(i, columns)
        grid[:, pad + r * (h + pad) : pad + r * (h + pad) + h, pad + q * (w + pad) : pad + q * (w + pad) + w] = im
    grid = np.round(grid * 255).astype(np.uint8)
    return grid[0] if c == 1 else np.moveaxis(grid, 0, -1)
