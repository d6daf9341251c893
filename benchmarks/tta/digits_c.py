"""Digits-C: scikit-learn's bundled 8x8 digits under five corruptions at severities 1..5.

Modelled on CIFAR-10-C (Hendrycks and Dietterich, 2019), scaled to 8x8 images with values
0..16: Gaussian noise, Gaussian blur, contrast loss, pixel dropout and sub-pixel translation. Each
severity is a fixed parameter; randomness (noise, dropped pixels, shift directions) comes
from the seeded generator given, so a run is reproducible.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage  # type: ignore[import-untyped]  # no stubs installed
from sklearn.datasets import load_digits  # type: ignore[import-untyped]  # untyped library

CORRUPTIONS = ("noise", "blur", "contrast", "dropout", "shift")
SEVERITIES = (1, 2, 3, 4, 5)
MAX_VALUE = 16.0

_NOISE_SD = (1.5, 2.5, 3.5, 4.5, 6.0)  # in pixel units (0..16)
_BLUR_SIGMA = (0.5, 0.7, 0.9, 1.1, 1.3)  # pixels
_CONTRAST = (0.5, 0.4, 0.3, 0.2, 0.12)  # kept share of each image's deviation from its mean
_DROPOUT = (0.15, 0.25, 0.35, 0.45, 0.55)  # share of pixels set to 0
_SHIFT = (0.3, 0.5, 0.7, 0.9, 1.2)  # pixels along each axis, sign drawn per image


def load_split(
    seed: int, train_share: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Images [n, 8, 8] as float32 and labels, split per class into source and test parts."""
    digits = load_digits()
    images, labels = digits.images.astype(np.float32), digits.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in range(10):
        rows = rng.permutation(np.flatnonzero(labels == label))
        cut = int(len(rows) * train_share)
        train += rows[:cut].tolist()
        test += rows[cut:].tolist()
    train_idx, test_idx = rng.permutation(train), rng.permutation(test)
    return images[train_idx], labels[train_idx], images[test_idx], labels[test_idx]


def corrupt(images: np.ndarray, name: str, severity: int, rng: np.random.Generator) -> np.ndarray:
    """``images`` [n, 8, 8] under corruption ``name`` at ``severity`` (1..5), clipped."""
    if name not in _CORRUPT:
        raise ValueError(f"unknown corruption {name!r}; choose from {CORRUPTIONS}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be 1..5, got {severity}")
    out = _CORRUPT[name](images.astype(np.float32), severity - 1, rng)
    clipped: np.ndarray = np.clip(out, 0.0, MAX_VALUE).astype(np.float32)
    return clipped


def _noise(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    return x + rng.normal(0.0, _NOISE_SD[s], x.shape)


def _blur(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    return np.stack(
        [ndimage.gaussian_filter(image, _BLUR_SIGMA[s], mode="constant") for image in x]
    )


def _contrast(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    means = x.mean(axis=(1, 2), keepdims=True)
    scaled: np.ndarray = (x - means) * _CONTRAST[s] + means
    return scaled


def _dropout(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    return x * (rng.random(x.shape) >= _DROPOUT[s])


def _shift(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    """Sub-pixel translation (bilinear): one 8x8 pixel is an eighth of the digit."""
    signs = rng.choice((-1.0, 1.0), size=(x.shape[0], 2))
    return np.stack(
        [
            ndimage.shift(image, _SHIFT[s] * sign, order=1, mode="constant")
            for image, sign in zip(x, signs, strict=True)
        ]
    )


_CORRUPT: dict[str, Callable[[np.ndarray, int, np.random.Generator], np.ndarray]] = {
    "noise": _noise,
    "blur": _blur,
    "contrast": _contrast,
    "dropout": _dropout,
    "shift": _shift,
}
