"""The faults of a chaos run, carried out against the running stack (G2, X6).

- :class:`Supervisor` kills services on the schedule (SIGKILL: no clean shutdown, no flush) and
  starts them again after their pause; a service that dies on its own (a broker outage it did
  not survive) is started again too, the way a container's restart policy would, and counted.
- :class:`BrokerControl` stops and starts the run's broker (scripts/kafka.sh, its data kept).
- :class:`RecordCopier` reads every topic as the operators' principal and publishes a share of
  the records again, byte for byte with their headers (so their signatures still verify): at
  once (a duplicate) or a few seconds later, behind records of other keys (a late copy, which
  reorders them). What a consumer does with them is the inbox's business: absorb them.
- :class:`Poisoner` sends malformed records (:class:`~scripts.chaos.plan.PoisonKind`) and keeps
  where each landed, so the run can check that every consumer of its topic dead-lettered it.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import Counter
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from contracts import ALL_TOPICS, MESSAGE_TYPES, CommandRejected
from contracts.catalogue import OPERATOR
from contracts.topics import DEAD_LETTER, MESSAGE_TYPE_HEADER, ORDER_COMMANDS
from scripts.chaos.plan import Copy, Fault, FaultKind, PoisonKind, Schedule, copy_decision
from scripts.stack import LocalKafka, ServiceProcesses
from shared.broker import RenewingProducer
from shared.broker_security import client_options
from shared.logging import get_logger
from shared.signing import Keyring

log = get_logger(__name__)

POISON_KEY_PREFIX = "chaos-poison-"
"""Every poison record's key starts so: the copier leaves them alone and the run finds them."""
COPIED_TOPICS = tuple(topic.name for topic in ALL_TOPICS if topic is not DEAD_LETTER)


@dataclass
class FaultFigures:
    """What the run did to the stack, by kind (the report's 'faults injected')."""

    injected: Counter[str] = field(default_factory=Counter)
    unexpected_exits: Counter[str] = field(default_factory=Counter)
    """Services that died without being killed, and were started again."""
    copies_failed: int = 0
    """Copies the broker did not take (sent while it was down)."""


class Supervisor:
    """Kills and restarts the stack's services, and restarts any that died on its own."""

    def __init__(self, services: ServiceProcesses, figures: FaultFigures) -> None:
        self.services = services
        self.figures = figures
        self._down: set[str] = set()

    async def kill(self, fault: Fault) -> None:
        name = fault.target
        process = self.services.processes.get(name)
        if process is None or name in self._down:
            return
        self._down.add(name)
        try:
            process.send_signal(signal.SIGKILL)
            await asyncio.to_thread(process.wait)
            self.services.processes.pop(name, None)
            self.figures.injected[f"{FaultKind.KILL}:{name}"] += 1
            await asyncio.sleep(fault.pause)
            self.services.start_one(name)
        finally:
            self._down.discard(name)

    async def watch(self, every: float = 0.5) -> None:
        """Forever: start again any service that exited while nobody was killing it."""
        while True:
            for name, process in list(self.services.processes.items()):
                if name not in self._down and process.poll() is not None:
                    log.warning("service exited on its own; starting it again", service=name, code=process.returncode)
                    self.figures.unexpected_exits[name] += 1
                    self.services.processes.pop(name, None)
                    self.services.start_one(name)
            await asyncio.sleep(every)


class BrokerControl:
    """The run's own broker (:class:`scripts.stack.LocalKafka`), counted when it restarts."""

    def __init__(self, kafka: LocalKafka, figures: FaultFigures) -> None:
        self.kafka, self.figures = kafka, figures

    async def command(self, command: str) -> None:
        await self.kafka.run(command)

    def stop_now(self) -> None:
        """Blocking, for the run's clean-up."""
        self.kafka.stop_now()

    async def restart(self) -> None:
        started = time.monotonic()
        await self.command("stop")
        await self.command("start")
        self.figures.injected[FaultKind.BROKER_RESTART] += 1
        log.info("broker restarted", seconds=round(time.monotonic() - started, 1))


class RecordCopier:
    """Publishes a share of every topic's records again (:func:`~scripts.chaos.plan.copy_decision`)."""

    def __init__(self, bootstrap: str, schedule: Schedule, figures: FaultFigures) -> None:
        self.schedule, self.figures = schedule, figures
        options = {**client_options(OPERATOR), "bootstrap_servers": bootstrap}
        self._consumer = AIOKafkaConsumer(
            *COPIED_TOPICS, **options, group_id=None, auto_offset_reset="latest", enable_auto_commit=False
        )
        self._producer = RenewingProducer(lambda: AIOKafkaProducer(**options, acks="all", enable_idempotence=True))
        self._decided: set[bytes] = set()
        self._late: set[asyncio.Task[None]] = set()
        self.running = False

    async def start(self) -> None:
        await self._producer.start()
        await self._consumer.start()
        # Positions are taken now, so records produced from here on are all seen.
        for partition in self._consumer.assignment():
            await self._consumer.position(partition)

    async def stop(self) -> None:
        for task in self._late:
            task.cancel()
        await asyncio.gather(*self._late, return_exceptions=True)
        await self._consumer.stop()
        await self._producer.stop()

    async def copy(self) -> None:
        """Forever (until cancelled): decide every record once, publish the chosen copies."""
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=200, max_records=2000)
            except KafkaError as error:  # the broker restarting: the consumer reconnects by itself
                log.info("copier could not fetch", error=str(error))
                await asyncio.sleep(0.5)
                continue
            for records in batches.values():
                for record in records:
                    await self._consider(record.topic, record.key, record.value, record.headers)

    async def _consider(
        self, topic: str, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
    ) -> None:
        if value is None or (key or b"").startswith(POISON_KEY_PREFIX.encode()):
            return
        marker = topic.encode() + b"\0" + value
        if marker in self._decided:  # a copy of ours (or the producer's own retry): decided already
            return
        self._decided.add(marker)
        decision, delay = copy_decision(self.schedule.seed, self.schedule.rates, topic, value)
        if decision is Copy.DUPLICATE:
            await self._publish(decision, topic, key, value, headers)
        elif decision is Copy.LATE:
            task = asyncio.create_task(self._later(delay, topic, key, value, headers))
            self._late.add(task)
            task.add_done_callback(self._late.discard)

    async def _later(
        self, delay: float, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> None:
        await asyncio.sleep(delay)
        await self._publish(Copy.LATE, topic, key, value, headers)

    async def _publish(
        self, decision: Copy, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> None:
        try:
            await self._producer.send_and_wait(topic, value, key=key, headers=list(headers))
        except KafkaError:
            self.figures.copies_failed += 1
            return
        self.figures.injected[f"copy:{decision}"] += 1


@dataclass(frozen=True, slots=True)
class PoisonSent:
    kind: PoisonKind
    topic: str
    partition: int
    offset: int

    @property
    def source(self) -> str:
        """How a dead letter names where its record came from (``tg-dead-letter-source``)."""
        return f"{self.topic}/{self.partition}/{self.offset}"


class Poisoner:
    """Sends malformed records, signed as the operators' tools (allowed to write every topic), so
    what makes them poison is what they hold, not who sent them."""

    def __init__(self, bootstrap: str, keyring: Keyring, figures: FaultFigures) -> None:
        self.figures = figures
        self._signer = keyring.signer(OPERATOR)
        options = {**client_options(OPERATOR), "bootstrap_servers": bootstrap}
        self._producer = RenewingProducer(lambda: AIOKafkaProducer(**options, acks="all", enable_idempotence=True))
        self.sent: list[PoisonSent] = []

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(self, fault: Fault) -> None:
        kind = fault.poison or PoisonKind.GARBAGE
        number = len(self.sent)
        key = f"{POISON_KEY_PREFIX}{number}".encode()
        value, message_type = poison_record(kind, fault.target, number)
        headers = [(MESSAGE_TYPE_HEADER, message_type.encode())] if message_type else []
        headers.extend(self._signer.headers(fault.target, key, message_type.encode() if message_type else None, value))
        try:
            metadata = await self._producer.send_and_wait(fault.target, value, key=key, headers=headers)
        except KafkaError as error:
            log.warning("poison not sent", topic=fault.target, error=str(error))
            return
        self.sent.append(PoisonSent(kind, fault.target, metadata.partition, metadata.offset))
        self.figures.injected[f"{FaultKind.POISON}:{kind}"] += 1


def poison_record(kind: PoisonKind, topic: str, number: int) -> tuple[bytes, str | None]:
    """The record's value and its ``tg-type`` header (None: no header)."""
    if kind is PoisonKind.GARBAGE:
        return b"\xff\xfe not json at all " + str(number).encode(), None
    if kind is PoisonKind.WRONG_TOPIC:
        elsewhere = "FundsHeld" if topic == ORDER_COMMANDS.name else "Checkout"
        return b"{}", elsewhere
    own_types = [m.message_type for m in MESSAGE_TYPES if m is not CommandRejected and m.topic.name == topic]
    envelope = {
        "message_id": f"{POISON_KEY_PREFIX}{number}",
        "type": "ChaosPoison" if kind is PoisonKind.UNKNOWN_TYPE or not own_types else own_types[0],
        "version": 1,
        "payload": {"note": "poison"},
    }
    return json.dumps(envelope).encode(), None


async def run_schedule(
    schedule: Schedule,
    started: float,
    supervisor: Supervisor,
    broker: BrokerControl,
    poisoner: Poisoner,
) -> None:
    """Carry out every fault at its time (seconds after ``started``, a monotonic time), each in a
    task of its own so that a slow one (a poison record sent while the broker restarts, a
    killed service's pause) does not put the later ones behind; returns when all are done."""
    under_way: set[asyncio.Task[None]] = set()
    for fault in schedule.faults:
        delay = started + fault.at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if fault.kind is FaultKind.KILL:
            action = supervisor.kill(fault)
        elif fault.kind is FaultKind.BROKER_RESTART:
            action = broker.restart()
        else:
            action = poisoner.send(fault)
        task = asyncio.create_task(action)
        under_way.add(task)
        task.add_done_callback(under_way.discard)
    await asyncio.gather(*under_way)
