"""The async client of the vault's HTTP API (SPEC A4), for the client app and the tests::

    async with VaultClient("http://127.0.0.1:19480") as vault:
        card = await vault.tokenize_card("4242 4242 4242 4242", 12, 2030, "123")

Errors::

    VaultError                         the vault did not hand back a token
    ├── VaultRefused(ValueError)       422: a field breaks a rule (``field``, ``rule``, ``message``)
    └── VaultUnavailable(ConnectionError)  no answer, or one the client cannot read (retry later)

Nothing here logs, and no error carries the number, the CVC or the IBAN.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

from contracts.funding_sources import CardBrand
from services.funding.vault import BankToken, CardToken

__all__ = ["BankToken", "CardToken", "VaultClient", "VaultError", "VaultRefused", "VaultUnavailable"]


class VaultError(Exception):
    """The vault did not hand back a token."""


class VaultRefused(VaultError, ValueError):
    """The vault refused the card or account (422); the message names the field and the rule."""

    def __init__(self, field: str, rule: str, message: str) -> None:
        super().__init__(message)
        self.field, self.rule, self.message = field, rule, message


class VaultUnavailable(VaultError, ConnectionError):
    """The vault could not be reached or gave an answer this client cannot read."""


class VaultClient:
    """One connection pool to the vault; use as an async context manager."""

    def __init__(
        self, base_url: str, *, timeout: float = 5.0, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout, transport=transport)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def tokenize_card(self, number: str, expiry_month: int, expiry_year: int, cvc: str) -> CardToken:
        body = {"number": number, "expiry_month": expiry_month, "expiry_year": expiry_year, "cvc": cvc}
        return _card_token(_payload(await self._send("POST", "/v1/tokens/cards", body)))

    async def tokenize_bank_account(self, iban: str) -> BankToken:
        return _bank_token(_payload(await self._send("POST", "/v1/tokens/bank-accounts", {"iban": iban})))

    async def lookup(self, token: str) -> CardToken | BankToken | None:
        """What the vault shows of a token, or None when it has no such token."""
        response = await self._send("GET", f"/v1/tokens/{quote(token, safe='')}")
        if response.status_code == 404:
            return None
        facts = _payload(response)
        return _card_token(facts) if facts.get("kind") == "card" else _bank_token(facts)

    async def book(self, token: str) -> dict[str, dict[str, int]]:
        """The network's own book for one token, per currency: ``captured_minor``, ``captures``,
        ``refunded_minor``, ``refunds``, ``declines`` and ``net_minor`` (``GET /v1/ledger?token=``)."""
        response = await self._send("GET", f"/v1/ledger?token={quote(token, safe='')}")
        currencies: dict[str, dict[str, Any]] = _payload(response).get("currencies", {})
        return {currency: {name: int(value) for name, value in c.items()} for currency, c in currencies.items()}

    async def captures(self, token: str) -> dict[str, int]:
        """The network's own book for one token: minor units captured per currency, and the
        number of captures (``"captures"``), as ``GET /v1/ledger?token=`` reports them."""
        response = await self._send("GET", f"/v1/ledger?token={quote(token, safe='')}")
        book: dict[str, dict[str, int]] = _payload(response).get("currencies", {})
        return {
            "captures": sum(int(c.get("captures", 0)) for c in book.values()),
            **{currency: int(c.get("captured_minor", 0)) for currency, c in book.items()},
        }

    async def _send(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        try:
            return await self._http.request(method, path, json=body)
        except httpx.TransportError as error:
            # The error's text names the URL only, never the body we sent.
            raise VaultUnavailable(f"the vault did not answer {method} {path}: {error!r}") from None


def _payload(response: httpx.Response) -> dict[str, Any]:
    """The JSON object of a 2xx answer; a 422 raises :class:`VaultRefused`."""
    status = response.status_code
    if status != 422 and not response.is_success:
        raise VaultUnavailable(f"the vault answered {response.request.method} {response.url.path} with {status}")
    try:
        payload = response.json()
    except ValueError:
        raise VaultUnavailable(f"the vault's answer ({status}) is not JSON") from None
    if not isinstance(payload, dict):
        raise VaultUnavailable(f"the vault's answer ({status}) is not a JSON object")
    if status == 422:
        error = payload.get("error")
        error = error if isinstance(error, dict) else {}
        raise VaultRefused(str(error.get("field")), str(error.get("rule")), str(error.get("message")))
    return payload


def _card_token(facts: dict[str, Any]) -> CardToken:
    try:
        return CardToken(
            token=str(facts["token"]),
            brand=CardBrand(facts["brand"]),
            last4=str(facts["last4"]),
            expiry_month=int(facts["expiry_month"]),
            expiry_year=int(facts["expiry_year"]),
            fingerprint=str(facts["fingerprint"]),
        )
    except (KeyError, TypeError, ValueError):
        raise VaultUnavailable("the vault's card token lacks a field or has a wrong one") from None


def _bank_token(facts: dict[str, Any]) -> BankToken:
    try:
        return BankToken(token=str(facts["token"]), last4=str(facts["last4"]), country=str(facts["country"]))
    except KeyError:
        raise VaultUnavailable("the vault's bank token lacks a field") from None
