"""A network whose last layer is a closed-form head: the body's features, then fixed weights.

The head's weights are buffers, not parameters: no optimizer touches them; the closed-form
solver (``rls.py``, ``kalman.py``, ``prototype.py``) writes them after each update. Because
they live in the module, everything that runs a module (frozen serving, snapshots,
test-time adaptation, checkpoints) runs this one unchanged: ``forward`` is what the expert
predicts.

The *link* turns the head's linear scores into outputs the engine scores with cross entropy:

- ``probability`` (RLS and Kalman classification): the scores regress one-hot targets, so
  they estimate class probabilities; the outputs are their logarithms (floored), so the
  cross entropy the pool and the drift monitor read is the negative log of that estimate.
- ``logit`` (prototypes): the scores are already log-likelihoods up to a shared term; a
  class more than ``LOGIT_SPAN`` behind the row's best is held there, so one unseen class
  cannot give a loss of thousands.
- ``identity``: regression.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch
from torch import Tensor, nn

from streamlearn.core.errors import ModelError
from streamlearn.core.logging import get_logger
from streamlearn.core.models.cnn import ImageCnn

Link = Literal["probability", "logit", "identity"]
PROBABILITY_FLOOR = 1e-2  # a score below this is read as this probability (loss <= 4.6)
LOGIT_SPAN = 30.0
COVARIANCE_BUFFERS = ("head_covariance", "head_noise")
log = get_logger(__name__)


class HeadedNetwork(nn.Module):
    """``body`` (inputs -> ``width`` features), then a linear head held in buffers."""

    head_weight: Tensor  # [n_outputs, width]
    head_bias: Tensor  # [n_outputs]
    head_covariance: Tensor  # [width + 1, width + 1] float64: the Kalman head's only
    head_noise: Tensor  # [] float64

    def __init__(
        self, body: nn.Module, width: int, n_outputs: int, link: Link, covariance: bool = False
    ) -> None:
        super().__init__()
        self.body = body
        self.width = width
        self.link: Link = link
        self.register_buffer("head_weight", torch.zeros(n_outputs, width))
        self.register_buffer("head_bias", torch.zeros(n_outputs))
        # A head with a weight covariance (Kalman) serves a predictive variance: the buffers
        # travel with the module into checkpoints and serving snapshots.
        self.has_variance = covariance
        if covariance:
            self.register_buffer("head_covariance", torch.zeros(width + 1, width + 1).double())
            self.register_buffer("head_noise", torch.zeros((), dtype=torch.float64))

    def scores(self, features: Tensor) -> Tensor:
        """The head's linear scores of the body's features."""
        return features @ self.head_weight.T + self.head_bias

    def outputs(self, scores: Tensor) -> Tensor:
        """The link: what the engine reads as logits (or regression outputs)."""
        if self.link == "probability":
            return torch.log(scores.clamp(min=PROBABILITY_FLOOR))
        if self.link == "logit":
            return spanned(scores)
        return scores

    def forward(self, x: Tensor) -> Tensor:
        return self.outputs(self.scores(self.body(x)))

    def variance(self, x: Tensor) -> Tensor:
        """Predictive variance of each row's outputs, float32 [rows]: ``phi^T P phi + noise``
        with ``phi`` the features and a 1 (columns share P). Heads without one: an error."""
        if not self.has_variance:
            raise ModelError("variance: only the kalman head gives a predictive variance")
        features = self.body(x).to(torch.float64)
        rows = torch.cat([features, torch.ones_like(features[:, :1])], dim=1)
        spread = ((rows @ self.head_covariance) * rows).sum(dim=1) + self.head_noise
        return spread.float()

    @torch.no_grad()
    def set_covariance(self, covariance: Tensor, noise: float) -> None:
        """Take the Kalman solver's weight covariance and observation noise, in place."""
        self.head_covariance.copy_(covariance)
        self.head_noise.fill_(noise)

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        """A Kalman state saved before the head served a variance (no covariance buffers):
        the buffers as they are here. Every loader passes through this (the expert's restore,
        adaptation anchors and CoTTA's student from the same old checkpoint). The expert's
        ``_publish`` then fills them from the solver's P, which every such state holds; an
        anchor's reset keeps the covariance the module has (the solver's, not adaptation's).
        ``state_dict`` is the loader's own copy: filling it changes nothing of the caller's.
        """
        missing = [name for name in COVARIANCE_BUFFERS if prefix + name not in state_dict]
        if self.has_variance and missing:
            log.info("kalman_checkpoint_without_covariance", filled_from="the module's buffers")
            for name in missing:
                state_dict[prefix + name] = getattr(self, name)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    @property
    def n_outputs(self) -> int:
        return int(self.head_bias.shape[0])

    @torch.no_grad()
    def set_head(self, weights: Tensor) -> None:
        """Take the solver's [width + 1, n_outputs] solve (the last row the bias), in place:
        the step guard watches these very tensors."""
        self.head_weight.copy_(weights[:-1].T)
        self.head_bias.copy_(weights[-1])


def variances(modules: Mapping[str, nn.Module]) -> dict[str, Callable[[Tensor], Tensor]]:
    """Of these networks (by id), the variance forward of each one that gives it."""
    return {
        id_: module.variance
        for id_, module in modules.items()
        if isinstance(module, HeadedNetwork) and module.has_variance
    }


def spanned(scores: Tensor) -> Tensor:
    """Log-likelihood scores as logits, each held at most ``LOGIT_SPAN`` behind its row's best."""
    best = scores.max(dim=1, keepdim=True).values
    return torch.maximum(scores, best - LOGIT_SPAN)


def with_bias(features: Tensor) -> Tensor:
    """Float64 rows on the CPU, where the solvers live (float64 is slow on most GPUs and the
    solve is small), with a constant column: the head's bias is its last weight row."""
    rows = features.detach().to("cpu", torch.float64)
    return torch.cat([rows, torch.ones(rows.shape[0], 1, dtype=rows.dtype)], dim=1)


class _PooledFeatures(nn.Module):
    """The CNN up to its global average pooling: its penultimate features."""

    def __init__(self, cnn: ImageCnn) -> None:
        super().__init__()
        self.shape = cnn.shape
        self.features = cnn.features

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.features(x.reshape(x.shape[0], *self.shape)).mean(dim=(2, 3))
        return out


def headed(
    network: nn.Module, n_outputs: int, link: Link, max_width: int, covariance: bool = False
) -> HeadedNetwork:
    """``network`` (an MLP as ``build_mlp`` makes it, or an ``ImageCnn``) with its last linear
    layer replaced by a closed-form head over the features that layer read (``covariance``:
    with a weight covariance, for a predictive variance)."""
    if isinstance(network, ImageCnn):
        body: nn.Module = _PooledFeatures(network)
        width = network.head.in_features
    elif isinstance(network, nn.Sequential) and isinstance(network[-1], nn.Linear):
        last = network[-1]
        body = nn.Sequential(*list(network)[:-1]) if len(network) > 1 else nn.Identity()
        width = last.in_features
    else:
        raise ModelError("model.head: closed-form heads need the built-in mlp or cnn network")
    if width > max_width:
        raise ModelError(
            f"model.head: the head would read {width} features > "
            f"model.closed_form.max_width={max_width} (its update costs width^2): "
            "narrow the last hidden layer or raise the limit"
        )
    return HeadedNetwork(body, width, n_outputs, link, covariance)
