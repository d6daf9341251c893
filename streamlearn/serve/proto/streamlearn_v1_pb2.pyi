from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LabeledSample(_message.Message):
    __slots__ = ("x", "class_index", "label", "value")
    X_FIELD_NUMBER: _ClassVar[int]
    CLASS_INDEX_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    x: _containers.RepeatedScalarFieldContainer[float]
    class_index: int
    label: str
    value: float
    def __init__(self, x: _Optional[_Iterable[float]] = ..., class_index: _Optional[int] = ..., label: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...

class ForgetRequest(_message.Message):
    __slots__ = ("samples", "expert")
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    EXPERT_FIELD_NUMBER: _ClassVar[int]
    samples: _containers.RepeatedCompositeFieldContainer[LabeledSample]
    expert: str
    def __init__(self, samples: _Optional[_Iterable[_Union[LabeledSample, _Mapping]]] = ..., expert: _Optional[str] = ...) -> None: ...

class ForgetResponse(_message.Message):
    __slots__ = ("forgotten", "expert")
    FORGOTTEN_FIELD_NUMBER: _ClassVar[int]
    EXPERT_FIELD_NUMBER: _ClassVar[int]
    forgotten: int
    expert: str
    def __init__(self, forgotten: _Optional[int] = ..., expert: _Optional[str] = ...) -> None: ...
