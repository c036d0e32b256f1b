"""The CLI's Kafka side: read the dead-letter topic, look up single dead letters, publish re-drives.

Reading never joins a consumer group and never commits offsets: listing dead letters must not
move anyone's position, and running it twice shows the same records.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaConnectionError

from contracts.catalogue import OPERATOR
from contracts.topics import DEAD_LETTER
from scripts.cli.model import DeadLetter, DeadLetterId, Redrive
from shared.broker_security import client_options

# A dead letter holds the original value, which may be a few MB; the producer checks sizes
# before compressing, so its limit must be well above the broker's compressed one.
MAX_RECORD_BYTES = 16 * 1024 * 1024
POLL_MS = 200


class KafkaUnavailableError(RuntimeError):
    """The broker could not be reached, did not answer in time, or has no dead-letter topic."""


@dataclass(frozen=True, slots=True)
class Lookup:
    """Dead letters found by ID (None: no record there) and the broker's topics with their partitions."""

    dead_letters: Mapping[DeadLetterId, DeadLetter | None]
    partitions: Mapping[str, frozenset[int]]


@dataclass(frozen=True, slots=True)
class Published:
    """Where a re-drive was written, or why it was not."""

    redrive: Redrive
    partition: int | None = None
    offset: int | None = None
    error: str | None = None


@asynccontextmanager
async def _consumer(bootstrap_servers: str) -> AsyncIterator[AIOKafkaConsumer]:
    consumer = AIOKafkaConsumer(
        **client_options(OPERATOR),
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        max_partition_fetch_bytes=MAX_RECORD_BYTES,
        fetch_max_bytes=4 * MAX_RECORD_BYTES,
    )
    try:
        await consumer.start()
    except KafkaConnectionError as error:
        await consumer.stop()  # releases what start() opened before it failed
        raise KafkaUnavailableError(f"cannot reach Kafka at {bootstrap_servers}: {error}") from error
    try:
        yield consumer
    finally:
        await consumer.stop()


async def _topic_partitions(consumer: AIOKafkaConsumer) -> dict[str, frozenset[int]]:
    """Every topic on the broker with its partitions, fetched now.

    ``consumer.topics()`` fetches the same metadata but keeps only the names, and
    ``partitions_for_topic`` reads a cache that knows only assigned topics; so the client call
    behind ``topics()`` is used directly.
    """
    cluster = await consumer._client.fetch_all_metadata()
    return {topic: frozenset(cluster.partitions_for_topic(topic) or ()) for topic in cluster.topics()}


async def read_dead_letters(
    bootstrap_servers: str, *, topic: str = DEAD_LETTER.name, stall_timeout: float = 30.0
) -> list[DeadLetter]:
    """Every record on the dead-letter topic (``topic`` only for tests) from its beginning to its end as we started.

    The end offsets are captured first, so records dead-lettered while we read do not keep us
    reading, and an empty topic returns at once. Sorted by dead-letter time, then ID.
    """
    async with _consumer(bootstrap_servers) as consumer:
        partitions = (await _topic_partitions(consumer)).get(topic)
        if not partitions:
            # Every stack creates it at start, so its absence means the wrong broker, not "none".
            raise KafkaUnavailableError(f"{topic} does not exist on {bootstrap_servers}: is this TradeGuard's broker?")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, starts[tp])
        letters = await _read_until(consumer, {tp: ends[tp] for tp in tps if ends[tp] > starts[tp]}, stall_timeout)
    return sorted(letters, key=lambda letter: (letter.at, letter.id))


async def _read_until(
    consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int], stall_timeout: float
) -> list[DeadLetter]:
    """Consume each partition up to (not including) its end offset.

    Gives up only when nothing arrives for ``stall_timeout`` seconds: a long topic may take a
    while, a broker that stopped answering must not hang the command.
    """
    clock = asyncio.get_running_loop().time
    pending = dict(ends)
    letters: list[DeadLetter] = []
    last_progress = clock()
    while pending:
        batches = await consumer.getmany(*pending, timeout_ms=POLL_MS)
        for tp, records in batches.items():
            letters.extend(DeadLetter.of(r) for r in records if r.offset < ends[tp])
            last_progress = clock()
        for tp in list(pending):
            if await consumer.position(tp) >= pending[tp]:
                del pending[tp]
        if pending and clock() - last_progress > stall_timeout:
            missing = ", ".join(f"{tp.partition}" for tp in pending)
            raise KafkaUnavailableError(f"no records from partition(s) {missing} for {stall_timeout:.0f} s")
    return letters


async def fetch_dead_letters(bootstrap_servers: str, ids: Iterable[DeadLetterId], *, timeout: float = 30.0) -> Lookup:
    """Read exactly the records ``ids`` name (seeking to each), plus the broker's topic metadata."""
    async with _consumer(bootstrap_servers) as consumer:
        partitions = await _topic_partitions(consumer)
        existing = partitions.get(DEAD_LETTER.name, frozenset())
        found: dict[DeadLetterId, DeadLetter | None] = {}
        for letter_id in ids:
            if letter_id.partition not in existing:
                found[letter_id] = None
                continue
            try:
                async with asyncio.timeout(timeout):
                    found[letter_id] = await _fetch_one(consumer, letter_id)
            except TimeoutError as error:
                raise KafkaUnavailableError(
                    f"reading dead letter {letter_id} took longer than {timeout:.0f} s"
                ) from error
    return Lookup(found, partitions)


async def _fetch_one(consumer: AIOKafkaConsumer, letter_id: DeadLetterId) -> DeadLetter | None:
    tp = TopicPartition(DEAD_LETTER.name, letter_id.partition)
    consumer.assign([tp])
    start = (await consumer.beginning_offsets([tp]))[tp]
    end = (await consumer.end_offsets([tp]))[tp]
    if not start <= letter_id.offset < end:
        return None
    consumer.seek(tp, letter_id.offset)
    while await consumer.position(tp) < end:
        batch = await consumer.getmany(tp, timeout_ms=POLL_MS, max_records=1)
        for record in batch.get(tp, []):
            # Past the offset means there is no record there (compacted away or a control record).
            return DeadLetter.of(record) if record.offset == letter_id.offset else None
    return None


async def publish_redrives(bootstrap_servers: str, redrives: Sequence[Redrive]) -> list[Published]:
    """Publish each re-drive and wait for the broker's ack; a failure is reported, the rest still go.

    A re-drive is the original record, signature headers included (SPEC X9), and is never signed
    again: the consumer trusts it as it would have trusted the original, for the principal that
    made it, so an operator can re-drive a record but never vouch for one (a record that was
    dead-lettered for its signature is dead-lettered again). The operators' own commands are
    signed as ``operator`` by :class:`scripts.marketplace.Marketplace`."""
    producer = AIOKafkaProducer(
        **client_options(OPERATOR),
        bootstrap_servers=bootstrap_servers,
        enable_idempotence=True,
        acks="all",
        # Large originals: the broker's limit applies to the compressed batch.
        compression_type="gzip",
        max_request_size=MAX_RECORD_BYTES,
    )
    try:
        await producer.start()
    except KafkaConnectionError as error:
        await producer.stop()
        raise KafkaUnavailableError(f"cannot reach Kafka at {bootstrap_servers}: {error}") from error
    try:
        return [await _publish(producer, redrive) for redrive in redrives]
    finally:
        await producer.stop()


async def _publish(producer: AIOKafkaProducer, redrive: Redrive) -> Published:
    try:
        written = await producer.send_and_wait(
            redrive.topic,
            redrive.value,
            key=redrive.key,
            partition=redrive.partition,
            headers=list(redrive.headers),
        )
    except Exception as error:  # one bad record must not hide what was already published
        return Published(redrive, error=f"{type(error).__name__}: {error}")
    return Published(redrive, partition=written.partition, offset=written.offset)
