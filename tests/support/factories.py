"""User factories for tests: what ``model.factory`` points at."""

from typing import Any

from torch import Tensor, nn


class SmallCnn(nn.Module):
    """A 1-D convolution over the feature vector: a network that is not an MLP."""

    def __init__(self, n_features: int, n_outputs: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 4, kernel_size=3, padding=1)
        self.head = nn.Linear(4 * n_features, n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.head(self.conv(x.unsqueeze(1)).relu().flatten(1))
        return out


def small_cnn(n_features: int, n_outputs: int, settings: Any) -> nn.Module:
    return SmallCnn(n_features, n_outputs)
