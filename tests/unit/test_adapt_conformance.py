"""Every adaptation method passes streamlearn.testing.check_adapt_method, on an MLP and a
CNN with batch norm and an MLP with layer norm."""

from collections.abc import Callable

import pytest
import torch
from torch import nn

from streamlearn.core.adapt.augment import Augmenter
from streamlearn.core.adapt.base import AdaptMethod
from streamlearn.core.adapt.cotta import CoTTA
from streamlearn.core.adapt.norm import NormStats
from streamlearn.core.adapt.tent import Tent
from streamlearn.core.models import ImageCnn, build_mlp
from streamlearn.settings import AdaptSettings
from streamlearn.testing import check_adapt_method


def cotta(image_shape: list[int] | None = None) -> Callable[[], AdaptMethod]:
    def make() -> CoTTA:
        generator = torch.Generator().manual_seed(3)
        return CoTTA(
            learning_rate=0.01,
            momentum=0.1,
            teacher_momentum=0.9,
            confidence=0.99,
            augmentations=2,
            restore=0.05,
            augment=Augmenter(AdaptSettings(), image_shape, generator),
            generator=generator,
        )

    return make


NETWORKS: dict[str, tuple[Callable[[], nn.Module], list[int] | None]] = {
    "mlp-batch": (lambda: build_mlp(16, 4, [8], norm="batch"), None),
    "mlp-layer": (lambda: build_mlp(16, 4, [8], norm="layer"), None),
    "cnn-batch": (lambda: ImageCnn([4, 4], 4, [4, 8], norm="batch"), [4, 4]),
}


@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.parametrize("method", ["norm", "tent", "cotta"])
def test_method_conforms(method: str, network: str) -> None:
    build, shape = NETWORKS[network]
    torch.manual_seed(0)
    module = build()
    makers: dict[str, Callable[[], AdaptMethod]] = {
        "norm": lambda: NormStats(0.1),
        "tent": lambda: Tent(0.01, 0.1),
        "cotta": cotta(shape),
    }
    make = makers[method]
    check_adapt_method(make, module, torch.randn(12, 16) * 2 + 1, n_classes=4)


def test_image_augmentation_shifts_by_at_most_one_pixel_and_keeps_shape() -> None:
    augment = Augmenter(AdaptSettings(noise_sd=0.0), [3, 3], torch.Generator().manual_seed(0))
    image = torch.zeros(1, 9)
    image[0, 4] = 1.0  # the centre pixel
    moved = augment(image)
    assert moved.shape == (1, 9) and float(moved.sum()) == 1.0


def test_tabular_augmentation_drops_features_and_adds_noise_reproducibly() -> None:
    def draw() -> torch.Tensor:
        return Augmenter(
            AdaptSettings(noise_sd=0.0, feature_dropout=0.5), None, torch.Generator().manual_seed(1)
        )(torch.ones(4, 100))

    a = draw()
    assert torch.equal(a, draw())
    assert 0.3 < float((a == 0).float().mean()) < 0.7
