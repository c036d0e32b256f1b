"""X9: records are trusted only from their owner. Each principal signs with its own Ed25519 key;
a changed byte, type, record key, key id or key, a missing or unknown signer, or a signer the
catalogue does not let send the type, is refused with its reason before any handler runs."""

from __future__ import annotations

import json
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from contracts import CommandRejected, ConfirmReceipt, CreditWallet, FundWallet, Message, Money, PaymentCaptured
from contracts.topics import (
    DEAD_LETTER,
    DEAD_LETTER_REASON,
    DEAD_LETTER_SOURCE,
    MESSAGE_TYPE_HEADER,
    ORDER_EVENTS,
    PAYMENT_EVENTS,
)
from scripts.cli.model import DeadLetter, DeadLetterId, plan_redrive
from services.account.app import DEFINITION as ACCOUNT
from services.escrow.app import DEFINITION as ESCROW
from services.escrow.settings import EscrowSettings
from services.saga.app import DEFINITION as SAGA
from shared import signing
from shared.clock import ManualClock
from shared.consumer import decode_record, outgoing
from shared.service import Service
from shared.signing import (
    KEY_ID_HEADER,
    PRINCIPALS,
    SIGNATURE_HEADER,
    SIGNER_HEADER,
    TRUST_FILE,
    Keyring,
    SignatureRefused,
    SigningNotConfiguredError,
    TrustStore,
    ensure_keyring,
    load_keyring,
    retire,
    rotate,
)
from tests.support.records import Record, record_of

Headers = tuple[tuple[str, bytes], ...]


def usd(minor: int) -> Money:
    return Money(amount_minor=minor, currency="USD")


@pytest.fixture
def keyring_dir(tmp_path: Path) -> Path:
    return ensure_keyring(tmp_path / "keys" / "signing")


@pytest.fixture
def ring(keyring_dir: Path) -> Keyring:
    return load_keyring(keyring_dir)


def signed(ring: Keyring, principal: str, message: Message) -> Record:
    out = outgoing(
        message, source="test", correlation_id="c", idempotency_key=str(uuid.uuid4()), signer=principal, keyring=ring
    )
    return Record(topic=out.topic, value=out.value, key=out.key, headers=out.headers)


def refusal(trust: TrustStore, record: Record, message_type: str | None = None) -> SignatureRefused:
    kind = message_type or dict(record.headers)[MESSAGE_TYPE_HEADER].decode()
    with pytest.raises(SignatureRefused) as refused:
        trust.check(record.headers, message_type=kind, topic=record.topic, key=record.key, value=record.value or b"")
    return refused.value


def accepted(trust: TrustStore, record: Record) -> str:
    kind = dict(record.headers)[MESSAGE_TYPE_HEADER].decode()
    return trust.check(record.headers, message_type=kind, topic=record.topic, key=record.key, value=record.value or b"")


def replace_header(headers: Headers, name: str, value: bytes) -> Headers:
    return tuple((k, value if k == name else v) for k, v in headers)


FUND = FundWallet(account_id="alice", amount=usd(100))


# ---------------------------------------------------------------------- the keyring


def test_x9_the_keyring_holds_one_private_file_per_principal_and_a_trust_store_readable_by_no_one_else(
    keyring_dir: Path,
) -> None:
    assert set(PRINCIPALS) == {"account", "payment", "escrow", "notification", "saga", "marketplace", "operator"}
    assert stat.S_IMODE(keyring_dir.stat().st_mode) == 0o700
    files = sorted(p.name for p in keyring_dir.iterdir())
    assert files == sorted([*(f"{p}.json" for p in PRINCIPALS), TRUST_FILE])
    for path in keyring_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    trust = json.loads((keyring_dir / TRUST_FILE).read_text())["principals"]
    for principal in PRINCIPALS:
        (private,) = json.loads((keyring_dir / f"{principal}.json").read_text())["keys"]
        assert [k["key_id"] for k in trust[principal]] == [private["key_id"]]
        assert private["private_key"] not in (keyring_dir / TRUST_FILE).read_text()  # only public halves


def test_x9_making_the_keyring_again_keeps_its_keys(keyring_dir: Path) -> None:
    before = {p.name: p.read_bytes() for p in keyring_dir.iterdir()}
    ensure_keyring(keyring_dir)
    assert {p.name: p.read_bytes() for p in keyring_dir.iterdir()} == before


def test_x9_a_process_signs_only_as_the_principals_it_holds(keyring_dir: Path) -> None:
    saga_only = load_keyring(keyring_dir, principals=("saga",))
    assert saga_only.principals == ("saga",)
    with pytest.raises(signing.SigningError, match="cannot sign as 'payment'"):
        saga_only.sign("payment", b"k", "PaymentCaptured", b"{}")
    assert "private" not in repr(saga_only.signer("saga"))


# ---------------------------------------------------------------------- what is refused


def test_x9_a_record_signed_by_an_allowed_producer_is_accepted_as_that_principal(ring: Keyring) -> None:
    assert accepted(ring.trust, signed(ring, "marketplace", FUND)) == "marketplace"
    assert (
        accepted(ring.trust, signed(ring, "payment", CreditWallet(account_id="s", order_id="o", amount=usd(1))))
        == "payment"
    )


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_x9_any_one_byte_changed_in_the_value_is_refused(data: st.DataObject) -> None:
    trust, record = _SHARED_TRUST, _SHARED_RECORD
    value = bytearray(record.value or b"")
    position = data.draw(st.integers(0, len(value) - 1))
    value[position] = (value[position] + data.draw(st.integers(1, 255))) % 256
    changed = Record(topic=record.topic, value=bytes(value), key=record.key, headers=record.headers)
    assert refusal(trust, changed).code == "bad_signature"


@settings(max_examples=300, deadline=None)
@given(
    replaced=st.dictionaries(
        st.sampled_from(signing.SIGNING_HEADERS),
        st.one_of(st.binary(max_size=100), st.sampled_from([b"marketplace", b"saga", b"", b"AAAA"])),
        min_size=1,
    )
)
def test_x9_any_bytes_in_the_signature_headers_get_a_verdict(replaced: dict[str, bytes]) -> None:
    record = _SHARED_RECORD
    headers = tuple((k, replaced.get(k, v)) for k, v in record.headers)
    delivery = decode_record(_with_headers(record, headers), ACCOUNT.handlers, _SHARED_TRUST)
    assert delivery is not None
    if delivery.poison is None:  # only the headers as signed pass
        assert headers == record.headers
    else:
        assert delivery.poison.startswith("signature ")


def test_x9_a_swapped_type_header_is_refused(ring: Keyring) -> None:
    record = signed(ring, "marketplace", FUND)
    swapped = Record(
        topic=record.topic,
        value=record.value,
        key=record.key,
        headers=replace_header(record.headers, MESSAGE_TYPE_HEADER, b"CreditWallet"),
    )
    assert refusal(ring.trust, swapped, "FundWallet").code == "bad_signature"


def test_x9_a_changed_record_key_is_refused(ring: Keyring) -> None:
    record = signed(ring, "marketplace", FUND)
    moved = Record(topic=record.topic, value=record.value, key=b"mallory", headers=record.headers)
    assert refusal(ring.trust, moved).code == "bad_signature"


def test_x9_a_swapped_key_id_is_refused(keyring_dir: Path) -> None:
    old = load_keyring(keyring_dir)
    new_id = rotate(keyring_dir, "marketplace")
    ring = load_keyring(keyring_dir)  # lists both keys; signs with the new one
    assert ring.signer("marketplace").key_id == new_id
    record = signed(old, "marketplace", FUND)
    other_valid_key = replace_header(record.headers, KEY_ID_HEADER, new_id.encode())
    assert refusal(ring.trust, _with_headers(record, other_valid_key)).code == "bad_signature"
    no_such_key = replace_header(record.headers, KEY_ID_HEADER, b"deadbeef")
    refused = refusal(ring.trust, _with_headers(record, no_such_key))
    assert refused.code == "unknown_key"
    assert "'marketplace' has no valid key 'deadbeef'" in refused.reason


def test_x9_another_principals_key_is_refused(ring: Keyring) -> None:
    """The payment principal's name on a record that escrow's key signed: neither its key id
    (escrow's, not payment's) nor, with payment's key id, its signature passes."""
    record = signed(ring, "escrow", PaymentCaptured(order_id="o-1", buyer_id="b", amount=usd(7000)))
    claimed = replace_header(record.headers, SIGNER_HEADER, b"payment")
    assert refusal(ring.trust, _with_headers(record, claimed)).code == "unknown_key"
    payment_id = ring.signer("payment").key_id.encode()
    both = replace_header(claimed, KEY_ID_HEADER, payment_id)
    assert refusal(ring.trust, _with_headers(record, both)).code == "bad_signature"


def test_x9_a_key_from_another_keyring_is_refused(ring: Keyring, tmp_path: Path) -> None:
    foreign = load_keyring(ensure_keyring(tmp_path / "elsewhere"))
    refused = refusal(
        ring.trust, signed(foreign, "payment", PaymentCaptured(order_id="o", buyer_id="b", amount=usd(1)))
    )
    assert refused.code == "unknown_key"


def test_x9_unsigned_malformed_and_unknown_signers_are_refused(ring: Keyring) -> None:
    record = signed(ring, "marketplace", FUND)
    bare = tuple((k, v) for k, v in record.headers if k not in signing.SIGNING_HEADERS)
    assert refusal(ring.trust, _with_headers(record, bare)).code == "unsigned"
    no_signature = tuple((k, v) for k, v in record.headers if k != SIGNATURE_HEADER)
    assert "no tg-signature header" in refusal(ring.trust, _with_headers(record, no_signature)).reason
    stranger = replace_header(record.headers, SIGNER_HEADER, b"mallory")
    refused = refusal(ring.trust, _with_headers(record, stranger))
    assert (refused.code, "'mallory', which is no principal" in refused.reason) == ("unknown_signer", True)
    garbled = replace_header(record.headers, SIGNATURE_HEADER, b"\xff not base64")
    assert refusal(ring.trust, _with_headers(record, garbled)).code == "malformed"
    short = replace_header(record.headers, SIGNATURE_HEADER, b"c2hvcnQ")
    assert "is 5 bytes, not 64" in refusal(ring.trust, _with_headers(record, short)).reason
    twice = (*record.headers, (SIGNER_HEADER, b"marketplace"))
    assert "appears 2 times" in refusal(ring.trust, _with_headers(record, twice)).reason


def test_x9_a_type_the_signer_may_not_send_is_refused(ring: Keyring) -> None:
    """The issue's three forgeries, with valid signatures of the wrong principal."""
    captured = signed(ring, "marketplace", PaymentCaptured(order_id="o-1", buyer_id="b", amount=usd(7000)))
    refused = refusal(ring.trust, captured)
    assert refused.code == "not_allowed"
    assert "signed by 'marketplace', who may not send PaymentCaptured" in refused.reason
    assert "(only payment)" in refused.reason
    confirmed = refusal(ring.trust, signed(ring, "escrow", ConfirmReceipt(order_id="o-1", buyer_id="b")))
    assert (confirmed.code, "(only marketplace)" in confirmed.reason) == ("not_allowed", True)
    credit = CreditWallet(account_id="fresh", order_id="none", amount=usd(100_000_000))
    assert refusal(ring.trust, signed(ring, "marketplace", credit)).code == "not_allowed"


def test_x9_a_rejection_is_trusted_only_from_a_service_on_its_own_events_topic(ring: Keyring) -> None:
    rejected = CommandRejected(
        subject_id="o-1", rejected_message_id=uuid.uuid4(), rejected_type="Checkout", code="x", reason="x: no"
    )

    def on(topic_name: str, principal: str) -> Record:
        topic = ORDER_EVENTS if topic_name == ORDER_EVENTS.name else PAYMENT_EVENTS
        out = outgoing(
            rejected, source="t", correlation_id="c", idempotency_key="k", topic=topic, signer=principal, keyring=ring
        )
        return Record(topic=out.topic, value=out.value, key=out.key, headers=out.headers)

    assert accepted(ring.trust, on(ORDER_EVENTS.name, "saga")) == "saga"
    assert refusal(ring.trust, on(PAYMENT_EVENTS.name, "saga")).code == "not_allowed"  # the saga's are on order events
    assert refusal(ring.trust, on(ORDER_EVENTS.name, "marketplace")).code == "not_allowed"


def test_x9_no_reason_names_a_key(ring: Keyring, keyring_dir: Path) -> None:
    record = signed(ring, "marketplace", PaymentCaptured(order_id="o-1", buyer_id="b", amount=usd(1)))
    secrets = [
        k["private_key"] for p in PRINCIPALS for k in json.loads((keyring_dir / f"{p}.json").read_text())["keys"]
    ]
    changed = Record(topic=record.topic, value=(record.value or b"") + b" ", key=record.key, headers=record.headers)
    for reason in (refusal(ring.trust, record).reason, refusal(ring.trust, changed, "PaymentCaptured").reason):
        assert not any(secret in reason for secret in secrets)
        assert dict(record.headers)[SIGNATURE_HEADER].decode() not in reason


# ---------------------------------------------------------------------- rotation


def test_x9_rotation_an_old_signature_verifies_while_its_key_is_listed_and_not_after(keyring_dir: Path) -> None:
    before = load_keyring(keyring_dir)
    old_id = before.signer("marketplace").key_id
    old_record = signed(before, "marketplace", FUND)

    new_id = rotate(keyring_dir, "marketplace")
    during = load_keyring(keyring_dir)
    assert during.trust.key_ids("marketplace") == (new_id, old_id)
    assert accepted(during.trust, old_record) == "marketplace"  # still listed: still valid
    new_record = signed(during, "marketplace", FUND)
    assert dict(new_record.headers)[KEY_ID_HEADER] == new_id.encode()
    assert accepted(during.trust, new_record) == "marketplace"

    retire(keyring_dir, "marketplace", old_id)
    after = load_keyring(keyring_dir)
    assert refusal(after.trust, old_record).code == "unknown_key"
    assert accepted(after.trust, new_record) == "marketplace"
    with pytest.raises(signing.SigningError, match="only key"):
        retire(keyring_dir, "marketplace", new_id)


def test_x9_a_running_consumer_learns_a_rotated_key_by_reading_the_store_again(keyring_dir: Path) -> None:
    ring = load_keyring(keyring_dir)
    trust = TrustStore.load(keyring_dir / TRUST_FILE, reload_every=0)
    old_record = signed(ring, "marketplace", FUND)
    assert accepted(trust, old_record) == "marketplace"
    new_id = rotate(keyring_dir, "marketplace")
    newer = signed(load_keyring(keyring_dir), "marketplace", FUND)
    assert accepted(trust, newer) == "marketplace"  # an unknown id of a known principal: read again
    retire(keyring_dir, "marketplace", ring.signer("marketplace").key_id)
    fresh = TrustStore.load(keyring_dir / TRUST_FILE)
    assert fresh.key_ids("marketplace") == (new_id,)
    assert refusal(fresh, old_record).code == "unknown_key"


# ---------------------------------------------------------------------- in the consumer


def test_x9_the_consumer_dead_letters_a_forgery_before_any_handler_and_counts_it_by_reason(ring: Keyring) -> None:
    forged = signed(ring, "escrow", ConfirmReceipt(order_id="o-forged", buyer_id="b"))

    def counted() -> float:
        return REGISTRY.get_sample_value("tradeguard_signatures_refused_total", {"reason": "not_allowed"}) or 0.0

    before = counted()
    delivery = decode_record(forged, SAGA.handlers, ring.trust)
    assert delivery is not None
    assert delivery.envelope is None  # poison: no handler sees it
    assert delivery.poison == (
        "signature not_allowed: signed by 'escrow', who may not send ConfirmReceipt on "
        "tradeguard.order.commands (only marketplace)"
    )
    assert counted() == before + 1
    genuine = decode_record(
        signed(ring, "marketplace", ConfirmReceipt(order_id="o", buyer_id="b")), SAGA.handlers, ring.trust
    )
    assert genuine is not None
    assert genuine.poison is None


def test_x9_records_a_service_does_not_handle_are_not_verified(ring: Keyring) -> None:
    unsigned = Record(
        topic=FUND.topic.name,
        value=signed(ring, "marketplace", FUND).value,
        key=b"alice",
        headers=((MESSAGE_TYPE_HEADER, b"FundWallet"),),
    )
    assert decode_record(unsigned, SAGA.handlers, ring.trust) is None  # skipped unread, as before
    assert decode_record(unsigned, ACCOUNT.handlers, ring.trust).poison.startswith("signature unsigned")  # type: ignore[union-attr]


def test_x9_every_record_the_test_helpers_make_is_signed_by_its_owner() -> None:
    record = record_of(FUND)
    assert dict(record.headers)[SIGNER_HEADER] == b"marketplace"
    delivery = decode_record(record, ACCOUNT.handlers)
    assert delivery is not None
    assert delivery.poison is None


def test_x9_a_redriven_dead_letter_keeps_its_original_signature_and_is_trusted(ring: Keyring) -> None:
    original = signed(ring, "marketplace", FUND)
    letter_headers = (
        *original.headers,
        (DEAD_LETTER_REASON, b"handler failed 3 times: OperationalError"),
        (DEAD_LETTER_SOURCE, f"{original.topic}/2/41".encode()),
    )
    letter = DeadLetter(DeadLetterId(0, 7), 0, original.key, original.value, letter_headers)
    redrive = plan_redrive(
        DeadLetterId(0, 7), letter, {original.topic: frozenset({2}), DEAD_LETTER.name: frozenset({0})}
    )
    again = Record(topic=redrive.topic, value=redrive.value, key=redrive.key, headers=redrive.headers)  # type: ignore[arg-type]
    delivery = decode_record(again, ACCOUNT.handlers, ring.trust)
    assert delivery is not None
    assert delivery.poison is None
    assert delivery.envelope is not None


# ---------------------------------------------------------------------- signing is not optional


@pytest.fixture
def no_keyring(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(signing.SIGNING_DIR_VARIABLE, raising=False)
    signing.install(None)
    yield
    monkeypatch.undo()
    signing.install(None)  # the run's keyring again, from the environment


def test_x9_without_a_keyring_nothing_can_be_signed(no_keyring: None) -> None:
    with pytest.raises(SigningNotConfiguredError, match="TRADEGUARD_SIGNING_DIR is not set"):
        outgoing(FUND, source="marketplace", correlation_id="c", idempotency_key="k")


def test_x9_a_service_without_a_keyring_fails_at_start_with_a_clear_message(
    no_keyring: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = EscrowSettings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'escrow.db'}")
    with pytest.raises(SigningNotConfiguredError, match="every record is signed"):
        Service(ESCROW, settings, ManualClock())
    monkeypatch.setenv(signing.SIGNING_DIR_VARIABLE, str(tmp_path / "empty"))
    with pytest.raises(SigningNotConfiguredError, match="no signing keyring at"):
        Service(ESCROW, settings, ManualClock())
    assert not (tmp_path / "escrow.db").exists()  # it stopped before touching anything


def _with_headers(record: Record, headers: Headers) -> Record:
    return Record(topic=record.topic, value=record.value, key=record.key, headers=headers)


def _shared() -> tuple[TrustStore, Record]:
    """One keyring for the property test's examples (hypothesis dislikes function fixtures)."""
    ring = signing.process_keyring()
    out = outgoing(FUND, source="marketplace", correlation_id="c", idempotency_key="k")
    assert ring.principals
    return ring.trust, Record(topic=out.topic, value=out.value, key=out.key, headers=out.headers)


_SHARED_TRUST, _SHARED_RECORD = _shared()
