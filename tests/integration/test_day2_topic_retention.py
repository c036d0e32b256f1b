"""Issue 19 (day-2 operations): the broker keeps each topic as long as the catalogue says
(contracts.topics.Retention), on a fresh broker and on one whose topics were made before the
setting existed: provisioning converges them, and running it again changes nothing."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from contracts.topics import DEAD_LETTER, ORDER_COMMANDS, PAYMENT_EVENTS, Key, Topic
from shared.broker_security import ADMIN, CREDENTIALS_DIR_VARIABLE, client_options, configure_topics, provision

pytestmark = [pytest.mark.kafka]

DAY_MS = 24 * 60 * 60 * 1000
RETENTION = ("retention.ms", "segment.ms", "segment.bytes", "cleanup.policy")


@pytest.fixture
async def admin(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaAdminClient]:
    client = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap, **client_options(ADMIN))
    await client.start()
    try:
        yield client
    finally:
        await client.close()


async def settings_of(admin: AIOKafkaAdminClient, name: str) -> dict[str, str]:
    responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    return {
        entry[0]: entry[1]
        for response in responses
        for *_, entries in response.resources
        for entry in entries
        if entry[0] in RETENTION
    }


async def test_day2_provisioning_gives_every_topic_its_retention(
    kafka_bootstrap: str, admin: AIOKafkaAdminClient
) -> None:
    await provision(kafka_bootstrap, Path(os.environ[CREDENTIALS_DIR_VARIABLE]))  # what kafka.sh start runs
    for topic, days in ((ORDER_COMMANDS, 7), (PAYMENT_EVENTS, 7), (DEAD_LETTER, 30)):
        assert await settings_of(admin, topic.name) == {
            "retention.ms": str(days * DAY_MS),
            "segment.ms": str(DAY_MS),
            "segment.bytes": str(128 * 1024 * 1024),
            "cleanup.policy": "delete",
        }, topic.name


async def settings_once(
    admin: AIOKafkaAdminClient, name: str, ready: Callable[[dict[str, str]], bool]
) -> dict[str, str]:
    """The topic's settings once ``ready`` says so, or as they read after 10 s. The broker applies a
    new topic and an accepted change through its metadata log, so a describe straight after may
    still read nothing, or the old values (each seen once in a full `make test`), and nothing
    announces when it has caught up."""
    for _ in range(100):
        found = await settings_of(admin, name)
        if ready(found):
            break
        await asyncio.sleep(0.1)
    return found


async def test_day2_a_topic_made_before_retention_converges_and_stays(admin: AIOKafkaAdminClient) -> None:
    topic = Topic(f"test.retention.{uuid.uuid4().hex[:8]}", 1, Key.ORDER_ID, "made by an older set-up")
    # An old data folder's topic: only the broker's defaults (a week, 1 GiB segments rolled weekly).
    await admin.create_topics([NewTopic(topic.name, num_partitions=1, replication_factor=1)])
    before = await settings_once(admin, topic.name, lambda found: set(found) == set(RETENTION))
    assert before["segment.bytes"] == str(1024 * 1024 * 1024)

    expected = {
        "retention.ms": str(7 * DAY_MS),
        "segment.ms": str(DAY_MS),
        "segment.bytes": str(128 * 1024 * 1024),
        "cleanup.policy": "delete",
    }
    await configure_topics(admin, [topic])
    converged = await settings_once(admin, topic.name, lambda found: found == expected)
    await configure_topics(admin, [topic])  # every start runs it again

    assert converged == expected
    assert await settings_of(admin, topic.name) == expected
    await admin.delete_topics([topic.name])
