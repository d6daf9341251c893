"""The model builders: normalization options, the image CNN, and checkpoints that predate
them."""

from pathlib import Path
from typing import Literal

import pytest
import torch
from torch import nn

from streamlearn.checkpoint.state import CheckpointState, check_compatible
from streamlearn.core.errors import CheckpointError
from streamlearn.core.experts.expert import build_expert
from streamlearn.core.models import ImageCnn, build_mlp
from streamlearn.core.protocols import Expert
from streamlearn.settings import ModelSettings
from streamlearn.testing import check_expert


@pytest.mark.parametrize("norm, layer", [("batch", nn.BatchNorm1d), ("layer", nn.LayerNorm)])
def test_mlp_puts_a_norm_layer_after_each_hidden_linear_layer(
    norm: Literal["batch", "layer"], layer: type[nn.Module]
) -> None:
    net = build_mlp(5, 3, [8, 4], norm=norm)
    kinds = [type(m) for m in net]
    assert kinds == [nn.Linear, layer, nn.ReLU, nn.Linear, layer, nn.ReLU, nn.Linear]


def test_cnn_recognizes_flattened_images_of_any_channel_count() -> None:
    assert ImageCnn([8, 8], 10, [4, 8])(torch.randn(3, 64)).shape == (3, 10)
    assert ImageCnn([3, 8, 8], 10, [4], norm="layer")(torch.randn(2, 192)).shape == (2, 10)


@pytest.mark.parametrize(
    "model",
    [
        ModelSettings(hidden=[8], norm="batch", max_classes=3),
        ModelSettings(
            architecture="cnn", image_shape=[4, 4], hidden=[4, 8], norm="batch", max_classes=3
        ),
    ],
)
def test_norm_experts_conform_and_learn_from_a_single_row(model: ModelSettings) -> None:
    def make() -> Expert:
        return build_expert(model, 16, torch.device("cpu"), seed=0)

    x, y = torch.randn(8, 16), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    check_expert(make, x, y)
    losses = make().learn(x[:1], y[:1])  # batch norm has no batch statistics for one row
    assert losses.shape == (1,) and bool(losses.isfinite().all())


def test_checkpoints_from_before_the_norm_settings_still_fit_the_defaults() -> None:
    old = ModelSettings().model_dump(mode="json")
    for key in ("norm", "architecture", "image_shape"):
        del old[key]
    state = CheckpointState({}, {}, old)
    check_compatible(state, ModelSettings(), Path("c.ckpt"))
    with pytest.raises(
        CheckpointError,
        match=r"model\.norm: checkpoint 'none', settings "
        r"'batch'",
    ):
        check_compatible(state, ModelSettings(norm="batch"), Path("c.ckpt"))
