"""X2: decoding is total. Whatever a record holds in its key, headers and value, the consumer
reaches a verdict (handle it, skip it, or dead-letter it with a reason) and never raises."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import FundWallet, Money
from contracts.topics import MESSAGE_TYPE_HEADER
from services.account.app import DEFINITION as ACCOUNT
from services.saga.app import DEFINITION as SAGA
from shared.consumer import decode_record
from shared.signing import process_keyring
from tests.support.records import Record, record_of

VALID = record_of(FundWallet(account_id="alice", amount=Money(amount_minor=100, currency="USD")))
AS_ACCOUNT = process_keyring().verifier("account")  # each service checks the MACs made for it (X9)
AS_SAGA = process_keyring().verifier("saga")

header_names = st.one_of(st.just(MESSAGE_TYPE_HEADER), st.text(max_size=20))
headers = st.lists(st.tuples(header_names, st.binary(max_size=40)), max_size=4).map(tuple)


@settings(max_examples=400, deadline=None)
@given(
    key=st.one_of(st.none(), st.binary(max_size=40)),
    value=st.one_of(st.none(), st.binary(max_size=400)),
    headers=headers,
)
def test_x2_any_bytes_get_a_verdict(
    key: bytes | None, value: bytes | None, headers: tuple[tuple[str, bytes], ...]
) -> None:
    record = Record(topic=VALID.topic, value=value, key=key, headers=headers)
    for handlers, verifier in ((ACCOUNT.handlers, AS_ACCOUNT), (SAGA.handlers, AS_SAGA)):
        delivery = decode_record(record, handlers, verifier)
        assert delivery is None or (delivery.poison is not None) != (delivery.envelope is not None)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_x2_a_valid_record_with_any_single_byte_changed_gets_a_verdict(data: st.DataObject) -> None:
    value = bytearray(VALID.value or b"")
    position = data.draw(st.integers(0, len(value) - 1))
    value[position] = data.draw(st.integers(0, 255))
    record = Record(topic=VALID.topic, value=bytes(value), key=VALID.key, headers=VALID.headers)
    delivery = decode_record(record, ACCOUNT.handlers, AS_ACCOUNT)
    assert delivery is not None
    if delivery.poison is None:  # still valid (a changed letter inside a string, say): it is what it says
        assert delivery.envelope is not None
        assert delivery.envelope.payload.partition_key == "alice"
        assert isinstance(delivery.envelope.payload, FundWallet)


def test_x2_a_valid_record_is_handled_and_someone_elses_is_skipped_unread() -> None:
    handled = decode_record(VALID, ACCOUNT.handlers, AS_ACCOUNT)
    assert handled is not None
    assert handled.poison is None
    assert decode_record(VALID, SAGA.handlers, AS_SAGA) is None  # the saga does not handle FundWallet
