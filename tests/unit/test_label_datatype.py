"""The v2 datatype of `predictions` comes from the model's label set, never from the rows.

A model restored from a checkpoint written before labels had to be all integers or all
strings may hold both (``0`` and ``"spam"``): its metadata says BYTES, and every answer must
say BYTES too, over HTTP and gRPC alike, even when each row of a request predicts ``0``.
"""

from concurrent.futures import Future
from typing import Any, NoReturn, cast

import grpc
import torch

from streamlearn.core.predictor import Predictor, fixed_route
from streamlearn.core.types import Label, Sample
from streamlearn.metrics import ServingMetrics
from streamlearn.serve.board import SnapshotBoard
from streamlearn.serve.core import LearnerClient, LearnerView, ServingCore
from streamlearn.serve.grpc import InferenceServicer
from streamlearn.serve.proto import grpc_predict_v2_pb2 as pb
from streamlearn.serve.snapshot import Snapshot
from streamlearn.serve.tensors import TensorIn, label_tensor
from streamlearn.settings import Settings, load_settings

LABELS = (0, "spam")


class Learner:
    up = True

    def learn(self, samples: list[Sample]) -> Future[dict[str, int]]:
        return Future()

    def adapt_on(self, rows: list[list[float]]) -> None: ...

    def keep_served(self, rows: list[dict[str, Any]]) -> None: ...

    def checkpoint(self) -> Future[dict[str, Any]]:
        return Future()

    def forget(self, samples: list[Sample], expert: str | None) -> Future[dict[str, Any]]:
        return Future()

    def view(self) -> LearnerView:
        return LearnerView()


class Context:
    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    def abort(self, code: grpc.StatusCode, message: str) -> NoReturn:
        raise AssertionError(f"{code}: {message}")


def context() -> grpc.ServicerContext:
    """A stand-in with the two methods the servicer calls, typed as what it stands for."""
    return cast(grpc.ServicerContext, Context())


def _core(
    labels: tuple[Label, ...] = LABELS,
    settings: Settings | None = None,
    learner: LearnerClient | None = None,
) -> ServingCore:
    # Every row's logits favour class index 0, whose label is the integer 0.
    def forward(x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([[5.0, -5.0]]).repeat(x.shape[0], 1)

    predictor = Predictor(
        "classification", labels, {"0": forward}, fixed_route("0"), torch.device("cpu")
    )
    board = SnapshotBoard()
    board.publish(
        Snapshot(
            version=7,
            created=0.0,
            task="classification",
            n_features=2,
            feature_names=None,
            labels=labels,
            expert_id="0",
            experts=(),
            predictor=predictor,
        )
    )
    return ServingCore(
        settings or load_settings(None), board, learner or Learner(), ServingMetrics()
    )


def _declared(core: ServingCore) -> dict[str, str]:
    return {o["name"]: o["datatype"] for o in core.model_metadata("streamlearn")["outputs"]}


def test_predictions_keep_the_metadata_datatype_when_every_row_predicts_an_integer() -> None:
    core = _core()
    answer = core.infer("streamlearn", [TensorIn("input", "FP32", [2, 2], [[1, 2], [3, 4]])])
    outputs = {t.name: t for t in answer.outputs}
    assert _declared(core)["predictions"] == "BYTES"
    assert (outputs["predictions"].datatype, outputs["predictions"].data) == ("BYTES", ["0", "0"])
    assert outputs["classes"].datatype == "BYTES"


def test_grpc_answers_the_declared_datatype_too() -> None:
    servicer = InferenceServicer(_core())
    tensor = pb.ModelInferRequest.InferInputTensor(
        name="input",
        datatype="FP32",
        shape=[1, 2],
        contents=pb.InferTensorContents(fp32_contents=[1.0, 2.0]),
    )
    request = pb.ModelInferRequest(model_name="streamlearn", inputs=[tensor])
    response = servicer.ModelInfer(request, context())
    predictions = next(o for o in response.outputs if o.name == "predictions")
    assert predictions.datatype == "BYTES"
    assert list(predictions.contents.bytes_contents) == [b"0"]
    metadata = servicer.ModelMetadata(pb.ModelMetadataRequest(name="streamlearn"), context())
    declared = next(o for o in metadata.outputs if o.name == "predictions")
    assert declared.datatype == "BYTES"


def test_integer_labels_stay_int64() -> None:
    core = _core(labels=(0, 1))
    answer = core.infer("streamlearn", [TensorIn("input", "FP32", [1, 2], [[1, 2]])])
    assert answer.outputs[0].datatype == _declared(core)["predictions"] == "INT64"
    assert answer.outputs[0].data == [0]


def test_label_tensor_takes_its_datatype_from_the_label_set() -> None:
    assert label_tensor("p", [0, 0], labels=[0, "spam"]).datatype == "BYTES"
    assert label_tensor("p", ["a"], labels=["a", "b"]).data == ["a"]
    assert label_tensor("p", [1, 0], labels=[0, 1]).datatype == "INT64"
