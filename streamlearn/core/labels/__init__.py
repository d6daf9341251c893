"""Late labels: samples answered now and labeled later, joined by id, and the live
accuracy of what was served."""

from streamlearn.core.labels.codec import LateLabel, decode_label
from streamlearn.core.labels.served import ServedAccuracy, served_right
from streamlearn.core.labels.settings import GuardSettings, LabelsSettings
from streamlearn.core.labels.store import Join, JoinStore, Outcomes, Pending, Waiting

__all__ = [
    "GuardSettings",
    "Join",
    "JoinStore",
    "LabelsSettings",
    "LateLabel",
    "Outcomes",
    "Pending",
    "ServedAccuracy",
    "Waiting",
    "decode_label",
    "served_right",
]
