"""`Preprocess`: what a model expects done to its inputs before they reach it (resize, then
normalise per channel), given by name or by numbers, and the same on the command line.

    Preprocess.parse("imagenet")                       # ImageNet's mean and std per channel
    Preprocess.parse("imagenet resize=224")            # and bilinear resize to 224x224 first
    Preprocess.parse("mean=0.1307 std=0.3081")         # one value: every channel
    Preprocess(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), resize=(32, 32))

A spec is items separated by spaces or ";": a preset name (`PRESETS`), `mean=`, `std=` (one
number per channel, or one for all, comma-separated) and `resize=` (`H`, `H,W` or `HxW`); later
items override earlier ones. Inputs are expected as the data gives them (images in [0, 1]).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from faultlines.errors import DataError, SettingsError

#: Named normalisations: the per-channel mean and std of the data sets models are commonly trained on.
PRESETS: dict[str, dict[str, tuple[float, ...]]] = {
    "imagenet": {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)},
    "cifar10": {"mean": (0.4914, 0.4822, 0.4465), "std": (0.2470, 0.2435, 0.2616)},
    "mnist": {"mean": (0.1307,), "std": (0.3081,)},
    "symmetric": {"mean": (0.5,), "std": (0.5,)},  # [0, 1] to [-1, 1]
}


@dataclass(frozen=True)
class Preprocess:
    """Resize (bilinear, antialiased) to `resize` = (H, W), then (x - mean) / std per channel.

    Args:
        mean, std: one value per channel, or one value for every channel; both or neither.
        resize: (height, width) of the images the model takes; None leaves the size alone.
    """

    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    resize: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if (self.mean is None) != (self.std is None):
            raise SettingsError("give both mean and std of the normalisation, or neither")
        if self.mean is not None:
            object.__setattr__(self, "mean", _numbers(self.mean, "mean"))
            object.__setattr__(self, "std", _numbers(self.std, "std"))
            if any(s <= 0 for s in self.std):
                raise SettingsError(f"std must be positive numbers, not {self.std}")
            if len(self.mean) != len(self.std) and 1 not in (len(self.mean), len(self.std)):
                raise SettingsError(f"mean has {len(self.mean)} values and std {len(self.std)}: give one per channel for both")
        if self.resize is not None:
            size = self.resize
            size = (size, size) if isinstance(size, int) else tuple(size)
            if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
                raise SettingsError(f"resize must be a positive whole number or (height, width) of them, not {self.resize!r}")
            object.__setattr__(self, "resize", size)

    @classmethod
    def parse(cls, spec: str) -> Preprocess:
        """A Preprocess from a spec such as "imagenet", "imagenet resize=224" or "mean=0.5 std=0.25"."""
        found: dict[str, object] = {}
        items = [item for item in re.split(r"[\s;]+", spec.strip()) if item]
        if not items:
            raise SettingsError(f"the preprocessing spec is empty; give a preset ({', '.join(PRESETS)}) or mean=... std=... resize=...")
        for item in items:
            key, eq, value = item.partition("=")
            key = key.strip().lower()
            if not eq:
                if key not in PRESETS:
                    raise SettingsError(f"unknown preprocessing {item!r}: give a preset ({', '.join(PRESETS)}) "
                                        "or mean=M1,M2,M3 std=S1,S2,S3 resize=H,W")
                found |= PRESETS[key]
            elif key in ("mean", "std"):
                found[key] = tuple(_number(v, key) for v in value.split(","))
            elif key == "resize":
                parts = re.split(r"[,x]", value.lower())
                if not all(p.strip().isdigit() for p in parts) or len(parts) not in (1, 2):
                    raise SettingsError(f"resize must be H, H,W or HxW in whole numbers, not {value!r}")
                found["resize"] = (int(parts[0]), int(parts[-1]))
            else:
                raise SettingsError(f"unknown preprocessing setting {key!r}: the settings are mean, std and resize")
        return cls(**found)  # type: ignore[arg-type]

    def describe(self) -> str:
        """The spec that `parse` reads back into this."""
        items = []
        if self.mean is not None:
            items += ["mean=" + ",".join(f"{v:g}" for v in self.mean), "std=" + ",".join(f"{v:g}" for v in self.std)]
        if self.resize is not None:
            items.append(f"resize={self.resize[0]},{self.resize[1]}")
        return " ".join(items) or "none"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.resize is not None and x.ndim == 4 and tuple(x.shape[-2:]) != self.resize:
            x = F.interpolate(x, size=self.resize, mode="bilinear", align_corners=False, antialias=True)
        if self.mean is None:
            return x
        channels = x.shape[1] if x.ndim >= 2 else 1
        if len(self.mean) not in (1, channels) or len(self.std) not in (1, channels):
            raise DataError(f"the inputs have {channels} channels but the preprocessing gives {len(self.mean)} means "
                            f"and {len(self.std)} stds; give one per channel (or one for all)")
        shape = (1, -1) + (1,) * (x.ndim - 2)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).reshape(shape)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).reshape(shape)
        return (x - mean) / std


def _number(value: str, key: str) -> float:
    try:
        number = float(value)
    except ValueError as e:
        raise SettingsError(f"{key} must be numbers separated by commas, not {value!r}") from e
    if not math.isfinite(number):
        raise SettingsError(f"{key} must be finite numbers, not {value!r}")
    return number


def _numbers(values: Sequence[float] | float, key: str) -> tuple[float, ...]:
    values = (values,) if isinstance(values, (int, float)) else tuple(values)
    if not values:
        raise SettingsError(f"{key} needs at least one value")
    return tuple(_number(str(v), key) for v in values)


def as_preprocess(preprocess):
    """A spec string as a `Preprocess`; a Preprocess, any other callable or None as it is."""
    if isinstance(preprocess, str):
        return Preprocess.parse(preprocess)
    if preprocess is not None and not callable(preprocess):
        raise SettingsError(f"preprocess must be a spec string, a Preprocess or a callable, not {type(preprocess).__name__}")
    return preprocess


class Preprocessed(torch.nn.Module):
    """`module` with `steps` done to its inputs first, as one module: for training code that
    calls a module directly (`faultlines fix` retrains a model scanned with --preprocess)."""

    def __init__(self, steps, module: torch.nn.Module) -> None:
        super().__init__()
        self.steps, self.module = steps, module

    def forward(self, x: torch.Tensor):
        return self.module(self.steps(x))


def describe_preprocess(preprocess) -> str | None:
    """What a run records of a classifier's preprocessing: a `Preprocess` as its spec (which
    `faultlines fix` reads back), another callable by its name, or None."""
    if preprocess is None:
        return None
    if isinstance(preprocess, Preprocess):
        return preprocess.describe()
    return f"callable {getattr(preprocess, '__qualname__', type(preprocess).__name__)}"
