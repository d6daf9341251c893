"""Label-preserving perturbations for the mean teacher's averaged pseudo-labels.

Tabular rows get Gaussian noise and feature dropout (a dropped feature is set to 0, the
mean of a standardized feature). Images get a shift of up to one pixel, zero-filled, a
horizontal flip when the data allow it, and noise. Randomness comes from the adapter's own
generator, so adaptation neither disturbs nor depends on anyone else's random draws.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from streamlearn.core.adapt.settings import AdaptSettings


class Augmenter:
    """Perturbs a batch without changing its labels, for the mean teacher's averaged answers.

    Draws only from the adapter's generator, so a seeded run perturbs the same way again.
    """

    def __init__(
        self, settings: AdaptSettings, image_shape: Sequence[int] | None, generator: torch.Generator
    ) -> None:
        self.noise_sd = settings.noise_sd
        self.dropout = settings.feature_dropout
        self.shape = tuple(image_shape) if image_shape else None
        self.flips = settings.flips
        self.generator = generator

    def __call__(self, x: Tensor) -> Tensor:
        x = self._image(x) if self.shape is not None else self._dropout(x)
        if self.noise_sd > 0:
            x = x + self.noise_sd * self._randn(x.shape, x)
        return x

    def _dropout(self, x: Tensor) -> Tensor:
        if self.dropout == 0:
            return x
        keep = self._rand(x.shape, x) >= self.dropout
        return x * keep

    def _image(self, x: Tensor) -> Tensor:
        assert self.shape is not None
        images = x.reshape(x.shape[0], -1, *self.shape[-2:])
        dy, dx = (int(v) for v in torch.randint(-1, 2, (2,), generator=self.generator))
        images = _shift(images, dy, dx)
        if self.flips and bool(torch.rand((), generator=self.generator) < 0.5):
            images = images.flip(-1)
        return images.reshape(x.shape)

    def _rand(self, shape: torch.Size, like: Tensor) -> Tensor:
        return torch.rand(shape, generator=self.generator).to(like.device)

    def _randn(self, shape: torch.Size, like: Tensor) -> Tensor:
        return torch.randn(shape, generator=self.generator).to(like.device)


def _shift(images: Tensor, dy: int, dx: int) -> Tensor:
    """Move the image content by (dy, dx) pixels; what moves in is zero."""
    out = torch.zeros_like(images)
    h, w = images.shape[-2:]
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = images[
        ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out
