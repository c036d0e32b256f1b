"""Feature A4: the funding network simulator's card vault, run as its own process.

Each test starts ``python -m services.funding`` on a free port with its own database and ready
file, and talks to it through :class:`VaultClient` (or raw HTTP, for bodies the client would
never send). The vault must answer tokens, never keep or log a card number, and stop cleanly.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from contracts.funding_sources import CardBrand
from services.funding.cards import luhn_check_digit
from services.funding.client import BankToken, CardToken, VaultClient, VaultRefused
from tests.support.funding import FundingSimulator

THIS_YEAR = datetime.now(UTC).year  # the process reads the system clock (UTC)
NEXT_YEAR = THIS_YEAR + 1
IBAN = "DE89 3704 0044 0532 0130 00"


def random_visa() -> str:
    """A valid visa number no test card table holds: its digits can only come from this test."""
    payload = "4" + "".join(secrets.choice("0123456789") for _ in range(14))
    return payload + luhn_check_digit(payload)


@pytest.fixture(scope="module")
async def funding(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FundingSimulator]:
    """One simulator for the tests that only add tokens and read them back."""
    process = FundingSimulator(tmp_path_factory.mktemp("funding"))
    await process.start()
    try:
        yield process
    finally:
        await process.stop()


@pytest.fixture
async def vault(funding: FundingSimulator) -> AsyncIterator[VaultClient]:
    async with VaultClient(funding.url) as client:
        yield client


@pytest.fixture
async def own_funding(tmp_path: Path) -> AsyncIterator[FundingSimulator]:
    """A simulator of the test's own, for tests that read its files or restart it."""
    process = FundingSimulator(tmp_path)
    try:
        yield process
    finally:
        if process.process is not None:
            await process.stop()


async def test_a4_a_test_card_gets_a_token_brand_and_last_four(vault: VaultClient) -> None:
    # The client app hands over the number; it gets back what may be stored and sent on Kafka.
    card = await vault.tokenize_card("4242 4242 4242 4242", 12, NEXT_YEAR, "123")
    assert card.token.startswith("tok_")
    assert len(card.token) == 4 + 24
    assert card.token[4:].isalnum()
    assert (card.brand, card.last4, card.expiry_month, card.expiry_year) == (CardBrand.VISA, "4242", 12, NEXT_YEAR)
    # Looking the token up shows the same public facts.
    assert await vault.lookup(card.token) == card


async def test_a4_the_same_card_twice_gets_two_tokens_with_one_fingerprint(vault: VaultClient) -> None:
    first = await vault.tokenize_card("5555555555554444", 1, NEXT_YEAR, "123")
    second = await vault.tokenize_card("5555 5555 5555 4444", 2, NEXT_YEAR + 1, "456")
    other = await vault.tokenize_card("378282246310005", 1, NEXT_YEAR, "1234")
    assert first.token != second.token
    assert first.fingerprint == second.fingerprint
    assert other.fingerprint != first.fingerprint
    assert (other.brand, other.last4) == (CardBrand.AMEX, "0005")


async def test_a4_a_bank_account_gets_a_token_last_four_and_country(vault: VaultClient) -> None:
    account = await vault.tokenize_bank_account(IBAN)
    assert (account.last4, account.country) == ("3000", "DE")
    assert await vault.lookup(account.token) == BankToken(account.token, "3000", "DE")


async def test_a4_an_unknown_token_is_not_found(vault: VaultClient, funding: FundingSimulator) -> None:
    assert await vault.lookup("tok_doesnotexist000000000000") is None
    assert await vault.lookup("../health") is None
    async with httpx.AsyncClient(base_url=funding.url) as http:
        assert (await http.get("/health")).status_code == 200


@pytest.mark.parametrize(
    ("card", "field", "rule"),
    [
        (("4242424242424241", 12, NEXT_YEAR, "123"), "number", "luhn"),
        (("4242424242424242", 12, THIS_YEAR - 1, "123"), "expiry", "expired"),
        (("36227206271667", 12, NEXT_YEAR, "123"), "number", "brand"),  # Diners Club
        (("4242424242424242", 13, NEXT_YEAR, "123"), "expiry_month", "range"),
        (("378282246310005", 12, NEXT_YEAR, "123"), "cvc", "format"),  # amex takes four digits
        (("4242424242424242", 12, NEXT_YEAR, "12a"), "cvc", "format"),
    ],
)
async def test_a4_a_card_breaking_a_rule_is_refused_without_quoting_it(
    vault: VaultClient, card: tuple[str, int, int, str], field: str, rule: str
) -> None:
    number = card[0]
    with pytest.raises(VaultRefused) as refused:
        await vault.tokenize_card(*card)
    assert (refused.value.field, refused.value.rule) == (field, rule)
    assert refused.value.message.startswith(f"{field}: ")
    assert number not in str(refused.value)


async def test_a4_an_invalid_iban_is_refused(vault: VaultClient) -> None:
    with pytest.raises(VaultRefused) as refused:
        await vault.tokenize_bank_account("DE89 3704 0044 0532 0130 01")
    assert (refused.value.field, refused.value.rule) == ("iban", "checksum")
    assert "0532" not in refused.value.message


GOOD_CARD: dict[str, object] = {
    "number": "4242424242424242",
    "expiry_month": 12,
    "expiry_year": NEXT_YEAR,
    "cvc": "123",
}


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        ({k: v for k, v in GOOD_CARD.items() if k != "cvc"}, "cvc", "required"),
        ({k: v for k, v in GOOD_CARD.items() if k != "number"}, "number", "required"),
        ({**GOOD_CARD, "expiry_month": "12"}, "expiry_month", "type"),
        ({**GOOD_CARD, "expiry_year": 2030.0}, "expiry_year", "type"),
        ({**GOOD_CARD, "expiry_month": True}, "expiry_month", "type"),
        ({**GOOD_CARD, "number": 4242424242424242}, "number", "type"),
        ({**GOOD_CARD, "cvc": 123}, "cvc", "type"),
        ({**GOOD_CARD, "pan": "4242424242424242"}, "body", "unknown_field"),
        ([GOOD_CARD], "body", "object"),
    ],
)
async def test_a4_a_malformed_card_request_is_refused_by_field(
    funding: FundingSimulator, body: object, field: str, rule: str
) -> None:
    async with httpx.AsyncClient(base_url=funding.url) as http:
        response = await http.post("/v1/tokens/cards", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == field
    assert response.json()["error"]["rule"] == rule
    assert "42424242" not in response.text
    assert '"123"' not in response.text


async def test_a4_a_body_that_is_not_json_is_refused_without_echo(funding: FundingSimulator) -> None:
    async with httpx.AsyncClient(base_url=funding.url) as http:
        response = await http.post("/v1/tokens/cards", content=b'{"number": "4242424242424242", ')
        too_big = await http.post("/v1/tokens/bank-accounts", content=b" " * 10_000)
    assert response.status_code == 422
    assert response.json()["error"] == {"field": "body", "rule": "json", "message": "body: not valid JSON"}
    assert too_big.status_code == 413


async def test_a4_a_token_survives_a_restart(own_funding: FundingSimulator) -> None:
    funding = own_funding
    async with VaultClient(await funding.start()) as vault:
        card = await vault.tokenize_card("6200000000000005", 3, NEXT_YEAR, "123")
    # SIGTERM ends the process normally and takes its ready file away.
    assert await funding.stop() == 0
    assert not funding.ready_file.exists()
    # The same database, a new process (and a new port).
    async with VaultClient(await funding.start()) as vault:
        assert await vault.lookup(card.token) == card
    assert await funding.stop() == 0


async def test_a4_no_card_number_is_ever_stored_or_logged(own_funding: FundingSimulator) -> None:
    funding = own_funding
    # A number only this test knows, a grouped form of it, a refused one and an IBAN.
    number = random_visa()
    grouped = " ".join(number[i : i + 4] for i in range(0, 16, 4))
    refused = number[:-1] + str((int(number[-1]) + 1) % 10)  # fails the Luhn check
    async with VaultClient(await funding.start()) as vault:
        card: CardToken = await vault.tokenize_card(grouped, 12, NEXT_YEAR, "987")
        await vault.tokenize_card(number, 11, NEXT_YEAR, "987")
        with pytest.raises(VaultRefused):
            await vault.tokenize_card(refused, 12, NEXT_YEAR, "987")
        await vault.tokenize_bank_account(IBAN)
    assert card.last4 == number[-4:]

    # Everything but the last four digits must be absent from the database, its WAL and the log.
    secrets_ = [number, grouped, refused, number[:12], IBAN.replace(" ", "")[4:-4], IBAN]
    while_running = funding.stored_bytes()
    assert b"tok_" in while_running  # the rows are there to be searched
    assert await funding.stop() == 0
    at_rest = funding.stored_bytes()
    log = funding.log_text()
    for secret in secrets_:
        assert secret.encode() not in while_running
        assert secret.encode() not in at_rest
        assert secret not in log

    # The log says the server listened, and on which port; it names the token, not the card.
    listening = [e for e in funding.log_events() if e["event"] == "funding network simulator listening"]
    assert len(listening) == 1
    assert funding.url.endswith(f":{listening[0]['port']}")
    assert card.token in log
