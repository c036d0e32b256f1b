"""The contracts package: generated files in sync, compatible changes only, clean wire round trips, Money rules."""

from __future__ import annotations

import copy
import json
import string
import subprocess
import sys
import types
import uuid
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any, Union, get_args, get_origin

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts import (
    ALL_TOPICS,
    MESSAGE_TYPES,
    Envelope,
    Message,
    Money,
    UnknownMessageType,
    envelope_for,
    parse_envelope,
    payload_model,
)
from contracts.catalogue import CONSUMERS, PRODUCERS, asyncapi, message_schema, messages_on, rendered_files, schema_name
from contracts.topics import DEAD_LETTER
from scripts.export_contracts import CONTRACTS_DIR, differences

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
    assert set(asyncapi()["channels"]) == {t.name for t in ALL_TOPICS}
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


# --- (b) backward compatibility with the committed schemas -----------------------------------


def breaking_changes(committed: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Ways a message valid under ``committed`` could be refused under ``current`` (pragmatic subset).

    Compares the envelope and every model both schemas define: a property removed (models forbid
    extra fields), a field required now that was not required before, an enum value dropped.
    """
    old_defs, new_defs = committed.get("$defs", {}), current.get("$defs", {})
    pairs = [("envelope", committed, current)]
    pairs += [(name, old_defs[name], new_defs[name]) for name in sorted(old_defs.keys() & new_defs.keys())]
    payload = committed["properties"]["payload"]["$ref"].rsplit("/", 1)[-1]
    problems = [f"payload model {payload} no longer defined"] if payload not in new_defs else []
    for name, old, new in pairs:
        old_props, new_props = old.get("properties", {}), new.get("properties", {})
        problems += [f"{name}.{p}: property removed" for p in sorted(old_props.keys() - new_props.keys())]
        old_required = set(old.get("required", []))
        problems += [
            f"{name}.{p}: required now, optional or absent before"
            for p in new.get("required", [])
            if p not in old_required
        ]
        problems += [f"{name}: enum value {v!r} removed" for v in old.get("enum", []) if v not in new.get("enum", [])]
    return problems


def _committed_schemas() -> dict[str, dict[str, Any]]:
    """The schemas in git HEAD; before they are first committed (or without git), the files on disk."""
    try:
        listing = subprocess.run(
            ["git", "ls-tree", "--name-only", "HEAD", "contracts/schemas/"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        committed = {
            Path(path).stem: json.loads(
                subprocess.run(["git", "show", f"HEAD:{path}"], cwd=ROOT, capture_output=True, check=True).stdout
            )
            for path in listing
            if path.endswith(".json")
        }
    except (OSError, subprocess.CalledProcessError):
        committed = {}
    return committed or {
        path.stem: json.loads(path.read_text(encoding="utf-8")) for path in sorted(SCHEMAS_DIR.glob("*.json"))
    }


def test_current_models_accept_what_the_committed_schemas_accept() -> None:
    committed = _committed_schemas()
    assert committed, "no committed schemas found"
    problems = []
    for name, schema in sorted(committed.items()):
        try:
            current = message_schema(payload_model(*_split(name)))
        except UnknownMessageType:
            problems.append(f"{name}: message version removed; consumers must keep accepting it")
            continue
        problems += [f"{name}: {p}" for p in breaking_changes(schema, current)]
    assert not problems, "breaking contract changes (add a new version instead):\n  " + "\n  ".join(problems)


def test_breaking_changes_finds_incompatible_edits() -> None:
    committed = message_schema(payload_model("WalletDebitDeclined", 1))
    assert breaking_changes(committed, copy.deepcopy(committed)) == []

    added_required = copy.deepcopy(committed)
    added_required["$defs"]["WalletDebitDeclined"]["properties"]["note"] = {"type": "string"}
    added_required["$defs"]["WalletDebitDeclined"]["required"].append("note")
    assert breaking_changes(committed, added_required) == [
        "WalletDebitDeclined.note: required now, optional or absent before"
    ]

    added_optional = copy.deepcopy(committed)
    added_optional["$defs"]["WalletDebitDeclined"]["properties"]["note"] = {"type": "string"}
    assert breaking_changes(committed, added_optional) == []

    removed = copy.deepcopy(committed)
    del removed["$defs"]["Money"]["properties"]["currency"]
    removed["$defs"]["Money"]["required"].remove("currency")
    assert breaking_changes(committed, removed) == ["Money.currency: property removed"]

    fewer_reasons = copy.deepcopy(committed)
    fewer_reasons["$defs"]["DeclineReason"]["enum"].remove("wallet_not_found")
    assert breaking_changes(committed, fewer_reasons) == ["DeclineReason: enum value 'wallet_not_found' removed"]

    envelope_change = copy.deepcopy(committed)
    envelope_change["required"].append("message_id")
    assert breaking_changes(committed, envelope_change) == [
        "envelope.message_id: required now, optional or absent before"
    ]


# --- (c) contracts stands alone --------------------------------------------------------------


def test_contracts_imports_without_the_services() -> None:
    code = (
        "import contracts, contracts.catalogue, sys; "
        "bad=[m for m in sys.modules if m.split('.')[0] in ('shared','services','faststream','sqlalchemy','aiokafka')]; "
        "assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


# --- (d) envelope round trip -----------------------------------------------------------------

_EXAMPLES: dict[Any, Any] = {
    Money: Money(amount_minor=12999, currency="USD"),
    uuid.UUID: uuid.UUID(int=7),
    bool: False,
    int: 1,
}


def _example_value(name: str, annotation: Any, examples: list[Any] | None) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        (inner,) = [a for a in get_args(annotation) if a is not type(None)]
        return _example_value(name, inner, examples)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return next(iter(annotation))
    if annotation is str:
        return examples[0] if examples else f"{name}-example"
    if annotation in _EXAMPLES:
        return _EXAMPLES[annotation]
    raise TypeError(f"no example for {name}: {annotation!r}; teach _example_value about it")


def example(message: type[Message]) -> Message:
    """An instance with every field set (optional ones too), from the fields' examples where they have them."""
    values = {
        name: _example_value(name, field.annotation, field.examples) for name, field in message.model_fields.items()
    }
    return message(**values)


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
    with pytest.raises(ValidationError):
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
@given(st.integers(min_value=0, max_value=10**20), st.sampled_from(sorted(_EXPONENT)))
def test_money_decimal_is_exact(amount_minor: int, currency: str) -> None:
    money = Money(amount_minor=amount_minor, currency=currency)
    assert money.decimal == Decimal(amount_minor).scaleb(-_EXPONENT[currency])
    assert money.decimal * 10 ** _EXPONENT[currency] == amount_minor
    number = str(money).removesuffix(f" {currency}")
    assert Decimal(number.replace(",", "")) == money.decimal
    assert len(number.partition(".")[2]) == _EXPONENT[currency]


@settings(database=None)
@given(st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()))
def test_money_never_accepts_fractional_floats(amount: float) -> None:
    with pytest.raises(ValidationError):
        Money(amount_minor=amount, currency="USD")
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
