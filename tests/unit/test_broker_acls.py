"""X9 (issue 18): the ACLs the catalogue gives each principal, stated outright, so a catalogue
change that widens a principal's rights fails here before it reaches a broker."""

from __future__ import annotations

from contracts.catalogue import OPERATOR, readers_of, writers_of
from contracts.topics import ALL_TOPICS, DEAD_LETTER
from shared.broker_security import (
    ADMIN,
    BROKER_PRINCIPALS,
    SERVICES,
    Credentials,
    Operation,
    PatternType,
    ResourceType,
    acl_bindings,
)


def written_by(principal: str) -> set[str]:
    return {t.name for t in ALL_TOPICS if principal in writers_of(t)}


def read_by(principal: str) -> set[str]:
    return {t.name for t in ALL_TOPICS if principal in readers_of(t)}


def test_x9_the_principals_are_the_services_the_marketplace_and_the_operators() -> None:
    assert BROKER_PRINCIPALS == ("account", "escrow", "marketplace", "notification", "operator", "payment", "saga")
    assert ADMIN not in BROKER_PRINCIPALS  # the super user is the set-up's alone


def test_x9_the_marketplace_writes_commands_only_and_never_an_event() -> None:
    assert written_by("marketplace") == {
        "tradeguard.order.commands",
        "tradeguard.account.commands",
        "tradeguard.payment.commands",  # RequestQuote (P3)
        "tradeguard.notification.commands",
    }
    assert read_by("marketplace") == {
        "tradeguard.order.events",
        "tradeguard.account.events",
        "tradeguard.notification.events",
    }


def test_x9_a_service_writes_its_own_events_and_dead_letters_never_another_services_events() -> None:
    for service in SERVICES:
        events = {name for name in written_by(service) if name.endswith(".events")}
        assert events == {f"tradeguard.{'order' if service == 'saga' else service}.events"}, service
        assert DEAD_LETTER.name in written_by(service)


def test_x9_the_saga_commands_the_services_and_the_services_answer_it() -> None:
    assert written_by("saga") >= {
        "tradeguard.account.commands",
        "tradeguard.payment.commands",
        "tradeguard.escrow.commands",
    }
    assert "tradeguard.order.commands" not in written_by("payment")
    assert read_by("escrow") == {"tradeguard.escrow.commands"}


def test_x9_the_operators_read_everything_and_may_re_drive_anywhere() -> None:
    assert read_by(OPERATOR) == written_by(OPERATOR) == {t.name for t in ALL_TOPICS}


def test_x9_each_principal_joins_only_groups_named_after_it() -> None:
    groups = [b for b in acl_bindings() if b.resource_type is ResourceType.GROUP]
    assert {(b.principal, b.resource_name, b.operation) for b in groups} == {
        (p, p, Operation.READ) for p in BROKER_PRINCIPALS
    }


def test_x9_a_password_is_never_shown() -> None:
    secret = Credentials("saga", "s3cret-value")
    assert "s3cret-value" not in repr(secret)
    assert "s3cret-value" not in str(secret)


def test_x9_the_operators_rights_cover_every_tradeguard_topic_by_prefix() -> None:
    operator = [b for b in acl_bindings() if b.principal == OPERATOR]
    assert {(b.resource_name, b.pattern, b.operation) for b in operator} == {
        ("tradeguard.", PatternType.PREFIXED, op) for op in (Operation.READ, Operation.WRITE, Operation.DESCRIBE)
    } | {("operator", PatternType.PREFIXED, Operation.READ)}
