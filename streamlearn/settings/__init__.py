"""All settings: each package's section, composed into one :class:`Settings`.

Each section is defined beside the code it configures (``core/settings.py`` for the engine,
``core/drift/settings.py``, ``sources/settings.py`` for kafka, ...) and imports nothing above
it; this module composes them, reads the YAML file and the environment, and is the one
place the whole is validated. The sections are re-exported here for users and tests.

Sources, highest priority first: ``STREAMLEARN_<SECTION>__<KEY>`` environment variables, the
YAML file given with ``--config``, then the defaults below (mirrored, with comments, in
``config/default.yaml``). Unknown keys are errors: a typo must never silently fall back to
a default.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from streamlearn.checkpoint.settings import CheckpointSettings
from streamlearn.core.adapt.settings import ADAPT_METHODS, AdaptSettings, GuardSettings
from streamlearn.core.drift.settings import (
    DETECTOR_NAMES,
    AdwinSettings,
    CusumSettings,
    DriftSettings,
    KswinSettings,
    LossDeviationSettings,
    PageHinkleySettings,
)
from streamlearn.core.errors import SettingsError
from streamlearn.core.experts.settings import ExpertsSettings, ReplaySettings, SelectorSettings
from streamlearn.core.labels.settings import LabelsSettings
from streamlearn.core.logging import LogSettings
from streamlearn.core.models.settings import ModelSettings
from streamlearn.core.section import Section
from streamlearn.core.settings import EngineSettings
from streamlearn.runtime.settings import MetricsSettings
from streamlearn.serve.settings import TOKEN_HINT, ServeSettings, token_problem
from streamlearn.settings.env import merge, read_environment
from streamlearn.sources.settings import KafkaSettings
from streamlearn.sync.settings import SyncSettings

__all__ = [
    "ADAPT_METHODS",
    "DETECTOR_NAMES",
    "TOKEN_HINT",
    "AdaptSettings",
    "AdwinSettings",
    "CheckpointSettings",
    "CusumSettings",
    "DriftSettings",
    "EngineSettings",
    "ExpertsSettings",
    "GuardSettings",
    "KafkaSettings",
    "KswinSettings",
    "LabelsSettings",
    "LogSettings",
    "LossDeviationSettings",
    "MetricsSettings",
    "ModelSettings",
    "PageHinkleySettings",
    "ReplaySettings",
    "Section",
    "SelectorSettings",
    "ServeSettings",
    "Settings",
    "SyncSettings",
    "dump_defaults",
    "load_settings",
    "token_problem",
]


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
    labels: LabelsSettings = Field(default_factory=LabelsSettings)
    checkpoint: CheckpointSettings = Field(default_factory=CheckpointSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    sync: SyncSettings = Field(default_factory=SyncSettings)

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
        if self.labels.enabled and self.kafka.client != "kafka-python":
            raise ValueError(
                "labels.enabled needs kafka.client: kafka-python (one topic on confluent)"
            )
        if self.labels.enabled and self.kafka.labels_topic == self.kafka.input_topic:
            raise ValueError("kafka.labels_topic must differ from kafka.input_topic")
        if self.sync.enabled and self.labels.enabled:
            raise ValueError(
                "sync.enabled and labels.enabled: late labels are not synced between replicas yet"
            )
        if self.labels.guard.enabled and self.model.task != "classification":
            raise ValueError("labels.guard needs model.task: classification (it judges accuracy)")
        if self.labels.challenger.enabled and self.model.task != "classification":
            raise ValueError("labels.challenger needs model.task: classification (paired accuracy)")
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
