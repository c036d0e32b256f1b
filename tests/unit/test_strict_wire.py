"""A strict wire in one decode path (issue 22): X1 contracts refuse coerced values, X2 every record gets a verdict.

Each rule has its own test. Records are built as JSON text by hand (``_wire``) so that what
is tested is exactly what a producer could send.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts import (
    MESSAGE_TYPES,
    Balance,
    Checkout,
    CommandRejected,
    DeclineReason,
    Envelope,
    InvalidMessage,
    Message,
    Money,
    OrderStatus,
    OrderStatusChanged,
    PaymentAuthorizationDeclined,
    UnknownMessageType,
    WalletFunded,
    decode_message,
    envelope_for,
    max_amount_minor,
    max_balance_minor,
    minor_unit_exponent,
    parse_envelope,
    payload_model,
)
from contracts.catalogue import message_schema
from contracts.decoding import MAX_REASON_CHARS
from contracts.money import CURRENCIES, NOT_MONEY
from scripts.onboarding import MARKETPLACE_ID
from tests.support.examples import example

JsonDict = dict[str, Any]

MESSAGE_ID = "6f1c2a4e-8d3b-4c5a-9e7f-0a1b2c3d4e5f"
SECRET = "sk_live_51HxQzTopSecretValue9a8b7c6d5e4f"


def _checkout_json(**payload_changes: Any) -> JsonDict:
    payload: JsonDict = {
        "order_id": "order-7f3a",
        "buyer_id": "buyer-1",
        "seller_id": "seller-9",
        "amount": {"amount_minor": 12999, "currency": "USD"},
        "item": "teapot",
        "marketplace_id": "marketplace-1",
        "source_id": None,
        "security_method": None,
        "security_proof": None,
    }
    return {
        "message_id": MESSAGE_ID,
        "type": "Checkout",
        "version": 1,
        "occurred_at": "2026-03-01T12:00:00Z",
        "correlation_id": "order-7f3a",
        "causation_id": None,
        "idempotency_key": "checkout:order-7f3a",
        "source": "marketplace",
        "payload": payload | payload_changes,
    }


def _with_amount(amount_minor: Any, currency: Any = "USD") -> JsonDict:
    return _checkout_json(amount={"amount_minor": amount_minor, "currency": currency})


def _wire(document: Any) -> bytes:
    return json.dumps(document).encode()


def _refused(value: bytes) -> InvalidMessage:
    with pytest.raises(InvalidMessage) as caught:
        decode_message(value)
    assert len(caught.value.reason) <= MAX_REASON_CHARS
    return caught.value


def test_x1_a_valid_checkout_decodes_to_its_typed_envelope() -> None:
    envelope = decode_message(_wire(_checkout_json()))
    assert type(envelope) is Envelope[Checkout]
    assert isinstance(envelope.payload, Checkout)
    assert envelope.payload.amount == Money(amount_minor=12999, currency="USD")
    assert envelope.message_id == uuid.UUID(MESSAGE_ID)
    assert envelope.occurred_at == datetime(2026, 3, 1, 12, tzinfo=UTC)


# --- X1: no coercion -------------------------------------------------------------------------


@pytest.mark.parametrize("amount", ["100", "12999", "1e2", " 5"])
def test_x1_amount_sent_as_string_is_invalid(amount: str) -> None:
    invalid = _refused(_wire(_with_amount(amount)))
    assert "payload.amount.amount_minor: Input should be a valid integer" in invalid.reason


@pytest.mark.parametrize("raw", [b"100.0", b"1.5", b"1e2", b"12999.00000001"])
def test_x1_amount_sent_as_float_is_invalid(raw: bytes) -> None:
    value = _wire(_with_amount(0)).replace(b'"amount_minor": 0', b'"amount_minor": ' + raw)
    assert raw in value
    invalid = _refused(value)
    assert "payload.amount.amount_minor" in invalid.reason


@pytest.mark.parametrize("raw", [b"NaN", b"Infinity", b"-Infinity"])
def test_x1_amount_sent_as_nan_or_infinity_is_invalid(raw: bytes) -> None:
    value = _wire(_with_amount(0)).replace(b'"amount_minor": 0', b'"amount_minor": ' + raw)
    assert "payload.amount.amount_minor: Input should be a valid integer" in _refused(value).reason


@pytest.mark.parametrize("flag", [True, False])
def test_x1_amount_sent_as_bool_is_invalid(flag: bool) -> None:
    invalid = _refused(_wire(_with_amount(flag)))
    assert "payload.amount.amount_minor: Input should be a valid integer" in invalid.reason


@pytest.mark.parametrize("field", ["order_id", "buyer_id", "item"])
def test_x1_number_for_a_string_is_invalid(field: str) -> None:
    invalid = _refused(_wire(_checkout_json(**{field: 12345})))
    assert f"payload.{field}: Input should be a valid string" in invalid.reason


def test_x1_version_sent_as_string_or_float_is_invalid() -> None:
    for version in ("1", 1.0, True):
        document = _checkout_json() | {"version": version}
        invalid = _refused(_wire(document))
        assert "version" in invalid.reason


def test_x1_python_construction_is_strict_too() -> None:
    with pytest.raises(ValidationError):
        Money(amount_minor="100", currency="USD")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Money(amount_minor=100.0, currency="USD")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Money(amount_minor=True, currency="USD")
    with pytest.raises(ValidationError):
        Checkout(
            marketplace_id=MARKETPLACE_ID,
            order_id=7,
            buyer_id="b",
            seller_id="s",
            amount=Money(amount_minor=1, currency="USD"),
        )


def test_x1_python_construction_with_proper_types_keeps_working() -> None:
    money = Money(amount_minor=500, currency="EUR")
    changed = OrderStatusChanged(
        order_id="o", buyer_id="b", seller_id="s", amount=money, status=OrderStatus.PAID, reason=None
    )
    rejected = CommandRejected(
        subject_id="o", rejected_message_id=uuid.uuid4(), rejected_type="Checkout", code="c", reason="r"
    )
    declined = PaymentAuthorizationDeclined(
        account_id="a", order_id="o", amount=money, reason=DeclineReason.INSUFFICIENT_FUNDS, detail="d"
    )
    for message in (changed, rejected, declined):
        envelope = envelope_for(
            message, correlation_id="o", idempotency_key="k", source="test", causation_id=uuid.uuid4()
        )
        assert decode_message(envelope.model_dump_json().encode()) == envelope
    aware = Envelope[Checkout](
        message_id=uuid.uuid4(),
        type="Checkout",
        version=1,
        occurred_at=datetime.now(timezone(timedelta(hours=8))),
        correlation_id="c",
        idempotency_key="k",
        source="s",
        payload=Checkout(marketplace_id=MARKETPLACE_ID, order_id="o", buyer_id="b", seller_id="s", amount=money),
    )
    assert aware.occurred_at.utcoffset() == timedelta(hours=8)


def test_x1_strict_json_accepts_uuid_strings_iso_datetimes_and_enum_values() -> None:
    causation = str(uuid.uuid4())
    document = _checkout_json() | {"occurred_at": "2026-03-01T20:00:00.123456+08:00", "causation_id": causation}
    envelope = decode_message(_wire(document))
    assert envelope.causation_id == uuid.UUID(causation)
    assert envelope.occurred_at == datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    changed = envelope_for(
        OrderStatusChanged(
            order_id="o",
            buyer_id="b",
            seller_id="s",
            amount=Money(amount_minor=1, currency="JPY"),
            status=OrderStatus.PAID,
        ),
        correlation_id="o",
        idempotency_key="k",
        source="saga",
    )
    wire = json.loads(changed.model_dump_json())
    assert wire["payload"]["status"] == "paid"
    assert decode_message(_wire(wire)).payload.status is OrderStatus.PAID


def test_x1_a_payload_dict_read_from_json_validates_like_the_json() -> None:
    """The older path (parse_envelope, then payload_model(...).model_validate(dict)) stays strict and works."""
    rejected = CommandRejected(
        subject_id="o", rejected_message_id=uuid.uuid4(), rejected_type="Checkout", code="c", reason="r"
    )
    wire = envelope_for(rejected, correlation_id="o", idempotency_key="k", source="saga").model_dump_json()
    raw = parse_envelope(wire)
    assert payload_model(raw.type, raw.version).model_validate(raw.payload) == rejected
    bad = copy.deepcopy(raw.payload) | {"rejected_message_id": 12}
    with pytest.raises(ValidationError):
        CommandRejected.model_validate(bad)
    with pytest.raises(ValidationError):
        OrderStatusChanged.model_validate(
            {"order_id": "o", "buyer_id": "b", "seller_id": "s", "status": "paid"}
            | {"amount": {"amount_minor": "5", "currency": "USD"}}
        )
    assert (
        OrderStatusChanged.model_validate(
            {"order_id": "o", "buyer_id": "b", "seller_id": "s", "status": "paid"}
            | {"amount": {"amount_minor": 5, "currency": "USD"}}
        ).status
        is OrderStatus.PAID
    )


def test_x1_parse_envelope_is_strict() -> None:
    with pytest.raises(ValidationError):
        parse_envelope(_wire(_checkout_json() | {"version": "1"}))
    with pytest.raises(ValidationError):
        parse_envelope(_wire(_checkout_json() | {"occurred_at": "2026-03-01T12:00:00"}))
    assert parse_envelope(_wire(_checkout_json())).payload["amount"]["amount_minor"] == 12999


# --- X1: currencies --------------------------------------------------------------------------


@pytest.mark.parametrize("currency", ["ABC", "QQQ", "US", "USDD", "", "U$D", "€"])
def test_x1_unknown_currency_is_invalid(currency: str) -> None:
    invalid = _refused(_wire(_with_amount(100, currency)))
    assert "payload.amount.currency: not an accepted ISO 4217 currency code" in invalid.reason
    with pytest.raises(ValidationError) as caught:
        Money(amount_minor=1, currency=currency)
    if len(currency) == 3 and currency.isalpha() and currency.isascii():
        assert repr(currency) in str(caught.value)  # the message for Python callers names the code


@pytest.mark.parametrize("currency", ["usd", "Usd", "eUR", "jpy"])
def test_x1_lowercase_currency_is_invalid(currency: str) -> None:
    invalid = _refused(_wire(_with_amount(100, currency)))
    assert "payload.amount.currency: currency codes are upper case" in invalid.reason
    with pytest.raises(ValidationError, match=f"currency '{currency}' must be upper case: '{currency.upper()}'"):
        Money(amount_minor=1, currency=currency)


def test_x1_currency_sent_as_number_is_invalid() -> None:
    invalid = _refused(_wire(_with_amount(100, 840)))
    assert "payload.amount.currency: Input should be a valid string" in invalid.reason


@pytest.mark.parametrize("currency", ["XAU", "XAG", "XPD", "XPT", "XTS", "XXX", "XDR", "XSU", "XUA", "XBA", "XAD"])
def test_x1_x_codes_that_are_not_money_are_refused(currency: str) -> None:
    assert currency in NOT_MONEY
    assert currency not in CURRENCIES
    with pytest.raises(ValidationError, match=f"currency '{currency}' is an ISO 4217 code without a minor unit"):
        Money(amount_minor=1, currency=currency)
    invalid = _refused(_wire(_with_amount(1, currency)))
    assert "payload.amount.currency: an ISO 4217 code without a minor unit (not money) is refused" in invalid.reason
    with pytest.raises(ValueError, match="without a minor unit"):
        minor_unit_exponent(currency)


@pytest.mark.parametrize(("currency", "exponent"), [("XAF", 0), ("XOF", 0), ("XPF", 0), ("XCD", 2), ("XCG", 2)])
def test_x1_x_codes_that_are_legal_tender_are_accepted(currency: str, exponent: int) -> None:
    assert minor_unit_exponent(currency) == exponent
    assert decode_message(_wire(_with_amount(1, currency))).payload.amount.currency == currency


@pytest.mark.parametrize(
    ("currency", "exponent"),
    [("USD", 2), ("EUR", 2), ("CNY", 2), ("JPY", 0), ("KRW", 0), ("BHD", 3), ("KWD", 3), ("TND", 3), ("CLF", 4)],
)
def test_x1_minor_unit_exponent_comes_from_babel(currency: str, exponent: int) -> None:
    from babel.numbers import get_currency_precision

    assert minor_unit_exponent(currency) == exponent == get_currency_precision(currency)


def test_x1_every_accepted_currency_is_iso_4217_with_an_exponent_we_can_bound() -> None:
    import pycountry

    iso = {c.alpha_3 for c in pycountry.currencies}
    assert set(CURRENCIES) | set(NOT_MONEY) == iso
    assert {"USD", "EUR", "CNY", "JPY", "GBP"} <= set(CURRENCIES)
    assert {minor_unit_exponent(c) for c in CURRENCIES} <= {0, 2, 3, 4}
    with pytest.raises(ValueError, match="not an ISO 4217 code"):
        minor_unit_exponent("ABC")


# --- X1: bounds ------------------------------------------------------------------------------


@pytest.mark.parametrize(("currency", "bound"), [("USD", 10**13), ("JPY", 10**11), ("KWD", 10**14), ("CLF", 10**15)])
def test_x1_amount_over_the_per_currency_bound_is_invalid(currency: str, bound: int) -> None:
    assert max_amount_minor(currency) == bound == 10 ** (11 + minor_unit_exponent(currency))
    at_bound = decode_message(_wire(_with_amount(bound, currency)))
    assert at_bound.payload.amount.amount_minor == bound
    assert Money(amount_minor=bound, currency=currency).amount_minor == bound

    invalid = _refused(_wire(_with_amount(bound + 1, currency)))
    assert f"payload.amount: amount_minor must be at most {bound} for {currency}" in invalid.reason
    with pytest.raises(ValidationError, match=f"at most {bound} for {currency}"):
        Money(amount_minor=bound + 1, currency=currency)


def test_x1_huge_integers_are_invalid_not_an_error() -> None:
    for huge in (2**63, 2**64 + 1, 10**40):
        invalid = _refused(_wire(_with_amount(huge)))
        assert "payload.amount" in invalid.reason


def test_x1_balances_have_their_own_higher_bound() -> None:
    most = max_balance_minor("USD")
    assert most == 10**16
    funded = WalletFunded(
        account_id="a",
        amount=Money(amount_minor=max_amount_minor("USD"), currency="USD"),
        balance=Balance(amount_minor=most, currency="USD"),
    )
    wire = envelope_for(funded, correlation_id="a", idempotency_key="k", source="account").model_dump_json()
    assert decode_message(wire.encode()).payload.balance.amount_minor == most
    with pytest.raises(ValidationError, match=f"at most {most} for USD"):
        Balance(amount_minor=most + 1, currency="USD")
    with pytest.raises(ValidationError):
        Money(amount_minor=most, currency="USD")  # a balance-sized amount is not an amount


def test_x1_no_balance_plus_amount_overflows_a_64_bit_column() -> None:
    for currency in CURRENCIES:
        assert max_balance_minor(currency) + max_amount_minor(currency) < 2**63
        assert max_balance_minor(currency) == 10 ** (14 + minor_unit_exponent(currency))


@pytest.mark.parametrize("amount", [-1, -12999, -(10**13)])
def test_x1_negative_amount_is_invalid(amount: int) -> None:
    invalid = _refused(_wire(_with_amount(amount)))
    assert "payload.amount.amount_minor: Input should be greater than or equal to 0" in invalid.reason


def test_x1_money_arithmetic_refuses_to_pass_the_bound() -> None:
    most = Money(amount_minor=max_amount_minor("USD"), currency="USD")
    with pytest.raises(ValueError, match="USD sum 10000000000001 exceeds the Money bound of 10000000000000"):
        _ = most + Money(amount_minor=1, currency="USD")
    assert most + Money(amount_minor=0, currency="USD") == most
    balance = Balance(amount_minor=0, currency="USD") + most + most  # a balance may hold more than one amount
    assert type(balance) is Balance
    assert balance.amount_minor == 2 * most.amount_minor
    full = Balance(amount_minor=max_balance_minor("USD"), currency="USD")
    with pytest.raises(ValueError, match="exceeds the Balance bound"):
        _ = full + Money(amount_minor=1, currency="USD")
    with pytest.raises(ValueError, match="would be negative"):
        _ = Money(amount_minor=1, currency="USD") - most


def test_x1_money_and_balance_compare_by_value() -> None:
    assert Money(amount_minor=5, currency="USD") == Balance(amount_minor=5, currency="USD")
    assert hash(Money(amount_minor=5, currency="USD")) == hash(Balance(amount_minor=5, currency="USD"))
    assert Money(amount_minor=5, currency="USD") != Money(amount_minor=5, currency="EUR")
    assert Money(amount_minor=5, currency="USD") != (5, "USD")


# --- X1: shape -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda d: d["payload"].update(coupon="FREE"), "payload.coupon"),
        (lambda d: d.update(priority=1), "priority"),
        (lambda d: d["payload"]["amount"].update(precision=2), "payload.amount.precision"),
    ],
)
def test_x1_extra_field_is_invalid(change: Callable[[JsonDict], None], path: str) -> None:
    document = _checkout_json()
    change(document)
    invalid = _refused(_wire(document))
    assert f"{path}: Extra inputs are not permitted" in invalid.reason


@pytest.mark.parametrize("status", ["PAID", "shipped", 1, None, ""])
def test_x1_wrong_enum_value_is_invalid(status: Any) -> None:
    changed = OrderStatusChanged(
        order_id="o", buyer_id="b", seller_id="s", amount=Money(amount_minor=1, currency="USD"), status=OrderStatus.PAID
    )
    document = json.loads(
        envelope_for(changed, correlation_id="o", idempotency_key="k", source="saga").model_dump_json()
    )
    document["payload"]["status"] = status
    invalid = _refused(_wire(document))
    assert "payload.status: Input should be" in invalid.reason
    with pytest.raises(ValidationError):
        OrderStatusChanged.model_validate(document["payload"])


@pytest.mark.parametrize(
    "field", ["message_id", "type", "version", "occurred_at", "correlation_id", "idempotency_key", "source", "payload"]
)
def test_x1_missing_envelope_field_is_invalid(field: str) -> None:
    document = _checkout_json()
    del document[field]
    invalid = _refused(_wire(document))
    assert f"{field}: Field required" in invalid.reason


def test_x1_missing_payload_field_is_invalid() -> None:
    document = _checkout_json()
    del document["payload"]["seller_id"]
    assert "payload.seller_id: Field required" in _refused(_wire(document)).reason


@pytest.mark.parametrize("occurred_at", ["2026-03-01T12:00:00", "2026-03-01 12:00:00", "2026-03-01T12:00:00.5"])
def test_x1_naive_datetime_is_invalid(occurred_at: str) -> None:
    invalid = _refused(_wire(_checkout_json() | {"occurred_at": occurred_at}))
    assert "occurred_at: Input should have timezone info" in invalid.reason
    envelope = envelope_for(
        Checkout(
            marketplace_id=MARKETPLACE_ID,
            order_id="o",
            buyer_id="b",
            seller_id="s",
            amount=Money(amount_minor=1, currency="USD"),
        ),
        correlation_id="o",
        idempotency_key="k",
        source="s",
    )
    naive = dict(envelope) | {"occurred_at": datetime(2026, 3, 1, 12)}  # noqa: DTZ001
    with pytest.raises(ValidationError, match="Input should have timezone info"):
        Envelope[Checkout](**naive)


@pytest.mark.parametrize("occurred_at", [1767268800, 1767268800.5, "2026-03-01", "yesterday"])
def test_x1_datetime_as_a_timestamp_or_a_date_is_invalid(occurred_at: Any) -> None:
    assert "occurred_at" in _refused(_wire(_checkout_json() | {"occurred_at": occurred_at})).reason


@pytest.mark.parametrize("message_id", ["not-a-uuid", 12, "", None])
def test_x1_message_id_must_be_a_uuid_string(message_id: Any) -> None:
    assert "message_id" in _refused(_wire(_checkout_json() | {"message_id": message_id})).reason


def test_x1_envelope_type_must_name_its_payload() -> None:
    checkout = Checkout(
        marketplace_id=MARKETPLACE_ID,
        order_id="o",
        buyer_id="b",
        seller_id="s",
        amount=Money(amount_minor=1, currency="USD"),
    )
    with pytest.raises(ValidationError, match="must name the payload's class: Checkout version 1"):
        Envelope[Checkout](
            message_id=uuid.uuid4(),
            type="FundWallet",
            version=1,
            occurred_at=datetime.now(UTC),
            correlation_id="c",
            idempotency_key="k",
            source="s",
            payload=checkout,
        )


# --- X2: a verdict for every record ----------------------------------------------------------


def test_x2_unknown_type_is_invalid() -> None:
    with pytest.raises(UnknownMessageType) as caught:
        decode_message(_wire(_checkout_json() | {"type": "RefundOrder"}))
    assert caught.value.reason == "unknown message type 'RefundOrder' version 1"
    assert isinstance(caught.value, InvalidMessage)
    assert isinstance(caught.value, LookupError)  # as before, for callers that catch that


@pytest.mark.parametrize("version", [2, 0, -1, 10**30])
def test_x2_unknown_version_is_invalid(version: int) -> None:
    with pytest.raises(UnknownMessageType) as caught:
        decode_message(_wire(_checkout_json() | {"version": version}))
    assert caught.value.reason == f"unknown message type 'Checkout' version {version}"


def test_x2_payload_model_raises_the_same_verdict() -> None:
    with pytest.raises(UnknownMessageType, match="unknown message type 'Checkout' version 2"):
        payload_model("Checkout", 2)
    with pytest.raises(InvalidMessage):
        payload_model("checkout", 1)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"type": 5}, "type: Input should be a valid string"),
        ({"type": None}, "type: Input should be a valid string"),
        ({"type": ["Checkout"]}, "type: Input should be a valid string"),
        ({"version": "1"}, "version: Input should be a valid integer"),
        ({"version": "one"}, "version: Input should be a valid integer"),
        ({"version": None}, "version: Input should be a valid integer"),
    ],
)
def test_x2_mistyped_type_or_version_is_invalid(change: JsonDict, expected: str) -> None:
    invalid = _refused(_wire(_checkout_json() | change))
    assert not isinstance(invalid, UnknownMessageType)
    assert expected in invalid.reason


@pytest.mark.parametrize("missing", ["type", "version"])
def test_x2_missing_type_or_version_is_invalid(missing: str) -> None:
    document = _checkout_json()
    del document[missing]
    assert _refused(_wire(document)).reason.endswith(f"{missing}: Field required")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"[]", "(record): Input should be an object"),
        (b'[{"type": "Checkout"}]', "(record): Input should be an object"),
        (b"42", "(record): Input should be an object"),
        (b'"Checkout"', "(record): Input should be an object"),
        (b"null", "(record): Input should be an object"),
        (b"true", "(record): Input should be an object"),
        (b"", "not JSON: Invalid JSON: EOF while parsing a value"),
        (b"   ", "not JSON: Invalid JSON: EOF while parsing a value"),
        (b"\xff\xfe\x00{", "not JSON: Invalid JSON"),
        (b'{"type": "Checkout", "item": "\xff"}', "not JSON: Invalid JSON"),
        (_wire(_checkout_json())[:120], "not JSON: Invalid JSON: EOF while parsing"),
        (b"{'type': 'Checkout'}", "not JSON: Invalid JSON"),
        (b"NaN", "(record): Input should be an object"),  # pydantic-core's parser reads NaN and Infinity
        (b"[" * 100_000, "not JSON: Invalid JSON"),
    ],
    ids=[
        "empty-array",
        "array-of-envelope",
        "number",
        "string",
        "null",
        "bool",
        "empty-bytes",
        "whitespace",
        "utf16-bom",
        "invalid-utf8",
        "truncated",
        "single-quotes",
        "nan",
        "deeply-nested",
    ],
)
def test_x2_not_an_envelope_is_invalid(value: bytes, expected: str) -> None:
    invalid = _refused(value)
    assert expected in invalid.reason
    assert not isinstance(invalid, UnknownMessageType)


def test_x2_a_value_that_is_not_bytes_is_invalid() -> None:
    with pytest.raises(InvalidMessage, match="must be bytes, not NoneType"):
        decode_message(None)  # type: ignore[arg-type]


def test_x2_the_reason_names_paths_and_is_bounded() -> None:
    document = _checkout_json()
    document["payload"] |= {f"extra_{i}": i for i in range(500)}
    invalid = _refused(_wire(document))
    assert invalid.reason.startswith("invalid message, 500 problems: payload.extra_0: Extra inputs are not permitted")
    assert invalid.reason.endswith("; and 490 more")
    long_key = _checkout_json()
    long_key["payload"]["k" * 10_000] = 1
    assert len(_refused(_wire(long_key)).reason) < 300
    long_type = _checkout_json() | {"type": "T" * 100_000}
    assert len(_refused(_wire(long_type)).reason) < 200


def _secret_in_every_field() -> list[JsonDict]:
    """Checkout records with the secret in one invalid place each."""
    cases: list[JsonDict] = [
        _with_amount(SECRET),
        _with_amount(100, SECRET),
        _with_amount(100, SECRET[:3].upper() + "\u0000"),
        _checkout_json(order_id=SECRET * 5),  # too long
        _checkout_json(coupon=SECRET),  # extra field's value
        _checkout_json(amount=SECRET),
        _checkout_json(item=[SECRET]),
    ]
    for field in ("message_id", "causation_id", "occurred_at", "version", "correlation_id"):
        value: Any = SECRET if field != "correlation_id" else SECRET * 10
        cases.append(_checkout_json() | {field: value})
    cases.append(_checkout_json() | {"payload": SECRET})
    cases.append(_checkout_json() | {"idempotency_key": {"token": SECRET}})
    return cases


@pytest.mark.parametrize("document", _secret_in_every_field())
def test_x2_reason_never_contains_the_input_value(document: JsonDict) -> None:
    invalid = _refused(_wire(document))
    fragments = {SECRET[i : i + 6] for i in range(len(SECRET) - 5)}
    assert not [f for f in fragments if f in invalid.reason], invalid.reason
    assert invalid.__cause__ is None  # the ValidationError, which quotes inputs, is not chained
    assert invalid.__context__ is None


# --- X2: properties over arbitrary input -----------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def check_verdict(value: bytes) -> Envelope[Any] | InvalidMessage:
    try:
        return decode_message(value)
    except InvalidMessage as invalid:
        refused = invalid
    assert refused.reason
    assert len(refused.reason) <= MAX_REASON_CHARS
    return refused


@settings(database=None, max_examples=300)
@given(st.binary(max_size=300))
def test_x2_arbitrary_bytes_give_a_verdict(value: bytes) -> None:
    check_verdict(value)  # never another exception


@settings(database=None, max_examples=300)
@given(_JSON)
def test_x2_arbitrary_json_gives_a_verdict(document: Any) -> None:
    check_verdict(_wire(document))


_PATHS: list[tuple[str, ...]] = [
    ("message_id",),
    ("type",),
    ("version",),
    ("occurred_at",),
    ("causation_id",),
    ("correlation_id",),
    ("payload",),
    ("payload", "order_id"),
    ("payload", "amount"),
    ("payload", "amount", "amount_minor"),
    ("payload", "amount", "currency"),
    ("payload", "item"),
]


@settings(database=None, max_examples=400)
@given(st.sampled_from(_PATHS), _JSON, st.data())
def test_x2_a_mutated_checkout_gives_a_verdict_and_valid_ones_are_exact(
    path: tuple[str, ...], value: Any, data: st.DataObject
) -> None:
    document = _checkout_json()
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    cut = data.draw(st.sampled_from([None, 1, 10, 50]))
    raw = _wire(document)
    outcome = check_verdict(raw if cut is None else raw[:-cut])
    if isinstance(outcome, Envelope):  # accepted: then it is exactly what was sent, nothing coerced
        assert json.loads(outcome.model_dump_json()) == _normalised(document)


def _normalised(document: JsonDict) -> JsonDict:
    """What a valid record looks like after a round trip (ISO datetimes and UUIDs in canonical form)."""
    envelope = Envelope[Checkout].model_validate_json(_wire(document))
    normalised: JsonDict = json.loads(envelope.model_dump_json())
    return normalised


@settings(database=None, max_examples=200)
@given(
    st.sampled_from(MESSAGE_TYPES), st.integers(min_value=0, max_value=10**13), st.sampled_from(["USD", "JPY", "KWD"])
)
def test_x2_every_message_type_decodes_to_itself(message_class: type[Message], amount: int, currency: str) -> None:
    amount = min(amount, max_amount_minor(currency))
    message = example(message_class)
    money = {
        name: field.annotation(amount_minor=amount, currency=currency)
        for name, field in message_class.model_fields.items()
        if field.annotation in (Money, Balance)
    }
    message = message_class(**(message.model_dump() | money))
    envelope = envelope_for(message, correlation_id="c", idempotency_key="k", source="test")
    decoded = decode_message(envelope.model_dump_json().encode())
    assert decoded == envelope
    assert type(decoded.payload) is message_class


# --- X1: the JSON Schemas say the same rules ------------------------------------------------


def _schema_accepts(schema: Any, value: Any, root: JsonDict) -> bool:  # noqa: C901, PLR0911, PLR0912
    """A JSON Schema 2020-12 evaluator for the keywords the exported schemas use (no library installed).

    ``format`` is checked for date-time (RFC 3339 demands an offset) and uuid, as a producer's
    validator with format assertion would.
    """
    if schema is True or schema == {}:
        return True
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        if not _schema_accepts(target, value, root):
            return False
    kinds = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "null": lambda v: v is None,
    }
    if "type" in schema and not kinds[schema["type"]](value):
        return False
    if "const" in schema and (value != schema["const"] or type(value) is not type(schema["const"])):
        return False
    if "enum" in schema and value not in schema["enum"]:
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return False
        if "maximum" in schema and value > schema["maximum"]:
            return False
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            return False
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return False
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return False
        if schema.get("format") == "uuid":
            try:
                uuid.UUID(value)
            except ValueError:
                return False
        if schema.get("format") == "date-time" and not re.fullmatch(
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", value
        ):
            return False
    if "anyOf" in schema and not any(_schema_accepts(s, value, root) for s in schema["anyOf"]):
        return False
    for rule in schema.get("allOf", []):
        if not _schema_accepts(rule, value, root):
            return False
    if (
        "if" in schema
        and _schema_accepts(schema["if"], value, root)
        and not _schema_accepts(schema.get("then", True), value, root)
    ):
        return False
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        if any(name not in value for name in schema.get("required", [])):
            return False
        if schema.get("additionalProperties") is False and set(value) - set(properties):
            return False
        for name, sub in properties.items():
            if name in value and not _schema_accepts(sub, value[name], root):
                return False
    return True


_SCHEMA_CASES: list[tuple[str, JsonDict]] = [
    ("valid", _checkout_json()),
    ("amount as string", _with_amount("100")),
    ("amount as bool", _with_amount(amount_minor=True)),
    ("amount negative", _with_amount(-1)),
    ("amount at the USD bound", _with_amount(10**13)),
    ("amount over the USD bound", _with_amount(10**13 + 1)),
    ("amount at the JPY bound", _with_amount(10**11, "JPY")),
    ("amount over the JPY bound", _with_amount(10**11 + 1, "JPY")),
    ("amount over the KWD bound", _with_amount(10**14 + 1, "KWD")),
    ("amount at the CLF bound", _with_amount(10**15, "CLF")),
    ("unknown currency", _with_amount(1, "ABC")),
    ("lowercase currency", _with_amount(1, "usd")),
    ("not money", _with_amount(1, "XAU")),
    ("extra payload field", _checkout_json(coupon="x")),
    ("number for a string", _checkout_json(item=5)),
    ("naive datetime", _checkout_json() | {"occurred_at": "2026-03-01T12:00:00"}),
    ("missing message_id", {k: v for k, v in _checkout_json().items() if k != "message_id"}),
    ("wrong type const", _checkout_json() | {"type": "FundWallet"}),
    ("version as string", _checkout_json() | {"version": "1"}),
    ("bad causation id", _checkout_json() | {"causation_id": "nope"}),
]


def _model_accepts(document: JsonDict) -> bool:
    try:
        decode_message(_wire(document))
    except InvalidMessage:
        return False
    return True


@pytest.mark.parametrize(("case", "document"), _SCHEMA_CASES, ids=[c for c, _ in _SCHEMA_CASES])
def test_x1_the_json_schema_agrees_with_the_model(case: str, document: JsonDict) -> None:
    schema = message_schema(Checkout)
    assert _schema_accepts(schema, document, schema) == _model_accepts(document), case


def test_x1_a_json_schema_library_agrees_with_the_model() -> None:
    jsonschema = pytest.importorskip("jsonschema")  # not a dependency: runs only where it is installed
    schema = message_schema(Checkout)
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    disagree = [case for case, document in _SCHEMA_CASES if validator.is_valid(document) != _model_accepts(document)]
    assert not disagree


def test_x1_the_schema_states_the_per_currency_maximum() -> None:
    money = message_schema(Checkout)["$defs"]["Money"]
    assert money["additionalProperties"] is False
    assert money["properties"]["amount_minor"]["type"] == "integer"
    assert money["properties"]["amount_minor"]["minimum"] == 0
    assert money["properties"]["currency"]["enum"] == list(CURRENCIES)
    maxima = {
        code: rule["then"]["properties"]["amount_minor"]["maximum"]
        for rule in money["allOf"]
        for code in rule["if"]["properties"]["currency"]["enum"]
    }
    assert maxima == {code: max_amount_minor(code) for code in CURRENCIES}
