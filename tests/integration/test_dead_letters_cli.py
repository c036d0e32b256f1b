"""X2, X7: `tradeguard dead-letters list|redrive` against a real broker.

The dead letters here are synthetic records in the exact format the services write (original
key, value and headers, then the tg-dead-letter-* headers). Other tests in the session may have
dead-lettered records too, so every test only looks at the IDs it produced itself, and
re-drives go to a topic of this module's own that no service consumes.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from typer.testing import CliRunner, Result

from contracts import FundWallet, Money
from contracts.topics import (
    ACCOUNT_COMMANDS,
    DEAD_LETTER,
    DEAD_LETTER_AT,
    DEAD_LETTER_CLASS,
    DEAD_LETTER_CONSUMER,
    DEAD_LETTER_REASON,
    DEAD_LETTER_SOURCE,
    MESSAGE_TYPE_HEADER,
    REDRIVE_COUNT,
)
from scripts.cli import app
from scripts.cli.kafka_io import read_dead_letters
from shared.broker_security import ADMIN, client_options
from shared.consumer import outgoing
from shared.signing import Keyring, signing_headers

pytestmark = [pytest.mark.kafka]

Headers = list[tuple[str, bytes | None]]
BROKEN_UTF8 = b"\xc3\x28"  # a lead byte without its continuation
BIG = 2 * 1024 * 1024
SECRETS = ("4931", "4111111111111111", "774411", "hunter2")


@dataclass(frozen=True)
class Broker:
    servers: str
    topic: str  # where re-drives go: created for this module, 2 partitions, consumed by no one
    producer: AIOKafkaProducer


@pytest.fixture(scope="module")
async def broker(kafka_bootstrap: str) -> AsyncIterator[Broker]:
    topic = f"tradeguard.test.cli-redrive.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(**client_options(ADMIN), bootstrap_servers=kafka_bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    # gzip and a large request size: the 2 MB value compresses under the broker's 1 MB limit.
    producer = AIOKafkaProducer(
        **client_options(ADMIN),
        bootstrap_servers=kafka_bootstrap,
        acks="all",
        compression_type="gzip",
        max_request_size=8 * BIG,
    )
    await producer.start()
    try:
        ready = Broker(kafka_bootstrap, topic, producer)
        await topic_ready(ready, topic)
        yield ready
    finally:
        await producer.stop()
        await admin.delete_topics([topic])
        await admin.close()


async def topic_ready(broker: Broker, topic: str) -> None:
    """Wait until the broker's metadata lists a new topic (creating it returns before that)."""
    await asyncio.wait_for(broker.producer.partitions_for(topic), timeout=30)  # polls metadata until then


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex[:10]


def unique_offset() -> int:
    """A source offset no other test uses, so sources are unique per test too."""
    return uuid.uuid4().int % 10**12


async def dead_letter(
    broker: Broker,
    *,
    value: bytes | None,
    key: bytes | None = None,
    headers: Sequence[tuple[str, bytes | None]] = (),
    service: str = "account",
    dead_letter_class: str | None = "record",
    source: str | None = "",
    at: datetime | None = None,
    old_format: bool = False,
    timestamp_ms: int | None = None,
    reason: str = "invalid message (1 problem(s)): payload.amount: field required",
) -> str:
    """Write one dead letter as a service would; returns its ID (partition:offset)."""
    if source == "":
        source = f"{broker.topic}/0/{unique_offset()}"
    trailer: Headers = [(DEAD_LETTER_REASON, reason.encode())]
    if not old_format and dead_letter_class is not None:
        trailer.append((DEAD_LETTER_CLASS, dead_letter_class.encode()))
    if source is not None:
        trailer.append((DEAD_LETTER_SOURCE, source.encode()))
    trailer.append((DEAD_LETTER_CONSUMER, service.encode()))
    if not old_format:
        trailer.append((DEAD_LETTER_AT, (at or datetime.now(UTC)).isoformat().encode()))
    written = await broker.producer.send_and_wait(
        DEAD_LETTER.name, value, key=key, headers=[*headers, *trailer], timestamp_ms=timestamp_ms
    )
    return f"{written.partition}:{written.offset}"


async def cli(broker: Broker, *args: str) -> Result:
    """Run the real CLI; in a thread, because each command runs its own event loop."""
    return await asyncio.to_thread(CliRunner().invoke, app, [*args, "--bootstrap-servers", broker.servers])


async def listed(broker: Broker, *args: str) -> dict[str, dict[str, Any]]:
    result = await cli(broker, "dead-letters", "list", "--json", *args)
    assert result.exit_code == 0, result.output
    return {row["id"]: row for row in json.loads(result.stdout)}


async def record_at(broker: Broker, topic: str, partition: int, offset: int) -> Any:
    consumer = AIOKafkaConsumer(
        **client_options(ADMIN), bootstrap_servers=broker.servers, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        return await asyncio.wait_for(consumer.getone(tp), timeout=10)
    finally:
        await consumer.stop()


async def end_offsets(broker: Broker) -> dict[int, int]:
    consumer = AIOKafkaConsumer(**client_options(ADMIN), bootstrap_servers=broker.servers, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(broker.topic, p) for p in (0, 1)]
        return {tp.partition: offset for tp, offset in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


def envelope(kind: str, payload: dict[str, Any]) -> bytes:
    return json.dumps({"message_id": str(uuid.uuid4()), "type": kind, "version": 1, "payload": payload}).encode()


async def test_x2_list_shows_every_field_and_masks_secrets(broker: Broker, tag: str) -> None:
    secret_payload = {
        "account_id": f"acct-{tag}",
        "pin": SECRETS[0],
        "card": {"card_number": SECRETS[1], "holder": "Ann"},
        "challenges": [{"otp": SECRETS[2]}],
        "Password": SECRETS[3],
    }
    ids = {
        "secret": await dead_letter(
            broker,
            key=f"acct-{tag}".encode(),
            value=envelope("FundWallet", secret_payload),
            headers=[(MESSAGE_TYPE_HEADER, b"FundWallet")],
            service="account",
            dead_letter_class="bug",
            source=f"{broker.topic}/1/{unique_offset()}",
            reason="ValueError: handler kept failing",
        ),
        "binary_key": await dead_letter(
            broker,
            key=b"\xff\xfe" + tag.encode(),
            value=envelope("Checkout", {"order_id": f"order-{tag}"}),
            headers=[(MESSAGE_TYPE_HEADER, BROKEN_UTF8)],
            service="saga",
        ),
        "empty": await dead_letter(broker, value=b"", service="payment"),
        "big": await dead_letter(broker, value=b"\xff" * BIG, service="escrow"),
        "old": await dead_letter(
            broker,
            value=b"not json",
            service="notification",
            old_format=True,
            timestamp_ms=int((datetime.now(UTC) - timedelta(days=2)).timestamp() * 1000),
        ),
    }

    result = await cli(broker, "dead-letters", "list", "--json")
    assert result.exit_code == 0, result.output
    for secret in SECRETS:
        assert secret not in result.stdout
    rows = {row["id"]: row for row in json.loads(result.stdout)}

    secret = rows[ids["secret"]]
    assert secret["service"] == "account"
    assert secret["class"] == "bug"
    assert secret["type"] == "FundWallet"
    assert secret["source"]["topic"] == broker.topic
    assert secret["source"]["partition"] == 1
    assert secret["redrive_count"] == 0
    assert secret["reason"] == "ValueError: handler kept failing"
    assert secret["key"] == f"acct-{tag}"
    assert secret["at_from"] == "header"
    payload = secret["payload"]["payload"]
    assert payload["account_id"] == f"acct-{tag}"
    assert payload["pin"] == "***"
    assert payload["card"] == {"card_number": "***", "holder": "Ann"}
    assert payload["challenges"] == [{"otp": "***"}]
    assert payload["Password"] == "***"

    binary = rows[ids["binary_key"]]
    assert binary["type"] == "Checkout"  # the broken tg-type header falls back to the JSON "type"
    assert binary["key"] == f"<{2 + len(tag)} bytes, not UTF-8>"
    assert binary["service"] == "saga"

    empty = rows[ids["empty"]]
    assert (empty["type"], empty["payload"], empty["value_bytes"]) == ("?", "<0 bytes, empty>", 0)

    big = rows[ids["big"]]
    assert big["payload"] == "<2,097,152 bytes, not JSON>"
    assert big["value_bytes"] == BIG

    old = rows[ids["old"]]
    assert old["class"] == "?"
    assert old["at_from"] == "kafka-timestamp"
    assert datetime.fromisoformat(old["at"]) < datetime.now(UTC) - timedelta(days=1)

    table = await cli(broker, "dead-letters", "list")
    assert table.exit_code == 0, table.output
    for secret_text in SECRETS:
        assert secret_text not in table.stdout
    for letter_id in ids.values():
        assert letter_id in table.stdout
    assert "<2,097,152 bytes, not JSON>" in table.stdout


async def test_x2_list_filters_by_service_and_since(broker: Broker) -> None:
    now = datetime.now(UTC)
    saga_new = await dead_letter(broker, value=b"{}", service="saga")
    payment_new = await dead_letter(broker, value=b"{}", service="payment")
    saga_old = await dead_letter(broker, value=b"{}", service="saga", at=now - timedelta(hours=3))

    by_service = await listed(broker, "--service", "saga")
    assert {saga_new, saga_old} <= by_service.keys()
    assert payment_new not in by_service
    assert {row["service"] for row in by_service.values()} == {"saga"}

    recent = await listed(broker, "--since", "1h")
    assert {saga_new, payment_new} <= recent.keys()
    assert saga_old not in recent

    since_iso = await listed(broker, "--since", (now - timedelta(hours=4)).isoformat())
    assert {saga_new, payment_new, saga_old} <= since_iso.keys()

    both = await listed(broker, "--service", "saga", "--since", "30m")
    assert saga_new in both
    assert not {payment_new, saga_old} & both.keys()

    bad = await cli(broker, "dead-letters", "list", "--since", "last tuesday")
    assert bad.exit_code == 2
    assert "--since" in bad.output


async def redrive(broker: Broker, letter_id: str) -> dict[str, Any]:
    result = await cli(broker, "dead-letters", "redrive", letter_id, "--json")
    assert result.exit_code == 0, result.output
    (written,) = json.loads(result.stdout)
    assert written["error"] is None
    return dict(written)


async def test_x2_redrive_republishes_the_original_bytes_and_counts_each_redrive(broker: Broker, tag: str) -> None:
    key = b"\x00\xffkey-" + tag.encode()
    value = envelope("FundWallet", {"account_id": f"acct-{tag}", "pin": SECRETS[0]})
    original: Headers = [
        (MESSAGE_TYPE_HEADER, BROKEN_UTF8),
        ("tg-correlation-id", f"corr-{tag}".encode()),
        ("x-binary", b"\x00\x01\xfe\xff"),
        ("x-null", None),
        ("x-binary", b"a header may repeat"),
    ]
    first_id = await dead_letter(
        broker, key=key, value=value, headers=original, source=f"{broker.topic}/1/{unique_offset()}"
    )

    first = await redrive(broker, first_id)
    assert (first["id"], first["topic"], first["partition"], first["redrive_count"]) == (first_id, broker.topic, 1, 1)
    record = await record_at(broker, broker.topic, 1, first["offset"])
    assert record.key == key
    assert record.value == value
    assert list(record.headers) == [*original, (REDRIVE_COUNT, b"1")]

    # The re-driven record fails again: a service dead-letters it, headers and all.
    second_id = await dead_letter(
        broker, key=key, value=value, headers=list(record.headers), source=f"{broker.topic}/1/{first['offset']}"
    )
    assert (await listed(broker))[second_id]["redrive_count"] == 1

    result = await cli(broker, "dead-letters", "redrive", second_id)  # the table this time
    assert result.exit_code == 0, result.output
    assert second_id in result.stdout
    assert f"{broker.topic}/1/" in result.stdout
    offset = (await end_offsets(broker))[1] - 1
    again = await record_at(broker, broker.topic, 1, offset)
    assert (again.key, again.value) == (key, value)
    assert list(again.headers) == [*original, (REDRIVE_COUNT, b"2")]


async def test_x2_redrive_sends_an_empty_value_and_a_missing_key_as_they_were(broker: Broker) -> None:
    letter_id = await dead_letter(broker, value=b"", key=None, source=f"{broker.topic}/0/{unique_offset()}")
    written = await redrive(broker, letter_id)
    record = await record_at(broker, broker.topic, 0, written["offset"])
    assert (record.key, record.value, list(record.headers)) == (None, b"", [(REDRIVE_COUNT, b"1")])


async def refused(broker: Broker, *ids: str) -> Result:
    result = await cli(broker, "dead-letters", "redrive", *ids)
    assert result.exit_code == 1, result.output
    assert "nothing was re-driven" in result.stderr
    return result


async def test_x2_redrive_refuses_bad_ids_and_publishes_nothing(broker: Broker) -> None:
    good = await dead_letter(broker, value=b"{}", source=f"{broker.topic}/0/{unique_offset()}")
    sourceless = await dead_letter(broker, value=b"{}", source=None)
    garbled = await dead_letter(broker, value=b"{}", source="not a source")
    nowhere = await dead_letter(broker, value=b"{}", source=f"tradeguard.no-such-topic/0/{unique_offset()}")
    no_partition = await dead_letter(broker, value=b"{}", source=f"{broker.topic}/9/{unique_offset()}")
    before = await end_offsets(broker)

    unknown = "0:999999999"
    result = await refused(broker, good, unknown)  # one bad ID stops the good one too
    assert unknown in result.stderr
    assert good not in result.stderr
    cases: Sequence[tuple[str, str]] = [
        ("abc", "'abc' is not a dead-letter ID"),
        ("9:0", "9:0: no such dead letter"),
        (sourceless, f"{sourceless}: no {DEAD_LETTER_SOURCE} header"),
        (garbled, f"{garbled}: {DEAD_LETTER_SOURCE} header 'not a source'"),
        (nowhere, f"{nowhere}: source tradeguard.no-such-topic/0/"),
        (no_partition, f"{no_partition}: source {broker.topic}/9/"),
    ]
    for letter_id, message in cases:
        result = await refused(broker, letter_id)
        assert message in result.stderr, result.stderr
    assert await end_offsets(broker) == before

    await redrive(broker, good)
    after = await end_offsets(broker)
    assert after[0] == before[0] + 1
    assert after[1] == before[1]


async def test_x2_list_ends_promptly_on_an_empty_topic(broker: Broker, tag: str) -> None:
    topic = f"tradeguard.test.cli-empty.{tag}"
    admin = AIOKafkaAdminClient(**client_options(ADMIN), bootstrap_servers=broker.servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=DEAD_LETTER.partitions, replication_factor=1)])
        await topic_ready(broker, topic)
        started = time.monotonic()
        assert await read_dead_letters(broker.servers, topic=topic, stall_timeout=10) == []
        assert time.monotonic() - started < 5
        await admin.delete_topics([topic])
    finally:
        await admin.close()


async def test_x9_a_redriven_record_keeps_its_original_signature_and_still_verifies(
    broker: Broker, tag: str, keyring: Keyring
) -> None:
    signed = outgoing(
        FundWallet(account_id=f"acct-{tag}", amount=Money(amount_minor=100, currency="USD")),
        source="marketplace",
        correlation_id=tag,
        idempotency_key=tag,
    )
    letter_id = await dead_letter(
        broker,
        key=signed.key,
        value=signed.value,
        headers=list(signed.headers),
        service="account",
        dead_letter_class="bug",
        source=f"{broker.topic}/0/{unique_offset()}",
        reason="OperationalError: the database was away",
    )

    written = await redrive(broker, letter_id)
    record = await record_at(broker, broker.topic, 0, written["offset"])
    assert list(record.headers) == [*signed.headers, (REDRIVE_COUNT, b"1")]  # not signed again
    names = signing_headers(ACCOUNT_COMMANDS.name)
    assert [k for k, _ in record.headers if k in names] == list(names)
    signer = keyring.verifier("account").check(
        record.headers, message_type="FundWallet", topic=ACCOUNT_COMMANDS.name, key=record.key, value=record.value
    )
    assert signer == "marketplace"
