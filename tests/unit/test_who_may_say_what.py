"""X9 (issue 18): every (principal, topic, message type) triple the catalogue knows of, tried
through the real MACs: a record signed by a principal the catalogue names as a producer of that
type is taken by every service that reads the topic; signed by any other principal, it is refused
as ``not_allowed`` before a handler sees it. The broker's ACLs refuse most of these earlier
(tests/integration/test_broker_security.py); this is the layer that holds when they do not."""

from __future__ import annotations

import pytest

from contracts import MESSAGE_TYPES, CommandRejected, Message
from contracts.catalogue import CONSUMERS, PRODUCERS, REJECTIONS, topics_of
from contracts.envelope import envelope_for
from contracts.topics import MESSAGE_TYPE_HEADER
from shared.signing import PRINCIPALS, SignatureRefused, process_keyring
from tests.support.examples import example

SERVICES = tuple(sorted(REJECTIONS))
TRIPLES = [
    (message, topic.name)
    for message in MESSAGE_TYPES
    for topic in topics_of(message)
    if any(reader in SERVICES for reader in CONSUMERS[topic.name])
]


def producers(message_type: str, topic: str) -> set[str]:
    """The catalogue's producers, read from its tables rather than through the verifier."""
    if message_type == CommandRejected.message_type:
        return {service for service, own in REJECTIONS.items() if own.name == topic}
    return set(PRODUCERS[message_type])


def verdict(reader: str, headers: list[tuple[str, bytes]], *, kind: str, topic: str, key: bytes, value: bytes) -> str:
    """``taken``, or the refusal's code."""
    try:
        process_keyring().verifier(reader).check(headers, message_type=kind, topic=topic, key=key, value=value)
    except SignatureRefused as refused:
        return refused.code
    return "taken"


@pytest.mark.parametrize(("message", "topic"), TRIPLES, ids=[f"{m.message_type}@{t}" for m, t in TRIPLES])
def test_x9_only_the_catalogues_producers_of_a_type_are_believed_by_its_readers(
    message: type[Message], topic: str
) -> None:
    ring = process_keyring()
    payload = example(message)
    value = envelope_for(payload, correlation_id="c", idempotency_key="k", source="test").model_dump_json().encode()
    key, kind = payload.partition_key.encode(), message.message_type
    readers = [reader for reader in CONSUMERS[topic] if reader in SERVICES]
    taken: set[str] = set()
    for principal in PRINCIPALS:
        headers = [(MESSAGE_TYPE_HEADER, kind.encode()), *ring.sign(principal, topic, key, kind, value)]
        verdicts = {verdict(reader, headers, kind=kind, topic=topic, key=key, value=value) for reader in readers}
        assert verdicts in ({"taken"}, {"not_allowed"}), (principal, verdicts)  # every reader agrees, for that reason
        if verdicts == {"taken"}:
            taken.add(principal)
    assert taken == producers(kind, topic)


def test_x9_a_services_events_topic_carries_only_that_services_word() -> None:
    for service, events in REJECTIONS.items():
        on_it = [m for m in MESSAGE_TYPES if events in topics_of(m)]
        assert on_it, events.name
        assert {p for m in on_it for p in producers(m.message_type, events.name)} == {service}, events.name
