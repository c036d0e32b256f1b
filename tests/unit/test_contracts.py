"""The contracts package: generated files in sync, compatible changes only, clean wire round trips, Money rules."""

from __future__ import annotations

import copy
import json
import string
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts import (
    ALL_TOPICS,
    MESSAGE_TYPES,
    Checkout,
    Envelope,
    Message,
    Money,
    UnknownMessageType,
    envelope_for,
    max_amount_minor,
    parse_envelope,
    payload_model,
)
from contracts.asyncapi import asyncapi
from contracts.catalogue import (
    CONSUMERS,
    CONTRACTS_VERSION,
    PRODUCERS,
    message_schema,
    message_schemas,
    messages_on,
    render_json,
    rendered_files,
    schema_name,
)
from contracts.compatibility import breaking_changes, parse_version
from contracts.topics import DEAD_LETTER
from scripts.export_contracts import (
    CONTRACTS_DIR,
    compatibility_problems,
    differences,
    release,
    released_schemas,
    released_versions,
)
from tests.support.examples import example

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS_DIR = CONTRACTS_DIR / "schemas"


# --- (a) generated files match the models ----------------------------------------------------


def test_generated_files_match_the_models() -> None:
    problems = differences(CONTRACTS_DIR)
    assert not problems, "contract files are out of date, run `make contracts`:\n  " + "\n  ".join(problems)


def test_catalogue_covers_every_message_and_topic() -> None:
    assert set(PRODUCERS) == {m.message_type for m in MESSAGE_TYPES}
    assert set(CONSUMERS) == {t.name for t in ALL_TOPICS}
    assert all(messages_on(t) for t in ALL_TOPICS if t != DEAD_LETTER), "a topic carries no message"
    files = rendered_files()
    assert {f"schemas/{schema_name(m)}.json" for m in MESSAGE_TYPES} <= set(files)
    assert {c["address"] for c in asyncapi()["channels"].values()} == {t.name for t in ALL_TOPICS}
    for topic in ALL_TOPICS:
        assert f"`{topic.name}`" in files["TOPICS.md"]


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"external or malformed $ref {ref!r}"
    node: Any = document
    for part in ref[2:].split("/"):
        assert isinstance(node, dict), f"$ref {ref!r} does not resolve"
        assert part in node, f"$ref {ref!r} does not resolve"
        node = node[part]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


@pytest.mark.parametrize("document", ["asyncapi", *[schema_name(m) for m in MESSAGE_TYPES]])
def test_every_ref_resolves_inside_its_document(document: str) -> None:
    doc = asyncapi() if document == "asyncapi" else message_schema(payload_model(*_split(document)))
    refs = _refs(doc)
    assert refs
    for ref in refs:
        _resolve(doc, ref)


def _split(name: str) -> tuple[str, int]:
    message_type, version = name.rsplit(".v", 1)
    return message_type, int(version)


# --- (b) backward compatibility with the released baseline ----------------------------------
#
# The baseline is contracts/released/<version>/, moved only by `export_contracts.py --release`;
# comparing with it (not with git HEAD) makes a committed breaking change fail on a clean checkout.


def test_released_baseline_is_the_current_version_or_older() -> None:
    baseline = released_schemas(CONTRACTS_DIR)
    assert baseline is not None, "no released baseline: run scripts/export_contracts.py --release"
    version, schemas = baseline
    assert released_versions(CONTRACTS_DIR) == [version], "only the latest release is kept as the baseline"
    assert parse_version(version) <= parse_version(CONTRACTS_VERSION)
    assert schemas, "the baseline holds no schema"


def test_current_models_accept_what_the_released_schemas_accept() -> None:
    problems = compatibility_problems(CONTRACTS_DIR)
    assert not problems, "breaking contract changes (add a new version instead):\n  " + "\n  ".join(problems)


def _release_with(tmp_path: Path, name: str, schema: dict[str, Any], version: str = "0.0.1") -> Path:
    """A contracts directory whose latest release (``version``, an older one by default) is today's
    schemas with ``name`` replaced by ``schema``."""
    folder = tmp_path / "released" / version
    folder.mkdir(parents=True)
    for other, current in message_schemas().items():
        (folder / f"{other}.json").write_text(render_json(schema if other == name else current), encoding="utf-8")
    return tmp_path


def test_the_gate_fails_when_a_released_message_would_no_longer_be_accepted(tmp_path: Path) -> None:
    released = message_schema(Checkout)
    # released with an optional field the current model no longer has
    released["$defs"]["Checkout"]["properties"]["gift_note"] = {"type": "string"}
    problems = compatibility_problems(_release_with(tmp_path, "Checkout.v1", released))
    assert problems == ["0.0.1 -> current: Checkout.v1: Checkout.gift_note: property removed"]


def test_the_gate_fails_when_a_released_message_version_is_gone(tmp_path: Path) -> None:
    folder = _release_with(tmp_path, "Checkout.v1", message_schema(Checkout)) / "released" / "0.0.1"
    (folder / "Checkout.v2.json").write_text(render_json(message_schema(Checkout)), encoding="utf-8")
    problems = compatibility_problems(tmp_path)
    assert problems == ["0.0.1 -> current: Checkout.v2: message version removed; consumers must keep accepting it"]


def test_the_version_must_rise_with_any_schema_change(tmp_path: Path) -> None:
    """Issue 20: the wheel tradeguard-contracts carries CONTRACTS_VERSION, so released schemas
    that differ from today's under the same version fail the gate, even a compatible change."""
    released = message_schema(Checkout)
    del released["$defs"]["Checkout"]["properties"]["item"]  # today's Checkout only adds an optional field
    problems = compatibility_problems(_release_with(tmp_path, "Checkout.v1", released, CONTRACTS_VERSION))
    assert len(problems) == 1
    assert problems[0].startswith(f"the schemas changed since release {CONTRACTS_VERSION} (Checkout.v1)")
    # released under an older version, the same change passes: it is compatible
    assert compatibility_problems(_release_with(tmp_path / "older", "Checkout.v1", released)) == []


def test_the_gate_fails_without_a_baseline(tmp_path: Path) -> None:
    assert compatibility_problems(tmp_path) == ["no released baseline in released/: run --release"]


def test_the_gate_passes_on_the_current_schemas(tmp_path: Path) -> None:
    assert compatibility_problems(_release_with(tmp_path, "", {}, CONTRACTS_VERSION)) == []


def test_release_moves_the_baseline_and_never_rewrites_one(tmp_path: Path) -> None:
    old = tmp_path / "released" / "0.0.1"
    old.mkdir(parents=True)
    (old / "Checkout.v1.json").write_text("{}", encoding="utf-8")
    assert release(tmp_path) == [
        f"released/{CONTRACTS_VERSION}/ ({len(MESSAGE_TYPES)} schemas written)",
        "released/0.0.1/ (removed: superseded)",
    ]
    assert released_versions(tmp_path) == [CONTRACTS_VERSION]
    assert compatibility_problems(tmp_path) == []
    assert release(tmp_path) == []  # the same schemas again: nothing to do

    (tmp_path / "released" / CONTRACTS_VERSION / "Checkout.v1.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ValueError, match="bump CONTRACTS_VERSION"):
        release(tmp_path)

    (tmp_path / "released" / "99.0.0").mkdir()
    with pytest.raises(ValueError, match=r"older than the latest release 99\.0\.0"):
        release(tmp_path)


def test_breaking_changes_finds_incompatible_edits() -> None:
    released = message_schema(payload_model("PaymentAuthorizationDeclined", 1))
    assert breaking_changes(released, copy.deepcopy(released)) == []

    added_required = copy.deepcopy(released)
    added_required["$defs"]["PaymentAuthorizationDeclined"]["properties"]["note"] = {"type": "string"}
    added_required["$defs"]["PaymentAuthorizationDeclined"]["required"].append("note")
    assert breaking_changes(released, added_required) == [
        "PaymentAuthorizationDeclined.note: required now, optional or absent before"
    ]

    added_optional = copy.deepcopy(released)
    added_optional["$defs"]["PaymentAuthorizationDeclined"]["properties"]["note"] = {"type": "string"}
    assert breaking_changes(released, added_optional) == []

    removed = copy.deepcopy(released)
    del removed["$defs"]["Money"]["properties"]["currency"]
    removed["$defs"]["Money"]["required"].remove("currency")
    assert breaking_changes(released, removed) == ["Money.currency: property removed"]

    fewer_reasons = copy.deepcopy(released)
    fewer_reasons["$defs"]["DeclineReason"]["enum"].remove("wallet_not_found")
    assert breaking_changes(released, fewer_reasons) == ["DeclineReason: enum value 'wallet_not_found' removed"]

    envelope_change = copy.deepcopy(released)
    envelope_change["required"].append("causation_id")
    assert breaking_changes(released, envelope_change) == [
        "envelope.causation_id: required now, optional or absent before"
    ]


def test_breaking_changes_finds_narrowed_types() -> None:
    released = message_schema(payload_model("OrderStatusChanged", 1))

    not_null = copy.deepcopy(released)  # reason: str | None -> str
    not_null["$defs"]["OrderStatusChanged"]["properties"]["reason"] = {"type": "string"}
    assert breaking_changes(released, not_null) == ["OrderStatusChanged.reason: no longer accepts null"]

    shorter = copy.deepcopy(released)
    shorter["$defs"]["OrderStatusChanged"]["properties"]["order_id"]["maxLength"] = 50
    assert breaking_changes(released, shorter) == ["OrderStatusChanged.order_id: maxLength lowered to 50 (was 100)"]

    patterned = copy.deepcopy(released)
    patterned["properties"]["source"]["pattern"] = "^[a-z]+$"
    assert breaking_changes(released, patterned) == ["envelope.source: pattern is now '^[a-z]+$' (was 'unset')"]

    integer = copy.deepcopy(released)
    integer["properties"]["correlation_id"]["type"] = "integer"
    assert breaking_changes(released, integer) == ["envelope.correlation_id: no longer accepts string"]

    fewer_currencies = copy.deepcopy(released)
    fewer_currencies["$defs"]["Money"]["properties"]["currency"]["enum"].remove("JPY")
    assert breaking_changes(released, fewer_currencies) == ["Money.currency: enum value 'JPY' removed"]

    smaller = copy.deepcopy(released)
    usd_rule = next(
        rule for rule in smaller["$defs"]["Money"]["allOf"] if "USD" in rule["if"]["properties"]["currency"]["enum"]
    )
    usd_rule["then"]["properties"]["amount_minor"]["maximum"] //= 10
    (problem,) = breaking_changes(released, smaller)
    assert problem.startswith("Money.amount_minor: maximum lowered to 1000000000000 (was 10000000000000) for currency")

    larger = copy.deepcopy(released)  # widening is compatible
    larger["$defs"]["Money"]["properties"]["amount_minor"]["maximum"] *= 10
    for rule in larger["$defs"]["Money"]["allOf"]:
        rule["then"]["properties"]["amount_minor"]["maximum"] *= 10
    assert breaking_changes(released, larger) == []


def test_breaking_changes_follows_a_reference_to_another_model() -> None:
    released = message_schema(payload_model("WalletFunded", 1))
    as_money = copy.deepcopy(released)  # balance: Balance -> Money, whose bound is lower
    as_money["$defs"]["WalletFunded"]["properties"]["balance"]["$ref"] = "#/$defs/Money"
    problems = breaking_changes(released, as_money)
    assert problems
    assert all(p.startswith("WalletFunded.balance<Balance now Money>.amount_minor: maximum lowered") for p in problems)
    assert breaking_changes(as_money, released) == []  # Money -> Balance accepts more: compatible


# --- (c) contracts stands alone --------------------------------------------------------------


def test_contracts_imports_without_the_services() -> None:
    code = (
        "import contracts, contracts.catalogue, contracts.asyncapi, sys; "
        "bad=[m for m in sys.modules if m.split('.')[0] in ('shared','services','faststream','sqlalchemy','aiokafka')]; "
        "assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


# --- (d) envelope round trip -----------------------------------------------------------------


@pytest.mark.parametrize("message_class", MESSAGE_TYPES, ids=lambda m: m.message_type)
def test_envelope_round_trip(message_class: type[Message]) -> None:
    message = example(message_class)
    envelope = envelope_for(message, correlation_id="order-7f3a", idempotency_key="test:1", source="test")
    wire = envelope.model_dump_json()

    raw = parse_envelope(wire)
    model = payload_model(raw.type, raw.version)
    assert model is message_class
    assert model.model_validate(raw.payload) == message
    assert Envelope[message_class].model_validate_json(wire) == envelope  # type: ignore[valid-type]
    assert raw.message_id == envelope.message_id
    assert (
        message.partition_key == raw.payload["subject_id" if raw.type == "CommandRejected" else message.topic.key.value]
    )

    # the wire form fits the published schema (shallowly: no jsonschema validator installed)
    schema = message_schema(message_class)
    data = json.loads(wire)
    assert set(data) <= set(schema["properties"])
    assert set(schema["required"]) <= set(data)
    assert data["type"] == schema["properties"]["type"]["const"]
    payload_schema = _resolve(schema, schema["properties"]["payload"]["$ref"])
    assert set(data["payload"]) == set(payload_schema["properties"])


# --- (e) unknown types -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message_type", "version"), [("NoSuchMessage", 1), ("Checkout", 2), ("Checkout", 0), ("checkout", 1)]
)
def test_payload_model_rejects_unknown_type_or_version(message_type: str, version: int) -> None:
    with pytest.raises(UnknownMessageType, match=message_type):
        payload_model(message_type, version)


def test_payload_model_finds_every_message() -> None:
    for message in MESSAGE_TYPES:
        assert payload_model(message.message_type, message.version) is message


# --- (f) Money -------------------------------------------------------------------------------


@pytest.mark.parametrize("operation", [Money.__add__, Money.__sub__], ids=["add", "sub"])
def test_money_refuses_mixed_currencies(operation: Any) -> None:
    with pytest.raises(ValueError, match="cannot combine USD with EUR"):
        operation(Money(amount_minor=500, currency="USD"), Money(amount_minor=100, currency="EUR"))


def test_money_arithmetic_in_one_currency() -> None:
    a, b = Money(amount_minor=500, currency="EUR"), Money(amount_minor=120, currency="EUR")
    assert a + b == Money(amount_minor=620, currency="EUR")
    assert a - b == Money(amount_minor=380, currency="EUR")
    assert type(a + b) is Money
    with pytest.raises(ValueError, match="EUR difference would be negative"):
        _ = b - a  # never below zero


@pytest.mark.parametrize(
    ("amount_minor", "currency", "text"),
    [
        (12999, "USD", "129.99 USD"),
        (100, "USD", "1.00 USD"),
        (5, "EUR", "0.05 EUR"),
        (123456789, "USD", "1,234,567.89 USD"),
        (1500, "JPY", "1,500 JPY"),
        (7, "KRW", "7 KRW"),
        (1234, "BHD", "1.234 BHD"),
    ],
)
def test_money_str_is_exact(amount_minor: int, currency: str, text: str) -> None:
    assert str(Money(amount_minor=amount_minor, currency=currency)) == text


_EXPONENT = {"USD": 2, "EUR": 2, "JPY": 0, "KWD": 3}


@settings(database=None)
@given(st.data(), st.sampled_from(sorted(_EXPONENT)))
def test_money_decimal_is_exact(data: st.DataObject, currency: str) -> None:
    amount_minor = data.draw(st.integers(min_value=0, max_value=max_amount_minor(currency)))
    money = Money(amount_minor=amount_minor, currency=currency)
    assert money.decimal == Decimal(amount_minor).scaleb(-_EXPONENT[currency])
    assert money.decimal * 10 ** _EXPONENT[currency] == amount_minor
    number = str(money).removesuffix(f" {currency}")
    assert Decimal(number.replace(",", "")) == money.decimal
    assert len(number.partition(".")[2]) == _EXPONENT[currency]


@settings(database=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_money_never_accepts_floats(amount: float) -> None:
    """Not even integral ones (100.0): strict, issue 22."""
    with pytest.raises(ValidationError):
        Money(amount_minor=amount, currency="USD")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Money.model_validate_json(json.dumps({"amount_minor": amount, "currency": "USD"}))


@settings(database=None)
@given(st.integers(max_value=-1))
def test_money_never_accepts_negative_amounts(amount: int) -> None:
    with pytest.raises(ValidationError):
        Money(amount_minor=amount, currency="USD")


@settings(database=None)
@given(st.text(alphabet=string.ascii_letters, min_size=3, max_size=3).filter(lambda c: not c.isupper()))
def test_money_currency_is_three_capital_letters(currency: str) -> None:
    with pytest.raises(ValidationError):
        Money(amount_minor=1, currency=currency)


def test_money_is_immutable() -> None:
    money = Money(amount_minor=1, currency="USD")
    with pytest.raises(ValidationError):
        money.amount_minor = 2  # type: ignore[misc]
