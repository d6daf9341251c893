"""The ``model`` settings section: the task and the network each expert is built from."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from streamlearn.core.section import Section


class ClosedFormSettings(Section):
    """The closed-form heads (``model.head`` rls, kalman or prototype): docs/operations.md."""

    # Ridge lambda of RLS (R starts at I/lambda), and the Kalman head's prior S0 = I/lambda.
    ridge: float = Field(1.0, gt=0)
    # The Kalman head's observation noise sigma^2 (targets are one-hot for classes). With
    # the prior S0 = I/ridge it sets how far one row moves the head: 1.5 measured best with
    # the body's cross-entropy below (docs/benchmarks.md, "Closed-form heads, the body's
    # loss"; 2.0 with squared error alone).
    noise: float = Field(1.5, gt=0)
    # The Kalman head's forgetting gamma per sample: where it starts, its bounds, and the step
    # size of its gradient on the predictive log-likelihood (in log(1-gamma)).
    forgetting: float = Field(0.999, gt=0, lt=1)
    forgetting_min: float = Field(0.9, gt=0, lt=1)
    forgetting_max: float = Field(0.99999, gt=0, lt=1)
    forgetting_rate: float = Field(0.5, ge=0)
    # Labeled samples the body learns by gradient (on the loss below) before it freezes;
    # null: it never freezes. Exact unlearning needs the body frozen.
    body_samples: int | None = Field(None, ge=0)
    # The body's loss is each row's squared error against the targets (one-hot for classes:
    # what the head solves), summed over the outputs, and for classes plus this weight times
    # the cross-entropy of the head's scores taken as logits. Squared error alone fits
    # flipped labels as hard as real ones; the cross-entropy's pull saturates on them
    # (Kalman on Hyperplane, seeds 0-2: 0.853 against the SGD head's 0.860; 0.857 with 0.5
    # and noise 1.5). More of it lets each new class win too often (with cross-entropy
    # alone, 5-shot classes took the old ones from 0.85 to 0.64). 0: squared error alone
    # (a mean over the outputs before this weight existed: the same steps with Adam, the
    # number of classes times longer ones with optimizer sgd). docs/benchmarks.md,
    # "Closed-form heads, the body's loss".
    body_cross_entropy: float = Field(0.5, ge=0)
    # The most features a closed-form head reads: its update costs width^2 per row.
    max_width: int = Field(256, ge=1)

    @model_validator(mode="after")
    def _bounds_hold(self) -> ClosedFormSettings:
        if not self.forgetting_min <= self.forgetting <= self.forgetting_max:
            raise ValueError("closed_form: forgetting_min <= forgetting <= forgetting_max")
        return self


class ModelSettings(Section):
    """The task and the network each expert is built from."""

    task: Literal["classification", "regression"] = "classification"
    # Fixed feature count; null infers it from the first valid sample and keeps it.
    n_features: int | None = Field(None, ge=1)
    # Named features: records then carry x as an object with exactly these keys.
    features: list[str] | None = None
    hidden: list[int] = Field(default_factory=lambda: [64, 64])
    activation: Literal["relu", "tanh", "gelu"] = "relu"
    # A normalization layer after each hidden linear layer. Test-time adaptation works
    # through these: "batch" carries statistics to re-estimate and affine parameters for
    # TENT; "layer" has only the affine parameters.
    norm: Literal["none", "batch", "layer"] = "none"
    # "cnn": convolution blocks (hidden = their channel counts, 2x2 pooling between them),
    # global average pooling and a linear head, for flattened images of image_shape.
    architecture: Literal["mlp", "cnn"] = "mlp"
    # Inputs are flattened images of this shape ([H, W] or [C, H, W]): the CNN's input, and
    # test-time adaptation augments them as images (shifts, flips) rather than as columns.
    image_shape: list[int] | None = None
    optimizer: Literal["sgd", "adam"] = "adam"
    # Chosen across the experts benchmark's 14 streams at max_batch 8: 1e-3 adapts too
    # slowly after a change, 1e-2 diverges on Sine (docs/benchmarks.md "Defaults").
    learning_rate: float = Field(3e-3, gt=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_classes: int = Field(64, ge=2)
    # With every class slot taken, a new label takes over the slot of the class learned the
    # fewest times if that class was learned fewer than this many times: a burst of junk
    # labels cannot lock real classes out for good. 0: a full model rejects new labels.
    rare_class_samples: int = Field(3, ge=0)
    # Class labels are integers in int64 range or strings up to this many characters. A
    # model's labels are all integers or all strings: the first one learned decides.
    max_label_chars: int = Field(128, ge=1)
    # With n_features null, the first valid sample fixes the width: wider records are refused
    # (feature_count) so one hostile record cannot allocate every expert at its width.
    max_features: int = Field(10_000, ge=1)
    standardize: bool = True
    # "package.module:function" returning a torch.nn.Module or an Expert; overrides hidden.
    factory: str | None = None
    # The last layer: "sgd" learns with the optimizer; "rls" (exact streaming ridge),
    # "kalman" (filtered, with learned forgetting) and "prototype" (nearest class mean) are
    # solved in closed form on the body's penultimate features (closed_form).
    head: Literal["sgd", "rls", "kalman", "prototype"] = "sgd"
    closed_form: ClosedFormSettings = Field(default_factory=ClosedFormSettings)
    seed: int = 0
    device: str = Field("cpu", pattern=r"^(auto|cpu|cuda(:\d+)?)$")

    @model_validator(mode="after")
    def _features_match_count(self) -> ModelSettings:
        if self.features is not None:
            if len(set(self.features)) != len(self.features):
                raise ValueError("features must be unique names")
            if self.n_features not in (None, len(self.features)):
                raise ValueError(
                    f"n_features={self.n_features} but {len(self.features)} features are named"
                )
        return self

    @model_validator(mode="after")
    def _image_shape_fits(self) -> ModelSettings:
        shape = self.image_shape
        if shape is not None:
            if len(shape) not in (2, 3) or min(shape) < 1:
                raise ValueError(f"image_shape: give [H, W] or [C, H, W], got {shape}")
            count = self.feature_count()
            if count is not None and count != _product(shape):
                raise ValueError(
                    f"image_shape {shape} holds {_product(shape)} values, "
                    f"but there are {count} features"
                )
        if self.architecture == "cnn" and shape is None:
            raise ValueError("architecture: 'cnn' needs image_shape")
        return self

    @model_validator(mode="after")
    def _head_fits(self) -> ModelSettings:
        if self.head != "sgd" and self.factory is not None:
            raise ValueError("head: closed-form heads need the built-in networks, not a factory")
        if self.head == "prototype" and self.task != "classification":
            raise ValueError("head: prototype is for classification")
        return self

    def feature_count(self) -> int | None:
        return len(self.features) if self.features is not None else self.n_features


def _product(values: list[int]) -> int:
    out = 1
    for value in values:
        out *= value
    return out
