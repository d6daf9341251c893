"""HTTP request and response bodies (pydantic), the source of the OpenAPI document.

The /v2 models follow the Open Inference Protocol v2 REST spec; unknown fields are
accepted and ignored there, as the spec's clients may send extensions. Error bodies are
always ``{"error": "..."}``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from streamlearn.core.codecs import SampleIn

Parameters = dict[str, Any]


class ErrorBody(BaseModel):
    """Every error response: one message."""

    error: str = Field(examples=["inputs[0] ('input'): data contains NaN or Infinity"])


class ServerMetadata(BaseModel):
    """The server's name, version and protocol extensions (``GET /v2``)."""

    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    """A model input or output: name, datatype and shape."""

    name: str
    datatype: str
    shape: list[int]
    parameters: Parameters | None = None


class ModelMetadata(BaseModel):
    """The model's name, versions, platform and tensors (``GET /v2/models/{name}``)."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ReadyBody(BaseModel):
    """Whether the server or the model can answer requests now."""

    name: str | None = None
    ready: bool


class LiveBody(BaseModel):
    """Whether the server process is up."""

    live: bool


class _InputFields(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    shape: list[int]
    datatype: str
    parameters: Parameters | None = None


class RequestInput(_InputFields):
    """One input tensor of an inference request, its values as JSON."""

    data: list[Any] = Field(description="Row-major values, flat or nested to the shape.")


class HeaderInput(_InputFields):
    """An input of a binary-extension request: ``data``, or ``parameters.binary_data_size``
    bytes after the JSON header."""

    data: list[Any] | None = None


class RequestOutput(BaseModel):
    """An output the client asks for, optionally as binary data."""

    model_config = ConfigDict(extra="ignore")

    name: str
    parameters: Parameters | None = Field(
        None,
        description="binary_data: true to get this output as bytes after the JSON "
        "(binary tensor data extension)",
    )


class _InferFields(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str | None = None
    parameters: Parameters | None = Field(
        None,
        description="binary_data_output: true to get every output as bytes after the "
        "JSON unless the output says otherwise (binary tensor data extension)",
    )


class InferRequest(_InferFields):
    """An inference request: its inputs, and optionally which outputs to return."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "id": "42",
                    "inputs": [
                        {
                            "name": "input",
                            "shape": [1, 3],
                            "datatype": "FP32",
                            "data": [0.1, 0.5, -1.2],
                        }
                    ],
                }
            ]
        },
    )

    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None


class InferHeader(_InferFields):
    """The JSON header of a binary tensor data extension request."""

    inputs: list[HeaderInput]
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    """One output tensor of an inference response."""

    name: str
    shape: list[int]
    datatype: str
    parameters: Parameters | None = Field(
        None, description="binary_data_size: the output is that many bytes after the JSON"
    )
    data: list[Any] | None = Field(None, description="absent when the output is binary")


class InferResponse(BaseModel):
    """An inference response: the model version that answered, and its outputs."""

    model_name: str
    model_version: str
    id: str | None = None
    parameters: Parameters | None = None
    outputs: list[ResponseOutput]


class LearnRequest(BaseModel):
    """Labeled samples to learn, queued for the learner like Kafka records."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"samples": [{"x": [0.1, 0.5, -1.2], "y": 1}, {"x": [0.3, 0.1, 0.9], "y": 0}]}
            ]
        }
    )

    samples: list[SampleIn] = Field(description="Labeled samples, as in Kafka records.")


class ForgetRequest(BaseModel):
    """Labeled samples to unlearn exactly from an expert's rls head (``model.head: rls``)."""

    samples: list[SampleIn] = Field(description="Labeled samples, as they were learned.")
    expert: str | None = Field(
        None, description="The expert to unlearn them; the active one if absent."
    )


class Forgotten(BaseModel):
    """How many samples the expert's head no longer holds, and which expert."""

    forgotten: int
    expert: str


class LearnAccepted(BaseModel):
    """How many samples were accepted, and how many now wait in the learner's queue."""

    accepted: int
    queued: int


class CheckpointDone(BaseModel):
    """The checkpoint written on request (if one was), and what it covers."""

    saved: bool
    path: str | None
    samples_learned: int
    offsets: dict[str, int]


class DriftEventBody(BaseModel):
    """A drift or warning raised on one expert, or a shift of the input rows."""

    kind: str = Field(
        description="'drift', 'warning' when the test passed its warning level, or "
        "'input_shift' when the input rows changed domain (expert '*')"
    )
    detector: str
    expert: str
    sample: int = Field(
        description="samples learned before the one that raised it; for input_shift, rows "
        "watched before the one that raised it"
    )
    model_version: int
    time: float


class DriftEvents(BaseModel):
    """The latest drift events."""

    events: list[DriftEventBody]


class ExpertBody(BaseModel):
    """One expert of the pool and how it has fared."""

    id: str
    created: float = Field(description="wall-clock time it was spawned")
    samples_learned: int
    last_active: float | None = Field(description="wall-clock time it last learned")
    active: bool = Field(description="the expert learning now")
    wins: int = Field(description="times the pool chose it, its spawn included")
    loss_band: tuple[float, float] | None = Field(
        description="mean loss over a decision window that counts as its regime; null until "
        "it has learned enough"
    )
    accuracy: float | None = Field(description="prequential, over about its last 1000 answers")
    created_sample: int
    last_active_sample: int


class PoolEventBody(BaseModel):
    """A decision of the pool after a drift: which expert it chose, and each one's score."""

    kind: str = Field(description="switch, spawn, keep, prune or merge")
    expert: str = Field(description="the expert now active; for prune and merge the one removed")
    previous: str | None
    sample: int = Field(description="labeled samples taken in before the decision")
    time: float
    scores: dict[str, float] = Field(description="each expert's mean loss on the window")


class Experts(BaseModel):
    """The expert pool: the active expert, every expert, and the latest pool decisions."""

    active: str | None
    experts: list[ExpertBody]
    events: list[PoolEventBody]
