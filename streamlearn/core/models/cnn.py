"""A small convolutional network for flattened images: shift-tolerant where an MLP is not.

Each block is a 3x3 convolution, an optional normalization layer and ReLU; 2x2 max pooling
sits between blocks while the image is still larger than 2x2. Global average pooling then
feeds a linear head, so a pattern is recognized wherever it lies.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class ImageCnn(nn.Module):
    """A small CNN over flattened images, with global average pooling before its head.

    Takes rows as the engine holds them and reshapes them itself.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        n_outputs: int,
        channels: Sequence[int],
        norm: str = "none",
    ) -> None:
        super().__init__()
        self.shape = tuple(image_shape) if len(image_shape) == 3 else (1, *image_shape)
        layers: list[nn.Module] = []
        width, side = self.shape[0], min(self.shape[1:])
        for i, size in enumerate(channels):
            if i > 0 and side > 2:
                layers.append(nn.MaxPool2d(2))
                side //= 2
            layers.append(nn.Conv2d(width, size, kernel_size=3, padding=1))
            if norm == "batch":
                layers.append(nn.BatchNorm2d(size))
            elif norm == "layer":  # one group: normalizes over channels and pixels
                layers.append(nn.GroupNorm(1, size))
            layers.append(nn.ReLU())
            width = size
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        images = x.reshape(x.shape[0], *self.shape)
        out: Tensor = self.head(self.features(images).mean(dim=(2, 3)))
        return out
