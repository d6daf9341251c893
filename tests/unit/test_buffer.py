from streamlearn.core.types import DecodedRecord, Record, Sample, TopicPartition
from streamlearn.daemon.buffer import InputBuffer


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def rec(partition: int, offset: int, n: int = 1) -> DecodedRecord:
    return DecodedRecord(Record("t", partition, offset, b""), [Sample([0.0])] * n)


def test_due_on_size_or_on_age() -> None:
    clock = Clock()
    buffer = InputBuffer(max_batch=4, max_wait_s=0.05, clock=clock)
    assert not buffer.due()
    buffer.add([rec(0, 0), rec(0, 1)])
    assert not buffer.due()
    clock.now = 0.06
    assert buffer.due()
    buffer.add([rec(0, 2), rec(0, 3)])
    clock.now = 0.0
    assert buffer.due()


def test_take_whole_records_up_to_max_batch() -> None:
    buffer = InputBuffer(max_batch=4, max_wait_s=1)
    buffer.add([rec(0, 0, 3), rec(0, 1, 2), rec(0, 2, 1)])
    assert [r.record.offset for r in buffer.take()] == [0]
    assert [r.record.offset for r in buffer.take()] == [1, 2]
    assert buffer.samples == 0


def test_a_record_bigger_than_a_batch_is_still_taken() -> None:
    buffer = InputBuffer(max_batch=2, max_wait_s=1)
    buffer.add([rec(0, 0, 10)])
    assert len(buffer.take()) == 1


def test_drop_forgets_revoked_partitions() -> None:
    buffer = InputBuffer(max_batch=10, max_wait_s=1)
    buffer.add([rec(0, 0, 2), rec(1, 0, 3), rec(0, 1, 1)])
    assert buffer.drop([TopicPartition("t", 0)]) == 2
    assert buffer.samples == 3
    assert [r.record.partition for r in buffer.take()] == [1]
