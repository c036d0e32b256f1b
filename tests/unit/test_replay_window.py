"""X9 (issue 18): a signed command replayed after the window is refused. The age is the broker's
arrival stamp (command topics are LogAppendTime) minus the signed ``occurred_at``, so a consumer
catching up late, or a clock moved by a scenario, makes nothing stale."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from contracts import ConfirmReceipt, CreditWallet, FundWallet, Money
from services.account.app import DEFINITION as ACCOUNT
from services.saga.app import DEFINITION as SAGA
from shared.consumer import LOG_APPEND_TIME, REPLAY_WINDOW_MS, decode_record
from shared.signing import process_keyring
from tests.support.records import Record, record_of

AS_ACCOUNT = process_keyring().verifier("account")
AS_SAGA = process_keyring().verifier("saga")
SIGNED_AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
WINDOW = timedelta(milliseconds=REPLAY_WINDOW_MS)


def arriving(record: Record, after: timedelta, *, stamped_by_broker: bool = True) -> Record:
    arrival = int((SIGNED_AT + after).timestamp() * 1000)
    return dataclasses.replace(record, timestamp=arrival, timestamp_type=LOG_APPEND_TIME if stamped_by_broker else 0)


def fund_wallet() -> Record:
    command = FundWallet(account_id="alice", amount=Money(amount_minor=100, currency="USD"))
    return record_of(command, occurred_at=SIGNED_AT, signer="marketplace")


@pytest.mark.parametrize("after", [timedelta(0), timedelta(seconds=1), WINDOW, -WINDOW])
def test_x9_a_marketplace_command_within_the_window_is_handled(after: timedelta) -> None:
    delivery = decode_record(arriving(fund_wallet(), after), ACCOUNT.handlers, AS_ACCOUNT)
    assert delivery is not None
    assert delivery.poison is None


@pytest.mark.parametrize(
    "after", [WINDOW + timedelta(milliseconds=1), timedelta(days=3), -WINDOW - timedelta(seconds=1)]
)
def test_x9_a_marketplace_command_reaching_the_broker_outside_the_window_is_refused_as_stale(after: timedelta) -> None:
    delivery = decode_record(arriving(fund_wallet(), after), ACCOUNT.handlers, AS_ACCOUNT)
    assert delivery is not None
    assert delivery.poison is not None
    assert delivery.poison.startswith("stale: signed at 2026-12-01T12:00:00+00:00")
    assert "window is 300 s" in delivery.poison


def test_x9_a_buyers_command_to_the_saga_is_held_to_the_window_too() -> None:
    confirm = record_of(ConfirmReceipt(order_id="o-1", buyer_id="b-1"), occurred_at=SIGNED_AT, signer="marketplace")
    late = decode_record(arriving(confirm, timedelta(minutes=6)), SAGA.handlers, AS_SAGA)
    assert late is not None
    assert late.poison is not None
    assert late.poison.startswith("stale")


def test_x9_a_services_own_command_is_not_held_to_the_window() -> None:
    # The saga's outbox may publish long after the command was committed (a crash in between).
    credit = CreditWallet(account_id="seller-1", order_id="o-1", amount=Money(amount_minor=100, currency="USD"))
    delivery = decode_record(
        arriving(record_of(credit, occurred_at=SIGNED_AT), timedelta(hours=2)), ACCOUNT.handlers, AS_ACCOUNT
    )
    assert delivery is not None
    assert delivery.poison is None


def test_x9_a_record_the_broker_did_not_stamp_is_not_judged_by_its_own_timestamp() -> None:
    # CreateTime is the producer's own claim: it says nothing about when the record arrived.
    delivery = decode_record(
        arriving(fund_wallet(), timedelta(days=3), stamped_by_broker=False), ACCOUNT.handlers, AS_ACCOUNT
    )
    assert delivery is not None
    assert delivery.poison is None
