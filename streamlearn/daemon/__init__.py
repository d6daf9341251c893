"""The daemon: connect, restore, the learner loop, checkpoints, shutdown.

- :mod:`~streamlearn.daemon.loop`: :class:`Daemon`, its lifecycle and the learner loop;
- :mod:`~streamlearn.daemon.checkpointer`: checkpoints, offsets, rebalance (and the
  checkpoint order);
- :mod:`~streamlearn.daemon.reporting`: metrics, logs, events and dead letters of each step;
- :mod:`~streamlearn.daemon.gauges`: gauges and :class:`Progress`;
- :mod:`~streamlearn.daemon.endpoints`: the source, sink and snapshot publisher it talks to.
"""

from streamlearn.daemon.endpoints import (
    SinkFactory,
    SnapshotPublisher,
    SourceFactory,
)
from streamlearn.daemon.gauges import Progress
from streamlearn.daemon.loop import Daemon, kafka_daemon

__all__ = [
    "Daemon",
    "Progress",
    "SinkFactory",
    "SnapshotPublisher",
    "SourceFactory",
    "kafka_daemon",
]
