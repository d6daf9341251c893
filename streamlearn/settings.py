"""All settings, one pydantic model per section.

Sources, highest priority first: ``STREAMLEARN_<SECTION>__<KEY>`` environment variables, the
YAML file given with ``--config``, then the defaults below (mirrored, with comments, in
``config/default.yaml``). Unknown keys are errors: a typo must never silently fall back to
a default.
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from streamlearn.errors import SettingsError
from streamlearn.extensions import is_spec
from streamlearn.settings_env import merge, read_environment


class Section(BaseModel):
    """Base of every settings section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class KafkaSettings(Section):
    """Brokers, the consumer group, and the input and output topics."""

    bootstrap_servers: str = "localhost:9092"
    group_id: str = "streamlearn"
    client_id: str = "streamlearn"
    input_topic: str = "streamlearn.samples"
    predictions_topic: str = "streamlearn.predictions"
    events_topic: str = "streamlearn.events"
    dlq_topic: str = "streamlearn.dlq"
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    # A group forms only after about one session timeout, so shorter is faster to start;
    # too short and a GC pause or a slow broker gets the member evicted.
    session_timeout_ms: int = Field(10_000, ge=1_000)
    heartbeat_interval_ms: int = Field(3_000, ge=100)
    max_poll_interval_ms: int = Field(300_000, ge=1_000)
    max_poll_records: int = Field(2_000, ge=1)
    poll_timeout_ms: int = Field(100, ge=0)
    # Above this many decoded-but-unlearned samples the partitions are paused (polling
    # goes on, so the member stays in its group); they resume below half of it.
    max_buffered_samples: int = Field(20_000, ge=1)
    publish_predictions: bool = True
    # How long the sinks may take to land their records before a checkpoint is skipped.
    flush_timeout_s: float = Field(10.0, gt=0)
    # Largest output message (the producer's max_request_size; the broker's message.max.bytes
    # is 1 MiB by default). A bigger one can never land: it is cut down or dropped, counted,
    # and never retried.
    max_message_bytes: int = Field(1_048_576, ge=1_024)
    # Outputs that failed to land and wait to be sent again (an output topic missing, a broker
    # refusing). Above this input is paused until they land: memory stays bounded and no
    # output is dropped.
    max_pending_outputs: int = Field(10_000, ge=1)
    # Static group membership (KIP-345): a member that restarts under the same id within the
    # session timeout gets its partitions back without a rebalance. Unique per replica (the
    # Kubernetes StatefulSet sets it to the pod name); null = dynamic membership.
    group_instance_id: str | None = Field(None, min_length=1, max_length=249)

    @model_validator(mode="after")
    def _heartbeat_below_session(self) -> KafkaSettings:
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise ValueError(
                "heartbeat_interval_ms must be at most a third of session_timeout_ms "
                f"(got {self.heartbeat_interval_ms} and {self.session_timeout_ms})"
            )
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
    learning_rate: float = Field(1e-3, gt=0)
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

    def feature_count(self) -> int | None:
        return len(self.features) if self.features is not None else self.n_features


def _product(values: list[int]) -> int:
    out = 1
    for value in values:
        out *= value
    return out


class EngineSettings(Section):
    """Micro-batching and the limits on what a record may carry."""

    max_batch: int = Field(32, ge=1)
    max_wait_ms: int = Field(50, ge=0)
    rolling_window: int = Field(1_000, ge=1)
    max_record_bytes: int = Field(1_048_576, ge=16)
    max_samples_per_record: int = Field(10_000, ge=1)
    # Sample ids travel on every prediction (its Kafka key too): longer ones are refused.
    max_id_chars: int = Field(256, ge=1)
    # torch's intra-op threads in the learner process (0: torch's default, one per core).
    # Measured with the default MLP on 2 cores: 2 threads learn no faster than 1 and take
    # 40% more CPU from the serving processes beside it. Raise it for large networks.
    torch_threads: int = Field(1, ge=0)
    # Niceness of the learner process. Above 0, serving gets a contended core first. Measured
    # on 2 cores (docs/benchmarks.md): 10 bought serving nothing measurable, so 0.
    nice: int = Field(0, ge=0, le=19)


class CheckpointSettings(Section):
    """Where and how often checkpoints are written, and how many are kept."""

    enabled: bool = True
    dir: Path = Path("checkpoints")
    every_samples: int = Field(10_000, ge=1)
    every_seconds: float = Field(60.0, gt=0)
    # The promise is "keep the last 3": enough to fall back past one torn and one corrupt file.
    keep: int = Field(3, ge=1)
    # After a failed or deferred checkpoint (disk full, outputs not landed) the next try waits
    # retry_min_s, doubling up to retry_max_s: a full disk must not cost a whole state
    # serialization on every learning step.
    retry_min_s: float = Field(1.0, gt=0)
    retry_max_s: float = Field(60.0, gt=0)


class MetricsSettings(Section):
    """The Prometheus ``/metrics`` endpoint."""

    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = Field(9100, ge=0, le=65535)


# A bearer token shorter than this is refused: 16 random characters are past guessing.
MIN_TOKEN_CHARS = 16
# Words of the placeholders that example files ship (this project's used "change-me"). A
# token made only of these, digits and separators ("change-me", "CHANGE_ME_CHANGE_ME",
# "your-secret-token-here", "password12345678") is refused: long enough, still guessable.
PLACEHOLDER_WORDS = (
    "change",
    "me",
    "secret",
    "token",
    "password",
    "streamlearn",
    "example",
    "test",
    "your",
    "here",
    "my",
    "default",
    "dummy",
    "placeholder",
)
_PLACEHOLDER = re.compile(
    rf"(?:[\W_\d]*+(?:{'|'.join(PLACEHOLDER_WORDS)}))+[\W_\d]*+", re.IGNORECASE
)
# "xxxxxxxxxxxxxxxx", "0000000000000000", "abababab...": fewer distinct characters than this.
_MIN_DISTINCT_CHARS = 4
TOKEN_HINT = "use 16 or more random characters, e.g. from `openssl rand -hex 24`"


def token_problem(token: str) -> str | None:
    """Why ``token`` cannot guard the write endpoints, or None. Never quotes the token:
    the answer goes into errors and logs."""
    if len(token) < MIN_TOKEN_CHARS:
        return f"shorter than {MIN_TOKEN_CHARS} characters"
    if _PLACEHOLDER.fullmatch(token):
        return "a known placeholder"
    if len(set(token)) < _MIN_DISTINCT_CHARS:
        return f"made of fewer than {_MIN_DISTINCT_CHARS} distinct characters"
    return None


class ServeSettings(Section):
    """The HTTP and gRPC front ends, their workers, limits and token.

    Its validation errors never show inputs: they can hold the token.
    """

    # Validation errors of this section can carry the token: their text never shows inputs
    # (load_settings reports them through _describe, which redacts).
    model_config = ConfigDict(hide_input_in_errors=True)

    enabled: bool = True
    host: str = "0.0.0.0"
    http_port: int = Field(8080, ge=0, le=65535)
    grpc_enabled: bool = True
    grpc_port: int = Field(8081, ge=0, le=65535)
    grpc_workers: int = Field(8, ge=1)
    # Serving processes, beside the learner's own. One answers thousands of small requests a
    # second; more help only where there are cores for them.
    workers: int = Field(1, ge=1, le=64)
    # torch's intra-op threads in each serving process (0: torch's default). Requests already
    # run side by side on gRPC's threads and across serving processes.
    torch_threads: int = Field(1, ge=0)
    # The name clients address in /v2/models/{name}; one model per daemon.
    model_name: str = Field("streamlearn", pattern=r"^[A-Za-z0-9_.-]+$")
    # The input tensor's name in model metadata and infer requests.
    input_name: str = "input"
    publish_interval_ms: int = Field(500, ge=10)
    # Checked before parsing: a bigger HTTP body is answered 413 unread (chunked ones too).
    max_body_bytes: int = Field(4_194_304, ge=1_024)
    grpc_max_message_bytes: int = Field(4_194_304, ge=1_024)
    max_batch_rows: int = Field(4_096, ge=1)
    # HTTP infer requests up to this many rows run on the event loop itself (fastest for
    # small models); larger ones, or all with 0, run on worker threads so a slow forward
    # pass cannot hold up other requests.
    inline_max_rows: int = Field(64, ge=0)
    # Samples waiting in the POST /v1/learn queue; beyond this requests get 429.
    learn_queue_samples: int = Field(10_000, ge=1)
    # Bearer token for /v1/learn and /v1/checkpoint (and infer when auth_infer). Without a
    # token those write endpoints are refused: learning from anyone who can reach the port
    # is never a default.
    auth_token: SecretStr | None = None
    auth_token_file: Path | None = None
    auth_infer: bool = False
    # SIGTERM: readiness turns 503, requests are still served this long so load balancers
    # stop sending, then in-flight requests get drain_timeout_s to finish.
    shutdown_delay_s: float = Field(1.0, ge=0)
    drain_timeout_s: float = Field(5.0, ge=0)

    @field_validator("auth_token")
    @classmethod
    def _token_is_secret(cls, value: SecretStr | None) -> SecretStr | None:
        problem = token_problem(value.get_secret_value()) if value is not None else None
        if problem is not None:
            raise ValueError(f"the token is {problem}; {TOKEN_HINT}")
        return value

    @model_validator(mode="after")
    def _one_token_source(self) -> ServeSettings:
        if self.auth_token is not None and self.auth_token_file is not None:
            raise ValueError("set auth_token or auth_token_file, not both")
        return self


class CusumSettings(Section):
    """The CUSUM detector's parameters."""

    # Half the smallest shift, in standard deviations, to be caught fast: 0.5 aims at 1 sigma.
    k: float = Field(0.5, gt=0)
    # "up": only a rising loss is a drift (a falling one re-estimates the baseline quietly).
    direction: Literal["up", "both"] = "up"


class PageHinkleySettings(Section):
    """The Page-Hinkley detector's parameters."""

    delta: float = Field(0.5, gt=0)  # tolerated rise, in standard deviations


class LossDeviationSettings(Section):
    """The loss-deviation detector's parameters."""

    window: int = Field(50, ge=5)  # recent values whose mean is tested
    memory: int = Field(5_000, ge=10)  # about how many older values the reference remembers


class AdwinSettings(Section):
    """river's ADWIN detector's parameters."""

    delta: float = Field(0.002, gt=0, lt=1)  # river's confidence parameter


class KswinSettings(Section):
    """river's KSWIN detector's parameters."""

    # river defaults to 0.005, which alarms about 80 times per 100k stable values here.
    alpha: float = Field(1e-4, gt=0, lt=1)
    window_size: int = Field(100, ge=2)
    stat_size: int = Field(30, ge=1)
    seed: int = 0

    @model_validator(mode="after")
    def _stat_inside_window(self) -> KswinSettings:
        if self.stat_size >= self.window_size:
            raise ValueError(
                f"stat_size ({self.stat_size}) must be below window_size ({self.window_size})"
            )
        return self


# Built-in drift detectors (streamlearn.drift.registry builds them) and adaptation methods.
DETECTOR_NAMES = ("cusum", "page_hinkley", "loss_deviation", "adwin", "kswin")
ADAPT_METHODS = ("auto", "none", "norm", "tent", "cotta")


def _builtin_or_user_code(value: str, builtin: tuple[str, ...]) -> str:
    # Only the form is checked here: importing user code (and torch with it) is left to
    # whoever builds it, not to the supervisor that validates settings.
    if value in builtin or is_spec(value):
        return value
    raise ValueError(f"one of {', '.join(builtin)}, or 'package.module:name' for your own")


class DriftSettings(Section):
    """Which drift detector runs, what it is fed, and its false-alarm rate."""

    enabled: bool = True
    # A built-in detector, or "package.module:name" called as name(settings=<this section>)
    # for each expert, returning a streamlearn.protocols.DriftDetector (docs/extending.md).
    detector: str = "cusum"
    # What each labeled sample feeds the detector: its loss, or 1/0 for wrong/right
    # (classification only).
    signal: Literal["loss", "error"] = "loss"
    # Thresholds are solved for this many false alarms per 100k stable samples (cusum,
    # page_hinkley, loss_deviation; river's detectors use their own parameters).
    false_alarms_per_100k: float = Field(0.1, gt=0, le=10_000)
    # Values that estimate the baseline mean and spread, after start and after every drift.
    warmup: int = Field(500, ge=2)
    # Values ignored after a drift: the loss right after a change is an expert's transient.
    refractory: int = Field(500, ge=0)
    # Values are clipped to baseline mean +- clip standard deviations before the test, so a
    # single outlier cannot alarm and skewed losses (most are) behave like normal ones.
    clip: float = Field(2.5, gt=0)
    # WARNING once the statistic passes this fraction of the drift threshold.
    warning_fraction: float = Field(0.5, gt=0, lt=1)
    # Recent drift events kept for GET /v1/drift-events; all of them go to the events topic.
    history: int = Field(1_000, ge=1)
    # Values kept to rebuild river's detectors from a checkpoint.
    replay_limit: int = Field(20_000, ge=100)
    cusum: CusumSettings = Field(default_factory=CusumSettings)
    page_hinkley: PageHinkleySettings = Field(default_factory=PageHinkleySettings)
    loss_deviation: LossDeviationSettings = Field(default_factory=LossDeviationSettings)
    adwin: AdwinSettings = Field(default_factory=AdwinSettings)
    kswin: KswinSettings = Field(default_factory=KswinSettings)

    @model_validator(mode="after")
    def _threshold_exists(self) -> DriftSettings:
        # Imported here: the drift package imports this module.
        from streamlearn.drift.calibration import arl_from_rate, cusum_threshold

        k = {"cusum": self.cusum.k, "page_hinkley": self.page_hinkley.delta}.get(self.detector)
        if k is not None:
            cusum_threshold(k, arl_from_rate(self.false_alarms_per_100k), self.warmup)
        return self

    @field_validator("detector")
    @classmethod
    def _known_detector(cls, value: str) -> str:
        return _builtin_or_user_code(value, DETECTOR_NAMES)


class SelectorSettings(Section):
    """The selector network that routes unlabeled samples and served requests."""

    # The selector routes unlabeled samples and served requests to an expert.
    hidden: list[int] = Field(default_factory=lambda: [64])
    learning_rate: float = Field(1e-3, gt=0)
    # (input, expert) pairs kept per expert by uniform reservoir sampling: the selector never
    # forgets a regime just because it has not been seen for a while.
    pairs_per_expert: int = Field(500, ge=1)
    batch: int = Field(64, ge=1)  # pairs per selector training step (one per learning step)
    # Below this confidence the active expert answers: a shaky route is no better than the
    # expert that is learning right now.
    threshold: float = Field(0.7, ge=0, le=1)


class GuardSettings(Section):
    """The guards of test-time adaptation: which rows may teach and when to reset."""

    # Samples whose prediction entropy, as a share of its maximum, lies above this are not
    # adapted on: uncertain pseudo-labels are where self-training goes wrong.
    max_entropy: float = Field(0.4, gt=0, le=1)
    # Collapse checks over the last `window` adapted predictions: their mean normalized
    # entropy below min_entropy, or the normalized entropy of the predicted classes'
    # histogram below min_marginal times that of the labels learned, puts the expert back
    # to its last labeled state.
    window: int = Field(512, ge=16)
    min_entropy: float = Field(0.01, ge=0, le=1)
    min_marginal: float = Field(0.3, ge=0, le=1)
    # Labeled samples kept per expert to check adapted accuracy on (0 = no guard set); a
    # drop of more than guard_drop below the accuracy at the anchor is a collapse too.
    guard_set: int = Field(256, ge=0)
    guard_drop: float = Field(0.15, gt=0, le=1)
    guard_every: int = Field(8, ge=1)  # adaptation steps between guard-set checks
    # Back to the last labeled state after this many adapted samples since the last reset
    # (0 = never).
    reset_every: int = Field(0, ge=0)


class ReplaySettings(Section):
    """Replay of old samples into each learning step, per expert."""

    # Old samples mixed into each learning step, as a fraction of the batch (0 = off).
    ratio: float = Field(0.0, ge=0, le=4)
    capacity: int = Field(1_000, ge=1)  # samples kept per expert (reservoir sampling)
    # One reservoir per class with an equal share: rare classes are not crowded out.
    class_balanced: bool = False


class ExpertsSettings(Section):
    """The expert pool: its size and the reuse-or-spawn decision after a drift."""

    # On a drift, reuse an old expert whose loss is back inside its normal band, else spawn
    # a new one. Off: one expert learns everything and drifts are only reported.
    enabled: bool = True
    max_experts: int = Field(8, ge=1, le=256)
    # Labeled samples scored by every expert after a drift before the pool decides; they are
    # learned by the chosen expert afterwards, so none is lost.
    decision_window: int = Field(128, ge=8)
    # An expert is reused when its mean loss on the window is at most its normal mean plus
    # band_z standard errors plus band_tolerance standard deviations.
    band_z: float = Field(3.0, ge=0)
    band_tolerance: float = Field(0.25, ge=0)
    band_memory: int = Field(500, ge=10)  # about how many recent losses the band reflects
    # A spawned expert starts as a copy of the expert closest on the window (what it knows of
    # the inputs carries over: measured better or equal on 5 of 6 benchmark streams), or fresh.
    spawn: Literal["fresh", "warm_start"] = "warm_start"
    # A full pool drops its least useful expert ("prune"), or first hands that expert's
    # replay samples and selector pairs to its closest expert ("merge").
    when_full: Literal["prune", "merge"] = "prune"
    # Usefulness is wins (times chosen) halved for every this many samples since last active.
    idle_half_life: int = Field(50_000, ge=1)
    # Recent decisions kept for GET /v1/experts; all of them go to the events topic.
    history: int = Field(1_000, ge=1)
    selector: SelectorSettings = Field(default_factory=SelectorSettings)
    replay: ReplaySettings = Field(default_factory=ReplaySettings)


class AdaptSettings(Section):
    """Test-time adaptation on unlabeled samples: the method and its parameters."""

    # Test-time adaptation on unlabeled samples. "norm": re-estimate the normalization
    # layers' statistics; "tent": also minimize prediction entropy over their affine
    # parameters; "cotta": a mean teacher's pseudo-labels train a student copy, with a small
    # random share of weights restored to the last labeled state each step. "auto" is cotta
    # for a classifier and norm for a regressor (entropy needs classes) when the network has
    # batch norm (model.norm: batch), else none: on a network without it adaptation
    # measured no gain and costs most of the unlabeled throughput. "package.module:name":
    # your own, called as name(settings=<this section>, generator=<torch.Generator>) per
    # expert, returning a streamlearn.protocols.AdaptMethod (docs/extending.md).
    method: str = "auto"
    # Adapt on served infer requests too (their rows reach the learner, bounded and lossy).
    on_requests: bool = False
    # Unlabeled samples gathered per expert before one adaptation step: normalization
    # statistics from a handful of rows are noise.
    batch_size: int = Field(32, ge=2)
    # Each step adapts on a class-balanced memory of this many recent rows per expert, not
    # on the new batch alone: a class-sorted stream then cannot drag the statistics to one
    # class. 0 adapts on each new batch alone (batch norm needs two rows: 1 is refused).
    memory: int = Field(64, ge=0)
    learning_rate: float = Field(1e-3, gt=0)
    # Momentum of the running normalization statistics per adaptation step.
    norm_momentum: float = Field(0.1, gt=0, le=1)
    # Mean teacher: its weights move this much towards the student each step.
    teacher_momentum: float = Field(0.999, ge=0, lt=1)
    # Below this teacher confidence, the pseudo-label averages predictions on augmentations.
    confidence_threshold: float = Field(0.9, ge=0, le=1)
    augmentations: int = Field(8, ge=1)
    # Share of weights put back to their last labeled values each step (CoTTA's restore).
    restore_probability: float = Field(0.01, ge=0, le=1)
    # Image inputs (model.image_shape) are augmented with shifts of up to one pixel, plus
    # horizontal flips when they are valid for the data (not for digits or text).
    flips: bool = False
    noise_sd: float = Field(0.05, ge=0)  # augmentation noise, in units of the model input
    feature_dropout: float = Field(0.1, ge=0, lt=1)
    guards: GuardSettings = Field(default_factory=GuardSettings)

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        return _builtin_or_user_code(value, ADAPT_METHODS)

    @field_validator("memory")
    @classmethod
    def _memory_holds_a_batch(cls, value: int) -> int:
        if value == 1:
            raise ValueError("0 (off) or at least 2: batch statistics need two rows")
        return value

    def method_for(self, task: str, batch_norm: bool) -> str:
        """The method in force, "auto" resolved for the task and whether the network has
        batch norm (without it, adaptation measured no gain for its cost)."""
        if self.method != "auto":
            return self.method
        if not batch_norm:
            return "none"
        return "cotta" if task == "classification" else "norm"


class LogSettings(Section):
    """Log level and format."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class Settings(BaseSettings):
    """Every setting of a daemon, one section each.

    Build it with ``load_settings``: environment over YAML over defaults, unknown keys refused.
    """

    model_config = SettingsConfigDict(
        env_prefix="STREAMLEARN_",
        env_nested_delimiter="__",
        extra="forbid",
        # The input holds the token: an error's text (a child process logs one) must not.
        hide_input_in_errors=True,
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)
    experts: ExpertsSettings = Field(default_factory=ExpertsSettings)
    adapt: AdaptSettings = Field(default_factory=AdaptSettings)
    checkpoint: CheckpointSettings = Field(default_factory=CheckpointSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    log: LogSettings = Field(default_factory=LogSettings)

    @model_validator(mode="after")
    def _error_signal_needs_classes(self) -> Settings:
        if self.drift.signal == "error" and self.model.task != "classification":
            raise ValueError(
                "drift.signal: 'error' needs model.task: classification "
                "(a regression has no right or wrong; use 'loss')"
            )
        if self.experts.replay.class_balanced and self.model.task != "classification":
            raise ValueError(
                "experts.replay.class_balanced needs model.task: classification "
                "(every distinct regression target would get its own reservoir)"
            )
        if self.adapt.method in ("tent", "cotta") and self.model.task != "classification":
            raise ValueError(
                f"adapt.method: {self.adapt.method!r} needs model.task: "
                "classification (it learns from predicted classes); use 'norm'"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_settings reads the environment itself (settings_env: strict, one line per
        # bad variable) and hands everything over as init kwargs.
        return (init_settings,)


def load_settings(path: Path | str | None = None, **overrides: Any) -> Settings:
    """Read the YAML file (if any), apply environment overrides, validate everything.

    Raises :class:`SettingsError` with one line per field at fault.
    """
    data: dict[str, Any] = _read_yaml(Path(path)) if path is not None else {}
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
    data = merge(data, read_environment(os.environ, tuple(Settings.model_fields)))
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError([f"{path}: cannot read ({exc.strerror})"]) from None
    except yaml.YAMLError as exc:
        raise SettingsError([f"{path}: not valid YAML ({exc})"]) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise SettingsError([f"{path}: the top level must be a mapping of sections"])
    return loaded


def _describe(exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors():
        loc = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            problems.append(f"{loc}: unknown setting; allowed here: {_allowed(error['loc'])}")
        elif isinstance(error.get("input"), dict) and error["type"] == "value_error":
            # A cross-field rule: its input is the whole section, which says nothing more.
            problems.append(f"{loc or 'settings'}: {error['msg']}")
        else:
            shown = _redact(error["loc"], error.get("input"))
            problems.append(f"{loc}: {error['msg']} (got {shown!r})")
    return problems


class _Redacted:
    def __repr__(self) -> str:
        return "<redacted>"


REDACTED = _Redacted()


def _redact(loc: tuple[int | str, ...], value: Any) -> Any:
    """``value``, found at ``loc``, with every secret setting in it replaced: a section's
    cross-field error gets the whole section as its input, the top level's everything."""
    if any(loc[: len(path)] == path for path in _secret_paths(Settings)):
        return REDACTED
    if isinstance(value, dict):
        return {key: _redact((*loc, key), item) for key, item in value.items()}
    return value


@cache
def _secret_paths(model: type[BaseModel]) -> tuple[tuple[str, ...], ...]:
    """Where the SecretStr settings of ``model`` are (("serve", "auth_token"), ...)."""
    paths: list[tuple[str, ...]] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if annotation is SecretStr or SecretStr in get_args(annotation):
            paths.append((name,))
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths += [(name, *inner) for inner in _secret_paths(annotation)]
    return tuple(paths)


def _allowed(loc: tuple[int | str, ...]) -> str:
    model: type[BaseModel] = Settings
    for part in loc[:-1]:
        annotation = model.model_fields[str(part)].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        model = annotation
    return ", ".join(model.model_fields)


def dump_defaults() -> dict[str, Any]:
    """Every default, as YAML-ready plain data (used to check config/default.yaml)."""
    return Settings.model_construct().model_dump(mode="json")
