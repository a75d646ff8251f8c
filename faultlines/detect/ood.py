"""Inputs a model should not be trusted on, made from clean images: noise images and a corrupted
style (blur plus noise). Used by the density analysis and the planted `shift` problem."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def corrupt(x: np.ndarray, rng: np.random.Generator, alpha: float = 1.0, noise: float = 0.3) -> np.ndarray:
    """The 'corrupted style': Gaussian blur (sigma 0.8) plus Gaussian noise (std `noise` x alpha), clipped."""
    blurred = ndimage.gaussian_filter(x, sigma=(0, 0, 0.8, 0.8))
    return np.clip(blurred + rng.normal(0, noise * alpha, x.shape), 0, 1).astype(np.float32)


def ood_images(clean: np.ndarray, rng: np.random.Generator, n: int = 300, alpha: float = 1.0) -> dict[str, np.ndarray]:
    """Out-of-distribution image sets shaped like `clean`: uniform noise, Gaussian noise (mean
    0.5, std 0.25, clipped), and every clean image in the corrupted style."""
    shape = (n, *clean.shape[1:])
    return {
        "uniform-noise": rng.random(shape).astype(np.float32),
        "gaussian-noise": np.clip(rng.normal(0.5, 0.25, shape), 0, 1).astype(np.float32),
        "corrupted": corrupt(clean, rng, alpha),
    }
