"""X9: records are trusted only from their owner. Each record carries one HMAC-SHA256 per consumer
of its topic, under a key only its producer and that consumer know; a changed byte, type, record
key or key id, a MAC made for another consumer or with another producer's key, a missing or
unknown signer, or a signer the catalogue does not let send the type, is refused with its reason
before any handler runs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shutil
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from contracts import (
    Balance,
    CommandRejected,
    ConfirmReceipt,
    CreditWallet,
    FundWallet,
    Message,
    Money,
    PaymentCaptured,
    WalletFunded,
)
from contracts.topics import (
    ACCOUNT_EVENTS,
    DEAD_LETTER,
    DEAD_LETTER_REASON,
    DEAD_LETTER_SOURCE,
    MAC_HEADER_PREFIX,
    MESSAGE_TYPE_HEADER,
    ORDER_EVENTS,
    PAYMENT_EVENTS,
    SIGNER_HEADER,
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
    PRINCIPALS,
    RECEIVERS,
    Keyring,
    SignatureRefused,
    SigningNotConfiguredError,
    Verifier,
    ensure_keyring,
    load_keyring,
    mac_header,
    pair_key,
    recipients,
    retire,
    rotate,
    signed_bytes,
    signing_headers,
)
from tests.support.records import Record, record_of

Headers = tuple[tuple[str, bytes], ...]
ACCOUNT_MAC = mac_header("account")


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


def refusal(verifier: Verifier, record: Record, message_type: str | None = None) -> SignatureRefused:
    kind = message_type or dict(record.headers)[MESSAGE_TYPE_HEADER].decode()
    with pytest.raises(SignatureRefused) as refused:
        verifier.check(record.headers, message_type=kind, topic=record.topic, key=record.key, value=record.value or b"")
    return refused.value


def accepted(verifier: Verifier, record: Record) -> str:
    kind = dict(record.headers)[MESSAGE_TYPE_HEADER].decode()
    return verifier.check(
        record.headers, message_type=kind, topic=record.topic, key=record.key, value=record.value or b""
    )


def replace_header(headers: Headers, name: str, value: bytes) -> Headers:
    return tuple((k, value if k == name else v) for k, v in headers)


def file_of(directory: Path, principal: str) -> dict[str, Any]:
    content: dict[str, Any] = json.loads((directory / f"{principal}.json").read_text())
    return content


def every_key(directory: Path) -> list[str]:
    """Every secret and send key the folder holds, as its files write them."""
    found = []
    for principal in PRINCIPALS:
        held = file_of(directory, principal)
        found += [k["secret"] for k in held["receive_secrets"]]
        found += [k["key"] for keys in held["send_keys"].values() for k in keys]
    return found


def mac_of(key: bytes, signer: str, key_id: str, record: Record) -> bytes:
    """A ``tg-mac-*`` value made with ``key`` as the module documents it, independently of it."""
    kind = dict(record.headers)[MESSAGE_TYPE_HEADER]
    mac = hmac.new(key, signed_bytes(signer, key_id, record.key, kind, record.value or b""), hashlib.sha256)
    return f"{key_id}:".encode() + base64.urlsafe_b64encode(mac.digest()).rstrip(b"=")


FUND = FundWallet(account_id="alice", amount=usd(100))
FUNDED = WalletFunded(account_id="alice", amount=usd(100), balance=Balance(amount_minor=100, currency="USD"))


# ---------------------------------------------------------------------- the keyring


def test_x9_the_keyring_holds_one_file_per_principal_readable_by_no_one_else(keyring_dir: Path) -> None:
    assert set(PRINCIPALS) == {"account", "payment", "escrow", "notification", "saga", "marketplace", "operator"}
    assert set(RECEIVERS) == set(PRINCIPALS) - {"operator"}  # the operators' tools read no topic
    assert stat.S_IMODE(keyring_dir.stat().st_mode) == 0o700
    files = sorted(p.name for p in keyring_dir.iterdir())
    assert files == sorted([*(f"{p}.json" for p in PRINCIPALS), ".lock"])  # no shared trust file
    for path in keyring_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    secret_of = {
        c: base64.urlsafe_b64decode(file_of(keyring_dir, c)["receive_secrets"][0]["secret"] + "=") for c in RECEIVERS
    }
    for principal in PRINCIPALS:
        held = file_of(keyring_dir, principal)
        assert held["principal"] == principal
        assert len(held["receive_secrets"]) == (principal in RECEIVERS)
        assert set(held["send_keys"]) == set(RECEIVERS)
        for consumer, (send,) in held["send_keys"].items():  # K_PC = HMAC(S_C, domain + P)
            assert send["key_id"] == file_of(keyring_dir, consumer)["receive_secrets"][0]["key_id"]
            assert base64.urlsafe_b64decode(send["key"] + "=") == pair_key(secret_of[consumer], principal)
        others = [p for p in RECEIVERS if p != principal]  # no file holds another principal's secret
        text = (keyring_dir / f"{principal}.json").read_text()
        assert not any(file_of(keyring_dir, p)["receive_secrets"][0]["secret"] in text for p in others)


def test_x9_making_the_keyring_again_keeps_its_keys(keyring_dir: Path) -> None:
    before = {p.name: p.read_bytes() for p in keyring_dir.iterdir()}
    ensure_keyring(keyring_dir)
    assert {p.name: p.read_bytes() for p in keyring_dir.iterdir()} == before


def test_x9_an_ed25519_keyring_of_before_is_remade(tmp_path: Path) -> None:
    old = tmp_path / "signing"
    old.mkdir(mode=0o700)
    (old / "saga.json").write_text(json.dumps({"keys": [{"key_id": "0ld", "private_key": "AAAA"}]}))
    (old / "trust.json").write_text(json.dumps({"principals": {}}))
    ensure_keyring(old)
    assert not (old / "trust.json").exists()
    assert file_of(old, "saga")["receive_secrets"][0]["key_id"] != "0ld"
    ring = load_keyring(old)
    assert accepted(ring.verifier("saga"), signed(ring, "marketplace", ConfirmReceipt(order_id="o", buyer_id="b")))


def test_x9_a_process_signs_and_verifies_only_as_the_principals_it_holds(keyring_dir: Path) -> None:
    saga_only = load_keyring(keyring_dir, principals=("saga",))
    assert saga_only.principals == ("saga",)
    with pytest.raises(signing.SigningError, match="cannot sign as 'payment'"):
        saga_only.sign("payment", PaymentCaptured.topic.name, b"k", "PaymentCaptured", b"{}")
    with pytest.raises(signing.SigningError, match="cannot verify as 'payment'"):
        saga_only.verifier("payment")
    with pytest.raises(signing.SigningError, match="'operator' reads no topic"):
        load_keyring(keyring_dir).verifier("operator")
    shown = " ".join(repr(x) for x in (saga_only, saga_only.signer("saga"), saga_only.verifier("saga")))
    assert not any(key in shown for key in every_key(keyring_dir))
    assert "b'" not in shown  # no bytes at all


def test_x9_a_process_mounted_only_its_own_file_signs_and_verifies_as_itself(keyring_dir: Path, tmp_path: Path) -> None:
    mounted = tmp_path / "mounted"
    mounted.mkdir(mode=0o700)
    shutil.copy(keyring_dir / "saga.json", mounted / "saga.json")
    saga = load_keyring(mounted)
    everyone = load_keyring(keyring_dir)
    assert saga.principals == ("saga",)
    captured = PaymentCaptured(order_id="o", buyer_id="b", amount=usd(1))
    assert accepted(saga.verifier("saga"), signed(everyone, "payment", captured)) == "payment"
    hold = signed(
        saga, "saga", ConfirmReceipt(order_id="o", buyer_id="b")
    )  # a type it may not send: MACed all the same
    assert refusal(everyone.verifier("saga"), hold).code == "not_allowed"


# ---------------------------------------------------------------------- what is accepted


def test_x9_a_record_signed_by_an_allowed_producer_is_accepted_as_that_principal(ring: Keyring) -> None:
    assert accepted(ring.verifier("account"), signed(ring, "marketplace", FUND)) == "marketplace"
    credit = CreditWallet(account_id="s", order_id="o", amount=usd(1))
    assert accepted(ring.verifier("account"), signed(ring, "payment", credit)) == "payment"


def test_x9_a_record_carries_one_mac_per_consumer_of_its_topic_and_each_verifies_only_its_own(ring: Keyring) -> None:
    record = signed(ring, "account", FUNDED)
    readers = recipients(ACCOUNT_EVENTS.name)
    assert readers == ("marketplace", "notification", "payment")
    assert [k for k, _ in record.headers] == [MESSAGE_TYPE_HEADER, SIGNER_HEADER, *map(mac_header, readers)]
    assert [k for k, _ in record.headers][1:] == list(signing_headers(ACCOUNT_EVENTS.name))
    for reader in readers:
        assert accepted(ring.verifier(reader), record) == "account"
    assert refusal(ring.verifier("saga"), record).code == "unsigned"  # not one of its readers: no MAC for it


def test_x9_a_mac_is_hmac_sha256_under_the_pair_key_over_the_signed_bytes(keyring_dir: Path, ring: Keyring) -> None:
    record = signed(ring, "marketplace", FUND)
    (secret,) = file_of(keyring_dir, "account")["receive_secrets"]
    key = pair_key(base64.urlsafe_b64decode(secret["secret"] + "="), "marketplace")
    assert dict(record.headers)[ACCOUNT_MAC] == mac_of(key, "marketplace", secret["key_id"], record)


def test_x9_a_dead_letter_is_signed_for_no_one() -> None:
    assert recipients(DEAD_LETTER.name) == ()
    assert signing_headers(DEAD_LETTER.name) == (SIGNER_HEADER,)
    assert recipients("a.topic.the.catalogue.does.not.name") == ()


# ---------------------------------------------------------------------- what is refused


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_x9_any_one_byte_changed_in_the_value_is_refused(data: st.DataObject) -> None:
    verifier, record = _SHARED_VERIFIER, _SHARED_RECORD
    value = bytearray(record.value or b"")
    position = data.draw(st.integers(0, len(value) - 1))
    value[position] = (value[position] + data.draw(st.integers(1, 255))) % 256
    changed = Record(topic=record.topic, value=bytes(value), key=record.key, headers=record.headers)
    assert refusal(verifier, changed).code == "bad_signature"


@settings(max_examples=300, deadline=None)
@given(
    replaced=st.dictionaries(
        st.sampled_from(signing_headers(FUND.topic.name)),
        st.one_of(st.binary(max_size=100), st.sampled_from([b"marketplace", b"saga", b"", b"AAAA", b"x:AAAA"])),
        min_size=1,
    )
)
def test_x9_any_bytes_in_the_signing_headers_get_a_verdict(replaced: dict[str, bytes]) -> None:
    record = _SHARED_RECORD
    headers = tuple((k, replaced.get(k, v)) for k, v in record.headers)
    delivery = decode_record(_with_headers(record, headers), ACCOUNT.handlers, _SHARED_VERIFIER)
    assert delivery is not None
    if delivery.poison is None:  # only the headers as signed pass
        assert headers == record.headers
    else:
        assert delivery.poison.startswith("signature ")


def test_x9_a_swapped_type_header_is_refused(ring: Keyring) -> None:
    record = signed(ring, "marketplace", FUND)
    swapped = _with_headers(record, replace_header(record.headers, MESSAGE_TYPE_HEADER, b"CreditWallet"))
    assert refusal(ring.verifier("account"), swapped, "FundWallet").code == "bad_signature"


def test_x9_a_changed_record_key_is_refused(ring: Keyring) -> None:
    record = signed(ring, "marketplace", FUND)
    moved = Record(topic=record.topic, value=record.value, key=b"mallory", headers=record.headers)
    assert refusal(ring.verifier("account"), moved).code == "bad_signature"


def test_x9_a_swapped_key_id_is_refused(keyring_dir: Path) -> None:
    old = load_keyring(keyring_dir)
    new_id = rotate(keyring_dir, "account")
    ring = load_keyring(keyring_dir)  # accepts both keys; signs with the new one
    assert ring.signer("marketplace").key_id("account") == new_id
    record = signed(old, "marketplace", FUND)
    old_id, mac = dict(record.headers)[ACCOUNT_MAC].split(b":")
    other_valid_key = replace_header(record.headers, ACCOUNT_MAC, new_id.encode() + b":" + mac)
    assert refusal(ring.verifier("account"), _with_headers(record, other_valid_key)).code == "bad_signature"
    no_such_key = replace_header(record.headers, ACCOUNT_MAC, b"deadbeef:" + mac)
    refused = refusal(ring.verifier("account"), _with_headers(record, no_such_key))
    assert refused.code == "unknown_key"
    assert "'account' has no valid key 'deadbeef'" in refused.reason
    assert old_id != new_id.encode()


def test_x9_a_mac_made_for_another_consumer_is_refused(ring: Keyring) -> None:
    """Each reader of a topic checks the MAC made for it: another reader's, moved into its
    header, does not pass (nor one made for a reader of another topic)."""
    record = signed(ring, "account", FUNDED)
    theirs = dict(record.headers)[mac_header("marketplace")].split(b":")[1]
    payment_id = ring.verifier("payment").key_ids[0].encode()  # the MAC under a key id payment knows
    moved = replace_header(record.headers, mac_header("payment"), payment_id + b":" + theirs)
    assert refusal(ring.verifier("payment"), _with_headers(record, moved)).code == "bad_signature"
    confirm = signed(ring, "marketplace", ConfirmReceipt(order_id="o", buyer_id="b"))  # for the saga only
    sagas = dict(confirm.headers)[mac_header("saga")].split(b":")[1]
    account_id = ring.verifier("account").key_ids[0].encode()
    renamed = (*confirm.headers, (ACCOUNT_MAC, account_id + b":" + sagas))
    assert refusal(ring.verifier("account"), _with_headers(confirm, renamed), "ConfirmReceipt").code == "bad_signature"


def test_x9_a_mac_made_with_another_producers_pair_key_is_refused(ring: Keyring, keyring_dir: Path) -> None:
    """Escrow holds its own key for the saga: with it, it cannot make a record that is payment's."""
    captured = PaymentCaptured(order_id="o-1", buyer_id="b", amount=usd(7000))
    record = signed(ring, "escrow", captured)
    claimed = replace_header(record.headers, SIGNER_HEADER, b"payment")
    assert refusal(ring.verifier("saga"), _with_headers(record, claimed)).code == "bad_signature"
    (escrows,) = file_of(keyring_dir, "escrow")["send_keys"]["saga"]
    escrow_key = base64.urlsafe_b64decode(escrows["key"] + "=")
    made = replace_header(claimed, mac_header("saga"), mac_of(escrow_key, "payment", escrows["key_id"], record))
    assert refusal(ring.verifier("saga"), _with_headers(record, made)).code == "bad_signature"


def test_x9_a_consumer_cannot_forge_a_producers_record_to_another_consumer(ring: Keyring, keyring_dir: Path) -> None:
    """Everything the saga's file holds (its secret, its send keys, the pair keys it derives)
    makes no MAC the notification service takes as payment's."""
    record = signed(ring, "payment", PaymentCaptured(order_id="o-1", buyer_id="b", amount=usd(7000)))
    saga = file_of(keyring_dir, "saga")
    (secret,) = saga["receive_secrets"]
    held = [base64.urlsafe_b64decode(secret["secret"] + "=")]
    held += [base64.urlsafe_b64decode(k["key"] + "=") for keys in saga["send_keys"].values() for k in keys]
    held += [pair_key(held[0], producer) for producer in PRINCIPALS]
    key_id = dict(record.headers)[mac_header("notification")].split(b":")[0].decode()
    for key in held:
        forged = replace_header(record.headers, mac_header("notification"), mac_of(key, "payment", key_id, record))
        assert refusal(ring.verifier("notification"), _with_headers(record, forged)).code == "bad_signature"
    assert accepted(ring.verifier("notification"), record) == "payment"


def test_x9_a_key_from_another_keyring_is_refused(ring: Keyring, tmp_path: Path) -> None:
    foreign = load_keyring(ensure_keyring(tmp_path / "elsewhere"))
    captured = signed(foreign, "payment", PaymentCaptured(order_id="o", buyer_id="b", amount=usd(1)))
    assert refusal(ring.verifier("saga"), captured).code == "unknown_key"


def test_x9_unsigned_malformed_and_unknown_signers_are_refused(ring: Keyring) -> None:
    verifier = ring.verifier("account")
    record = signed(ring, "marketplace", FUND)

    def reason(headers: Headers) -> tuple[str, str]:
        refused = refusal(verifier, _with_headers(record, headers))
        return refused.code, refused.reason

    bare = tuple((k, v) for k, v in record.headers if k not in signing_headers(record.topic))
    assert reason(bare)[0] == "unsigned"
    no_signer = tuple((k, v) for k, v in record.headers if k != SIGNER_HEADER)
    assert reason(no_signer) == ("unsigned", "signature unsigned: the record has no tg-signer header")
    no_mac = tuple((k, v) for k, v in record.headers if k != ACCOUNT_MAC)
    assert reason(no_mac) == (
        "unsigned",
        "signature unsigned: the record has no tg-mac-account header: no MAC for 'account'",
    )
    code, text = reason(replace_header(record.headers, SIGNER_HEADER, b"mallory"))
    assert (code, "'mallory', which is no principal" in text) == ("unknown_signer", True)
    assert reason(replace_header(record.headers, ACCOUNT_MAC, b"\xff:not base64"))[0] == "malformed"
    assert reason(replace_header(record.headers, SIGNER_HEADER, b"\xff"))[0] == "malformed"
    key_id = verifier.key_ids[0].encode()
    assert "is 5 bytes, not 32" in reason(replace_header(record.headers, ACCOUNT_MAC, key_id + b":c2hvcnQ"))[1]
    assert "is not base64" in reason(replace_header(record.headers, ACCOUNT_MAC, key_id + b":A"))[1]
    assert "is not <key id>:<MAC>" in reason(replace_header(record.headers, ACCOUNT_MAC, b"A" * 43))[1]
    assert "appears 2 times" in reason((*record.headers, (SIGNER_HEADER, b"marketplace")))[1]
    assert "appears 2 times" in reason((*record.headers, (ACCOUNT_MAC, dict(record.headers)[ACCOUNT_MAC])))[1]


def test_x9_a_type_the_signer_may_not_send_is_refused(ring: Keyring) -> None:
    """The issue's three forgeries, with valid MACs of the wrong principal."""
    captured = signed(ring, "marketplace", PaymentCaptured(order_id="o-1", buyer_id="b", amount=usd(7000)))
    refused = refusal(ring.verifier("saga"), captured)
    assert refused.code == "not_allowed"
    assert "signed by 'marketplace', who may not send PaymentCaptured" in refused.reason
    assert "(only payment)" in refused.reason
    confirmed = refusal(ring.verifier("saga"), signed(ring, "escrow", ConfirmReceipt(order_id="o-1", buyer_id="b")))
    assert (confirmed.code, "(only marketplace)" in confirmed.reason) == ("not_allowed", True)
    credit = CreditWallet(account_id="fresh", order_id="none", amount=usd(100_000_000))
    assert refusal(ring.verifier("account"), signed(ring, "marketplace", credit)).code == "not_allowed"


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

    notification = ring.verifier("notification")  # reads both topics
    assert accepted(notification, on(ORDER_EVENTS.name, "saga")) == "saga"
    assert (
        refusal(notification, on(PAYMENT_EVENTS.name, "saga")).code == "not_allowed"
    )  # the saga's are on order events
    assert refusal(notification, on(ORDER_EVENTS.name, "marketplace")).code == "not_allowed"


def test_x9_no_reason_names_a_key(ring: Keyring, keyring_dir: Path) -> None:
    record = signed(ring, "marketplace", PaymentCaptured(order_id="o-1", buyer_id="b", amount=usd(1)))
    changed = Record(topic=record.topic, value=(record.value or b"") + b" ", key=record.key, headers=record.headers)
    verifier = ring.verifier("saga")
    macs = [v.decode().split(":")[1] for k, v in record.headers if k.startswith(MAC_HEADER_PREFIX)]
    for reason in (refusal(verifier, record).reason, refusal(verifier, changed, "PaymentCaptured").reason):
        assert not any(key in reason for key in every_key(keyring_dir))
        assert not any(mac in reason for mac in macs)


# ---------------------------------------------------------------------- rotation


def test_x9_rotation_both_keys_verify_until_the_old_one_is_retired(keyring_dir: Path) -> None:
    before = load_keyring(keyring_dir)
    old_id = before.verifier("account").key_ids[0]
    old_record = signed(before, "marketplace", FUND)

    new_id = rotate(keyring_dir, "account")
    assert [k["key_id"] for k in file_of(keyring_dir, "marketplace")["send_keys"]["account"]] == [new_id, old_id]
    during = load_keyring(keyring_dir)
    assert during.verifier("account").key_ids == (new_id, old_id)
    assert accepted(during.verifier("account"), old_record) == "marketplace"  # still listed: still valid
    new_record = signed(during, "marketplace", FUND)
    assert dict(new_record.headers)[ACCOUNT_MAC].startswith(new_id.encode() + b":")
    assert accepted(during.verifier("account"), new_record) == "marketplace"

    retire(keyring_dir, "account", old_id)
    assert all([k["key_id"] for k in file_of(keyring_dir, p)["send_keys"]["account"]] == [new_id] for p in PRINCIPALS)
    after = load_keyring(keyring_dir)
    assert refusal(after.verifier("account"), old_record).code == "unknown_key"
    assert accepted(after.verifier("account"), new_record) == "marketplace"
    with pytest.raises(signing.SigningError, match="only key"):
        retire(keyring_dir, "account", new_id)
    with pytest.raises(signing.SigningError, match="has no key 'nope'"):
        retire(keyring_dir, "account", "nope")
    with pytest.raises(signing.SigningError, match="'operator' reads no topic"):
        rotate(keyring_dir, "operator")
    assert stat.S_IMODE(keyring_dir.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in keyring_dir.iterdir()} == {0o600}  # rewritten files too


def test_x9_a_running_consumer_learns_a_rotated_key_by_reading_its_file_again(keyring_dir: Path) -> None:
    ring = load_keyring(keyring_dir)
    running = Verifier.load(keyring_dir, "account", reload_every=0)
    old_record = signed(ring, "marketplace", FUND)
    assert accepted(running, old_record) == "marketplace"
    old_id = running.key_ids[0]
    rotate(keyring_dir, "account")
    newer = signed(load_keyring(keyring_dir), "marketplace", FUND)
    assert accepted(running, newer) == "marketplace"  # an unknown id: read again
    retire(keyring_dir, "account", old_id)
    assert accepted(running, old_record) == "marketplace"  # known, so nothing to re-read yet
    stranger = signed(load_keyring(ensure_keyring(keyring_dir.parent / "other")), "marketplace", FUND)
    assert refusal(running, stranger).code == "unknown_key"  # read again: the old key is gone
    assert refusal(running, old_record).code == "unknown_key"


def test_x9_a_consumer_reads_its_file_again_at_most_so_often(keyring_dir: Path) -> None:
    running = Verifier.load(keyring_dir, "account", reload_every=3600)
    rotate(keyring_dir, "account")
    newer = signed(load_keyring(keyring_dir), "marketplace", FUND)
    assert refusal(running, newer).code == "unknown_key"  # a flood of unknown ids costs one read an hour here


def test_x9_the_command_line_shows_key_ids_and_never_a_key(
    keyring_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert signing.main(["--dir", str(keyring_dir), "rotate", "saga"]) == 0
    out = capsys.readouterr().out
    (saga_line,) = [line for line in out.splitlines() if line.startswith("saga: ") and "new key" not in line]
    assert saga_line.split()[1:] == [k["key_id"] for k in file_of(keyring_dir, "saga")["receive_secrets"]]
    assert signing.main(["--dir", str(keyring_dir), "show"]) == 0
    out += capsys.readouterr().out
    assert not any(key in out for key in every_key(keyring_dir))
    assert signing.main(["--dir", str(keyring_dir), "retire", "saga", "nope"]) == 1
    assert "'saga' has no key 'nope'" in capsys.readouterr().err


# ---------------------------------------------------------------------- in the consumer


def test_x9_the_consumer_dead_letters_a_forgery_before_any_handler_and_counts_it_by_reason(ring: Keyring) -> None:
    forged = signed(ring, "escrow", ConfirmReceipt(order_id="o-forged", buyer_id="b"))

    def counted() -> float:
        return REGISTRY.get_sample_value("tradeguard_signatures_refused_total", {"reason": "not_allowed"}) or 0.0

    before = counted()
    delivery = decode_record(forged, SAGA.handlers, ring.verifier("saga"))
    assert delivery is not None
    assert delivery.envelope is None  # poison: no handler sees it
    assert delivery.poison == (
        "signature not_allowed: signed by 'escrow', who may not send ConfirmReceipt on "
        "tradeguard.order.commands (only marketplace)"
    )
    assert counted() == before + 1
    genuine = decode_record(
        signed(ring, "marketplace", ConfirmReceipt(order_id="o", buyer_id="b")), SAGA.handlers, ring.verifier("saga")
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
    assert decode_record(unsigned, SAGA.handlers, ring.verifier("saga")) is None  # skipped unread, as before
    delivery = decode_record(unsigned, ACCOUNT.handlers, ring.verifier("account"))
    assert delivery is not None
    assert (delivery.poison or "").startswith("signature unsigned")


def test_x9_every_record_the_test_helpers_make_is_signed_by_its_owner() -> None:
    record = record_of(FUND)
    assert dict(record.headers)[SIGNER_HEADER] == b"marketplace"
    delivery = decode_record(record, ACCOUNT.handlers, signing.process_keyring().verifier("account"))
    assert delivery is not None
    assert delivery.poison is None


def test_x9_a_redriven_dead_letter_keeps_its_original_macs_and_is_trusted(ring: Keyring) -> None:
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
    delivery = decode_record(again, ACCOUNT.handlers, ring.verifier("account"))
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


def test_x9_a_file_without_its_send_keys_stops_the_process_at_start(keyring_dir: Path) -> None:
    held = file_of(keyring_dir, "escrow")
    del held["send_keys"]["saga"]
    (keyring_dir / "escrow.json").write_text(json.dumps(held))
    with pytest.raises(SigningNotConfiguredError, match="has no send key for saga"):
        load_keyring(keyring_dir, principals=("escrow",))


def _with_headers(record: Record, headers: Headers) -> Record:
    return Record(topic=record.topic, value=record.value, key=record.key, headers=headers)


def _shared() -> tuple[Verifier, Record]:
    """One keyring for the property tests' examples (hypothesis dislikes function fixtures)."""
    ring = signing.process_keyring()
    out = outgoing(FUND, source="marketplace", correlation_id="c", idempotency_key="k")
    return ring.verifier("account"), Record(topic=out.topic, value=out.value, key=out.key, headers=out.headers)


_SHARED_VERIFIER, _SHARED_RECORD = _shared()
