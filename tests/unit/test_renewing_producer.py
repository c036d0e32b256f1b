"""X6: a producer whose broker lost its sequence state is made again (shared.broker.RenewingProducer).

aiokafka's idempotent producer, once a broker answered OutOfOrderSequenceNumber, fails the
batch and then every later send (its sender task has ended: aio-libs/aiokafka#1017). The
stand-in below behaves that way, so the renewal logic is tested without waiting for a broker
restart to desynchronise a real one; the chaos run (tests/faults/test_chaos.py) restarts a real
broker under load.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, OutOfOrderSequenceNumber

from shared.broker import RenewingProducer


class BrokenAfter:
    """An idempotent producer that acknowledges ``good`` records, then fails the next one with
    OutOfOrderSequenceNumber and refuses every send after it, as aiokafka's does."""

    made = 0

    def __init__(self, good: int) -> None:
        BrokenAfter.made += 1
        self.number = BrokenAfter.made
        self.good, self.sent, self.dead, self.started, self.stopped = good, 0, False, False, False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def send(self, topic: str, value: bytes, **_: Any) -> asyncio.Future[Any]:
        if self.dead:
            raise OutOfOrderSequenceNumber
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent += 1
        if self.sent > self.good:
            self.dead = True
            future.set_exception(OutOfOrderSequenceNumber())
        else:
            future.set_result((self.number, topic, value))
        return future


async def test_x6_a_producer_that_lost_its_sequence_is_replaced_and_later_sends_go_through() -> None:
    made: list[BrokenAfter] = []

    def make() -> Any:
        made.append(BrokenAfter(good=2 if not made else 100))
        return made[-1]

    producer = RenewingProducer(make)
    await producer.start()
    assert [await producer.send_and_wait("t", b"1"), await producer.send_and_wait("t", b"2")] == [
        (made[0].number, "t", b"1"),
        (made[0].number, "t", b"2"),
    ]

    with pytest.raises(OutOfOrderSequenceNumber):  # the caller learns this one failed: it sends it again
        await producer.send_and_wait("t", b"3")
    assert await producer.send_and_wait("t", b"3") == (made[1].number, "t", b"3")

    assert len(made) == 2
    assert made[0].stopped
    assert made[1].started
    assert producer.renewals == 1
    await producer.stop()
    assert made[1].stopped


async def test_x6_sends_meeting_a_dead_producer_renew_it_once_and_wait_for_the_new_one() -> None:
    made: list[BrokenAfter] = []

    def make() -> Any:
        made.append(BrokenAfter(good=0 if not made else 100))
        made[-1].dead = len(made) == 1  # the first is dead from the start: every send raises
        return made[-1]

    producer = RenewingProducer(make)
    await producer.start()
    results = await asyncio.gather(*(producer.send_and_wait("t", b"x") for _ in range(3)), return_exceptions=True)

    # The first send found it dead; the others waited for the new producer and went through it.
    assert isinstance(results[0], OutOfOrderSequenceNumber)
    assert results[1:] == [(made[1].number, "t", b"x")] * 2
    assert len(made) == 2  # renewed once, not once per failed send
    assert producer.renewals == 1


async def test_x6_other_errors_leave_the_producer_as_it_is() -> None:
    class TimesOut(BrokenAfter):
        async def send(self, *_: object, **__: object) -> asyncio.Future[Any]:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            future.set_exception(KafkaTimeoutError())
            return future

    made: list[BrokenAfter] = []
    producer = RenewingProducer(lambda: made.append(TimesOut(0)) or made[-1])  # type: ignore[func-returns-value]
    await producer.start()
    with pytest.raises(KafkaTimeoutError):
        await producer.send_and_wait("t", b"x")
    await asyncio.sleep(0)
    assert len(made) == 1
    assert producer.renewals == 0
