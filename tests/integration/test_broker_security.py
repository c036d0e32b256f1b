"""X9 (issue 18): the broker authenticates every client and authorises only what the catalogue
allows, tried against a broker of its own (scripts/kafka.sh, fresh data folder), so the records
these tests write never reach another test's services."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import GroupAuthorizationFailedError, KafkaConnectionError, TopicAuthorizationFailedError

from contracts.catalogue import readers_of, writers_of
from contracts.topics import ALL_TOPICS, ORDER_COMMANDS, PAYMENT_EVENTS, Topic
from shared.broker_security import (
    ADMIN,
    BROKER_PRINCIPALS,
    SERVICES,
    acl_bindings,
    client_options,
    provision,
    retire_password,
    rotate_password,
)
from tests.support.kafka import KAFKA_SH, REPO_ROOT

pytestmark = [pytest.mark.kafka]

PORT = 19892
DATA_DIR = REPO_ROOT / ".cache" / "kafka" / "security-test"


@dataclass(frozen=True)
class SecuredBroker:
    servers: str
    credentials: Path

    def options(self, principal: str) -> dict[str, Any]:
        return client_options(principal, self.credentials)


def _kafka_sh(command: str) -> None:
    env = {**os.environ, "KAFKA_DATA_DIR": str(DATA_DIR), "KAFKA_PORT": str(PORT), "KAFKA_CONTROLLER_PORT": "19893"}
    subprocess.run(["bash", str(KAFKA_SH), command], env=env, check=command != "stop", capture_output=True)


@pytest.fixture(scope="module")
def secured() -> Iterator[SecuredBroker]:
    _kafka_sh("reset")
    _kafka_sh("start")
    try:
        yield SecuredBroker(f"127.0.0.1:{PORT}", DATA_DIR / "credentials")
    finally:
        _kafka_sh("stop")
        shutil.rmtree(DATA_DIR, ignore_errors=True)


async def _send(broker: SecuredBroker, options: dict[str, Any], topic: str) -> str:
    """``sent``, or the name of the error that refused it."""
    producer = AIOKafkaProducer(bootstrap_servers=broker.servers, request_timeout_ms=5000, **options)
    try:
        await asyncio.wait_for(producer.start(), 15)
        await asyncio.wait_for(producer.send_and_wait(topic, b"probe", key=b"probe"), 15)
    except (KafkaConnectionError, TopicAuthorizationFailedError) as refused:
        return type(refused).__name__
    finally:
        await producer.stop()
    return "sent"


async def test_x9_a_client_without_credentials_or_with_a_wrong_password_cannot_connect(
    secured: SecuredBroker,
) -> None:
    wrong = {**secured.options("marketplace"), "sasl_plain_password": "not-the-password"}
    assert await _send(secured, {}, ORDER_COMMANDS.name) == "KafkaConnectionError"
    assert await _send(secured, wrong, ORDER_COMMANDS.name) == "KafkaConnectionError"
    assert await _send(secured, secured.options("marketplace"), ORDER_COMMANDS.name) == "sent"


async def test_x9_every_principal_writes_exactly_the_topics_the_catalogue_gives_it(secured: SecuredBroker) -> None:
    outcomes: dict[tuple[str, str], str] = {}
    for principal in BROKER_PRINCIPALS:
        options = secured.options(principal)
        for topic in ALL_TOPICS:
            outcomes[(principal, topic.name)] = await _send(secured, options, topic.name)
    expected = {
        (principal, topic.name): "sent" if principal in writers_of(topic) else "TopicAuthorizationFailedError"
        for principal in BROKER_PRINCIPALS
        for topic in ALL_TOPICS
    }
    assert outcomes == expected
    # The issue's own case: no service may write another service's events topic.
    assert [s for s in SERVICES if outcomes[(s, PAYMENT_EVENTS.name)] == "sent"] == ["payment"]


async def _visible(broker: SecuredBroker, principal: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.servers, **broker.options(principal))
    await admin.start()
    try:
        return {name for name in await admin.list_topics() if name.startswith("tradeguard.")}
    finally:
        await admin.close()


async def _first_record(broker: SecuredBroker, principal: str, topic: Topic) -> bytes | None:
    """The first record of partition 0, or None when the broker serves this principal none."""
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.servers, enable_auto_commit=False, **broker.options(principal))
    await consumer.start()
    try:
        partition = TopicPartition(topic.name, 0)
        consumer.assign([partition])
        consumer.seek(partition, 0)
        batches = await consumer.getmany(partition, timeout_ms=1500)
        records = batches.get(partition, [])
        return records[0].value if records else None
    finally:
        await consumer.stop()


async def test_x9_every_principal_reads_exactly_the_topics_the_catalogue_gives_it(secured: SecuredBroker) -> None:
    for principal in BROKER_PRINCIPALS:
        readable = {t.name for t in ALL_TOPICS if principal in readers_of(t) or principal in writers_of(t)}
        assert await _visible(secured, principal) == readable, principal
    # Reading, not only seeing: a record on the payment events topic reaches the saga, not the account service.
    producer = AIOKafkaProducer(bootstrap_servers=secured.servers, **secured.options("payment"))
    await producer.start()
    try:
        await producer.send_and_wait(PAYMENT_EVENTS.name, b"for the saga", key=b"k", partition=0)
    finally:
        await producer.stop()
    assert await _first_record(secured, "saga", PAYMENT_EVENTS) is not None
    assert await _first_record(secured, "account", PAYMENT_EVENTS) is None


async def test_x9_a_principal_joins_only_its_own_consumer_group(secured: SecuredBroker) -> None:
    async def join(principal: str, group: str) -> str:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=secured.servers, group_id=group, session_timeout_ms=6000, **secured.options(principal)
        )
        await consumer.start()
        try:
            consumer.subscribe(["tradeguard.payment.commands"])
            await consumer.getmany(timeout_ms=2000)
        except GroupAuthorizationFailedError:
            return "refused"
        finally:
            await consumer.stop()
        return "joined"

    assert await join("payment", "payment") == "joined"
    assert await join("payment", "saga") == "refused"


async def test_x9_only_the_set_up_creates_topics(secured: SecuredBroker) -> None:
    async def create(principal: str) -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=secured.servers, **secured.options(principal))
        await admin.start()
        try:
            response = await admin.create_topics([NewTopic(f"tradeguard.new-by-{principal}", 1, 1)])
            return int(response.topic_errors[0][1])
        finally:
            await admin.close()

    assert await create("saga") == TopicAuthorizationFailedError.errno
    assert await create("operator") == TopicAuthorizationFailedError.errno
    assert await create(ADMIN) == 0


async def test_x9_the_set_up_is_idempotent_and_keeps_credentials_private(secured: SecuredBroker) -> None:
    before = {p.name: p.read_text() for p in secured.credentials.iterdir()}
    assert await provision(secured.servers, secured.credentials) == []  # every topic is there already
    after = {p.name: p.read_text() for p in secured.credentials.iterdir()}
    assert before == after
    assert sorted(before) == sorted(f"{name}.json" for name in (*BROKER_PRINCIPALS, ADMIN))
    assert stat.S_IMODE(secured.credentials.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in secured.credentials.iterdir()} == {0o600}
    assert all(json.loads(text)["password"] not in repr(acl_bindings()) for text in after.values())
    # Still the same passwords after the second set-up: clients connect as before.
    assert await _send(secured, secured.options("saga"), "tradeguard.order.events") == "sent"


async def test_x9_a_password_rotation_keeps_both_passwords_valid_until_the_old_one_is_retired(
    secured: SecuredBroker,
) -> None:
    old = secured.options("marketplace")
    user = await rotate_password(secured.servers, secured.credentials, "marketplace")
    new = secured.options("marketplace")
    assert (old["sasl_plain_username"], user, new["sasl_plain_username"]) == ("marketplace", "marketplace-2", user)
    assert old["sasl_plain_password"] != new["sasl_plain_password"]
    # Both valid, with the same rights: processes not restarted yet keep connecting.
    for options in (old, new):
        assert await _send(secured, options, ORDER_COMMANDS.name) == "sent"
        assert await _send(secured, options, PAYMENT_EVENTS.name) == "TopicAuthorizationFailedError"

    assert await retire_password(secured.servers, secured.credentials, "marketplace") == "marketplace"
    assert await _send(secured, old, ORDER_COMMANDS.name) == "KafkaConnectionError"
    assert await _send(secured, new, ORDER_COMMANDS.name) == "sent"
    # The next rotation goes back to the first user, with a password never used before.
    assert await rotate_password(secured.servers, secured.credentials, "marketplace") == "marketplace"
    assert secured.options("marketplace")["sasl_plain_password"] != old["sasl_plain_password"]
    assert await _send(secured, secured.options("marketplace"), ORDER_COMMANDS.name) == "sent"
