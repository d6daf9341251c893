"""The neural expert: a torch module, its optimizer and a per-sample loss.

For classification the network has ``max_classes`` outputs; only the classes seen so far
take part in the softmax, so a class that appears late is not pre-trained into oblivion.
Every step passes a :class:`~streamlearn.core.experts.guard.StepGuard`: a non-finite loss or
gradient skips it, non-finite weights after it are put back (``skipped`` says which).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, cast

import torch
from torch import Tensor, nn

from streamlearn.core.errors import ModelError
from streamlearn.core.experts.guard import StepGuard
from streamlearn.core.experts.headed import HeadExpert, solver_for
from streamlearn.core.experts.hyper import configured_groups, load_keeping_configured
from streamlearn.core.extensions import require_members
from streamlearn.core.models import (
    ImageCnn,
    build_mlp,
    load_factory,
    predict_with,
    seed_weights,
    training,
)
from streamlearn.core.models.heads import HeadedNetwork, Link, headed
from streamlearn.core.models.settings import ModelSettings
from streamlearn.core.protocols import Expert, StateDict, StepScaling


class NeuralExpert:
    """A network, its optimizer and its loss: the model one regime is learned into.

    Every step goes through its ``StepGuard``, so a non-finite step is never kept;
    ``skipped`` says why the last one was not (the Expert protocol's accessor).
    """

    def __init__(
        self,
        module: nn.Module,
        optimizer: torch.optim.Optimizer,
        task: Literal["classification", "regression"],
    ) -> None:
        self.module: nn.Module = module  # the Expert protocol's accessor: what TTA adapts
        self.optimizer = optimizer
        self.task = task
        self.n_seen = 0  # classes seen so far: outputs [0, n_seen) take part in the loss
        self.guard = StepGuard(module, optimizer)
        self.skipped: str | None = None  # why the last step was skipped or undone, if it was
        # The configured step sizes, and the factor on them now (StepScaling): a checkpoint
        # holds the optimizer's scaled lr, so a load puts the factor in force back on these.
        self._base_lrs = [float(group["lr"]) for group in optimizer.param_groups]
        self._step_factor = 1.0
        self._configured = configured_groups(optimizer)  # kept across loads (hyper.py)

    def predict(self, x: Tensor) -> Tensor:
        return predict_with(self.module, x, self.task)

    def learn(self, x: Tensor, y: Tensor) -> Tensor:
        with training(self.module, x.shape[0]):
            out = self.module(x)
        if self.task == "classification":
            self.n_seen = max(self.n_seen, int(y.max()) + 1)
            losses = nn.functional.cross_entropy(out[:, : self.n_seen], y, reduction="none")
        else:
            losses = nn.functional.mse_loss(out.squeeze(-1), y, reduction="none")
        self.skipped = self.guard.step(losses.mean())
        return losses.detach()

    def scale_step(self, factor: float) -> None:
        """Learn at ``factor`` times the configured step size (adaptive batches)."""
        self._step_factor = factor
        for group, base in zip(self.optimizer.param_groups, self._base_lrs, strict=True):
            group["lr"] = base * factor

    def state_dict(self) -> StateDict:
        return {
            "module": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "n_seen": self.n_seen,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        load_keeping_configured(self.optimizer, state["optimizer"], self._configured)
        self.scale_step(self._step_factor)
        self.n_seen = int(state["n_seen"])
        self.guard.reset()


_NOT_AN_EXPERT = (
    "Add them, or return a torch.nn.Module: it is wrapped into a NeuralExpert with the "
    "configured optimizer (docs/extending.md)."
)


def build_expert(
    settings: ModelSettings, n_features: int, device: torch.device, seed: int | None = None
) -> Expert:
    """The expert the settings describe, seeded (``model.seed`` unless given), on ``device``."""
    built = build_network(settings, n_features, seed)
    if not isinstance(built, nn.Module):
        return built
    module = built.to(device)
    if isinstance(module, HeadedNetwork):
        return _head_expert(settings, module)
    return NeuralExpert(module, _optimizer(settings, module), settings.task)


def build_network(
    settings: ModelSettings, n_features: int, seed: int | None = None
) -> nn.Module | Expert:
    """The network the settings describe, without an optimizer (what serving rebuilds), or
    the whole Expert a user's factory returned."""
    n_outputs = settings.max_classes if settings.task == "classification" else 1
    seed_weights(settings.seed if seed is None else seed)
    if settings.factory is not None:
        built = load_factory(settings.factory)(
            n_features=n_features, n_outputs=n_outputs, settings=settings
        )
        if not isinstance(built, nn.Module):
            # Checked here, when it is built: a member missing would otherwise surface as an
            # AttributeError in the middle of the stream.
            require_members(built, Expert, "model.factory", ModelError, _NOT_AN_EXPERT)
            return cast(Expert, built)
        return built
    module = _build_module(settings, n_features, n_outputs)
    if settings.head == "sgd":
        return module
    link: Link = "identity" if settings.task == "regression" else "probability"
    if settings.head == "prototype":
        link = "logit"
    covariance = settings.head == "kalman"  # its P gives the served variance
    return headed(module, n_outputs, link, settings.closed_form.max_width, covariance)


def _head_expert(settings: ModelSettings, module: HeadedNetwork) -> Expert:
    """A closed-form head's expert; the body's optimizer only if it learns at all."""
    learns = settings.closed_form.body_samples != 0 and any(True for _ in module.parameters())
    optimizer = _optimizer(settings, module) if learns else None
    n_outputs = module.n_outputs
    solver = solver_for(settings, module.width, n_outputs)
    return HeadExpert(
        module,
        optimizer,
        settings.task,
        solver,
        settings.closed_form.body_samples,
        settings.closed_form.body_cross_entropy,
    )


if TYPE_CHECKING:  # mypy holds NeuralExpert to Expert (see streamlearn.core.protocols)

    def _conforms(expert: NeuralExpert) -> Expert:
        return expert

    def _scales(expert: NeuralExpert) -> StepScaling:
        return expert


def _build_module(settings: ModelSettings, n_features: int, n_outputs: int) -> nn.Module:
    if settings.architecture == "cnn":
        assert settings.image_shape is not None  # the settings check this
        return ImageCnn(settings.image_shape, n_outputs, settings.hidden, settings.norm)
    return build_mlp(n_features, n_outputs, settings.hidden, settings.activation, settings.norm)


def _optimizer(settings: ModelSettings, module: nn.Module) -> torch.optim.Optimizer:
    params = module.parameters()
    if settings.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=settings.learning_rate,
            momentum=settings.momentum,
            weight_decay=settings.weight_decay,
        )
    return torch.optim.Adam(params, lr=settings.learning_rate, weight_decay=settings.weight_decay)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"model.device: {name!r} asked for, but CUDA is not available")
    return device
