"""The funding network simulator's HTTP API: the vault (SPEC A4) and the issuer (P1, P4, P6).

The issuer's charges, refunds, status inquiries and ledger are described in
:mod:`services.funding.issuer`; the vault's endpoints here:

- ``POST /v1/tokens/cards`` ``{"number", "expiry_month", "expiry_year", "cvc"}`` -> 201
  ``{"token", "brand", "last4", "expiry_month", "expiry_year", "fingerprint"}``
- ``POST /v1/tokens/bank-accounts`` ``{"iban"}`` -> 201 ``{"token", "last4", "country"}``
- ``GET /v1/tokens/{token}`` -> 200 what may be shown of the token, or 404
- ``GET /health`` -> 200

A request the vault refuses gets 422 ``{"error": {"field", "rule", "message"}}``. No answer
and no log line ever holds the number, the CVC or the IBAN: refusals name the field and the
rule, never the value.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.funding.bodies import BadRequest as _BadRequest
from services.funding.bodies import read_object as _read_object
from services.funding.bodies import refusal as _refusal
from services.funding.cards import InstrumentRefused, ScriptedCard
from services.funding.issuer import IssuerApi
from services.funding.settings import FundingSettings
from services.funding.vault import CardVault, StoredToken, TokenKind, load_scripted_cards
from shared.clock import Clock
from shared.logging import get_logger

log = get_logger(__name__)

_TOKEN_PATH = re.compile(r"tok_[A-Za-z0-9]{1,60}")
_CARD_FIELDS = {"number": str, "expiry_month": int, "expiry_year": int, "cvc": str}
_BANK_FIELDS = {"iban": str}


def _card_facts(stored: StoredToken) -> dict[str, object]:
    return {
        "token": stored.token,
        "kind": stored.kind.value,
        "brand": stored.brand.value if stored.brand is not None else None,
        "last4": stored.last4,
        "expiry_month": stored.expiry_month,
        "expiry_year": stored.expiry_year,
        "country": stored.country,
        "fingerprint": stored.fingerprint,
        "created_at": stored.created_at.isoformat(),
    }


def _bank_facts(stored: StoredToken) -> dict[str, object]:
    return {
        "token": stored.token,
        "kind": stored.kind.value,
        "last4": stored.last4,
        "country": stored.country,
        "created_at": stored.created_at.isoformat(),
    }


class _VaultApi:
    """The endpoints, over a vault opened in the app's lifespan."""

    def __init__(self, settings: FundingSettings, clock: Clock, scripted_cards: Mapping[str, ScriptedCard]) -> None:
        self._settings = settings
        self._clock = clock
        self._scripted = scripted_cards
        self._opened: CardVault | None = None

    @property
    def vault(self) -> CardVault:
        """The vault the lifespan opened (the issuer looks tokens up in it)."""
        return self._vault

    @property
    def _vault(self) -> CardVault:
        assert self._opened is not None, "the lifespan opens the vault before any request"
        return self._opened

    @asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        settings = self._settings
        self._opened = await asyncio.to_thread(
            CardVault.open, settings.database_path, settings.fingerprint_key, self._scripted, self._clock
        )
        try:
            yield
        finally:
            await asyncio.to_thread(self._opened.close)
            self._opened = None

    async def tokenize_card(self, request: Request) -> Response:
        try:
            body = await _read_object(request, _CARD_FIELDS)
            today = self._clock.now().date()
            card = await asyncio.to_thread(
                self._vault.tokenize_card,
                body["number"],
                body["expiry_month"],
                body["expiry_year"],
                today,
                body["cvc"],
            )
        except (_BadRequest, InstrumentRefused) as refused:
            return self._refused("card", refused)
        log.info("card tokenised", token=card.token, brand=card.brand.value, last4=card.last4)
        return JSONResponse(
            {
                "token": card.token,
                "brand": card.brand.value,
                "last4": card.last4,
                "expiry_month": card.expiry_month,
                "expiry_year": card.expiry_year,
                "fingerprint": card.fingerprint,
            },
            status_code=201,
        )

    async def tokenize_bank_account(self, request: Request) -> Response:
        try:
            body = await _read_object(request, _BANK_FIELDS)
            account = await asyncio.to_thread(self._vault.tokenize_bank_account, body["iban"])
        except (_BadRequest, InstrumentRefused) as refused:
            return self._refused("bank account", refused)
        log.info("bank account tokenised", token=account.token, country=account.country, last4=account.last4)
        return JSONResponse(
            {"token": account.token, "last4": account.last4, "country": account.country}, status_code=201
        )

    async def lookup(self, request: Request) -> Response:
        token = request.path_params["token"]
        stored = await asyncio.to_thread(self._vault.lookup, token) if _TOKEN_PATH.fullmatch(token) else None
        if stored is None:
            return _refusal("token", "unknown", "token: no such token", status=404)
        facts = _card_facts(stored) if stored.kind is TokenKind.CARD else _bank_facts(stored)
        return JSONResponse(facts)

    async def health(self, _request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    @staticmethod
    def _refused(what: str, refused: _BadRequest | InstrumentRefused) -> Response:
        status = refused.status if isinstance(refused, _BadRequest) else 422
        # field and rule only: the message is safe too, but a log line needs no more than these
        log.info(f"{what} refused", field=refused.field, rule=refused.rule)
        return _refusal(refused.field, refused.rule, refused.message, status)


def create_app(
    settings: FundingSettings, clock: Clock, scripted_cards: Mapping[str, ScriptedCard] | None = None
) -> Starlette:
    """The vault and issuer API. The test cards are read and checked now (a bad row stops the
    start); the database (tokens, charges, refunds) is opened when the server starts and closed
    when it stops."""
    api = _VaultApi(settings, clock, scripted_cards if scripted_cards is not None else load_scripted_cards())
    issuer = IssuerApi(settings, clock, lambda: api.vault)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with api.lifespan(app), issuer.lifespan(app):
            yield

    routes = [
        Route("/v1/tokens/cards", api.tokenize_card, methods=["POST"]),
        Route("/v1/tokens/bank-accounts", api.tokenize_bank_account, methods=["POST"]),
        Route("/v1/tokens/{token}", api.lookup, methods=["GET"]),
        *issuer.routes(),
        Route("/health", api.health, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
