"""The payment service's port to a funding network (SPEC P1, P4, P6), and its HTTP adapter.

The payment service charges cards and bank accounts, refunds them and asks what became of a
request through :class:`FundingNetwork`. Every call answers one of a closed set of values
(:data:`NetworkAnswer`); network trouble is an answer, never an exception::

    Charged(charge_id, amount)            the charge was captured
    Refunded(refund_id, amount, remaining) the refund was applied
    Declined(reason, permanent=True)      the network said no (insufficient_funds, card_expired, ...)
    Unavailable(reason)                   transient: nothing was applied, a retry may succeed
    Unknown(reason)                       the request left and no answer came: ask status() first
    NotFound()                            (status inquiries) no such request was applied: safe to retry

P4's rule for callers: after ``Unknown`` never retry blindly. Ask :meth:`FundingNetwork.status`
(or :meth:`~FundingNetwork.refund_status`) with the same request id: ``Charged``/``Declined``
is the outcome the first attempt had; ``NotFound`` means it was never applied, so retrying with
the same request id is safe; ``Unknown`` again means ask again later. The network is idempotent
by request id, so a retry of an applied request gets the first answer and never charges twice.

A caller's mistake (the same request id with another body, a refund beyond what remains, a
malformed request) is not a network fault: it raises :class:`NetworkRequestRefused`.

:class:`HttpFundingNetwork` speaks to the simulator's API (:mod:`services.funding.issuer`).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self, TypeAlias
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from contracts.money import Money
from shared.logging import get_logger

log = get_logger(__name__)

NETWORK_TIMEOUT = "network_timeout"
CONNECTION_LOST = "connection_lost"
NETWORK_UNREACHABLE = "network_unreachable"
ISSUER_UNAVAILABLE = "issuer_unavailable"
UNREADABLE_ANSWER = "unreadable_answer"


# --- the answers ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Charged:
    """The charge was captured; ``charge_id`` is the network's, for refunds and the books."""

    charge_id: str
    amount: Money


@dataclass(frozen=True, slots=True)
class Refunded:
    """The refund was applied; ``remaining`` is what may still be refunded of its charge."""

    refund_id: str
    amount: Money
    remaining: Money


@dataclass(frozen=True, slots=True)
class Declined:
    """The network refused the charge: insufficient_funds, do_not_honor, stolen_card,
    card_expired or unknown_token. Every decline of the network is permanent (P4)."""

    reason: str
    permanent: bool = True


@dataclass(frozen=True, slots=True)
class Unavailable:
    """Transient: nothing was applied; a retry (same request id) may succeed."""

    reason: str


@dataclass(frozen=True, slots=True)
class Unknown:
    """The request left and no answer came (timed out, connection lost mid-way, an answer that
    cannot be read). It may have been applied: ask the status before any retry."""

    reason: str


@dataclass(frozen=True, slots=True)
class NotFound:
    """A status inquiry's answer: no such request was applied; retrying it is safe."""


NetworkAnswer: TypeAlias = Charged | Refunded | Declined | Unavailable | Unknown | NotFound


class NetworkRequestRefused(Exception):
    """The network refused the request as malformed or contradictory (409, 422, ...): a caller
    bug, not a network fault. ``rule`` names it (``idempotency_conflict``, ``exceeds_remaining``,
    ...); ``remaining`` is set when a refund asked for more than remains."""

    def __init__(
        self, message: str, *, status: int = 0, rule: str = "", field: str = "", remaining: Money | None = None
    ) -> None:
        super().__init__(message)
        self.message, self.status, self.rule, self.field, self.remaining = message, status, rule, field, remaining


# --- the port ---------------------------------------------------------------------------------


class FundingNetwork(Protocol):
    """What the payment service asks of a funding network; ``request_id`` is the idempotency key."""

    async def charge(self, request_id: str, token: str, amount: Money) -> NetworkAnswer:
        """Charged, Declined, Unavailable or Unknown."""
        ...

    async def status(self, request_id: str) -> NetworkAnswer:
        """What became of a charge: Charged, Declined, NotFound or (no answer) Unknown."""
        ...

    async def refund(self, request_id: str, charge_id: str, amount: Money) -> NetworkAnswer:
        """Refunded, Unavailable or Unknown."""
        ...

    async def refund_status(self, request_id: str) -> NetworkAnswer:
        """What became of a refund: Refunded, NotFound or (no answer) Unknown."""
        ...


# --- the HTTP adapter -------------------------------------------------------------------------

# Raised before a byte of the request went out: nothing can have been applied.
_NOT_SENT: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
    httpx.ProxyError,
)
_REFUSED_STATUSES = frozenset({400, 404, 405, 409, 413, 415, 422})


class HttpFundingNetwork:
    """:class:`FundingNetwork` over the simulator's HTTP API; use as an async context manager::

        async with HttpFundingNetwork("http://127.0.0.1:19480", timeout=2.0) as network:
            answer = await network.charge("pay:order-7", token, Money(amount_minor=1299, currency="USD"))

    ``timeout`` bounds each phase (connect, send, wait for the answer). Nothing it logs holds
    more than request ids, charge ids and outcomes.
    """

    def __init__(
        self, base_url: str, timeout: float = 2.0, *, transport: httpx.AsyncBaseTransport | None = None
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

    async def charge(self, request_id: str, token: str, amount: Money) -> NetworkAnswer:
        body = {"request_id": request_id, "token": token, "amount": _money_body(amount)}
        return await self._write("charge", request_id, "/v1/charges", body, _charge_answer)

    async def status(self, request_id: str) -> NetworkAnswer:
        return await self._inquire("charge", request_id, f"/v1/charges/{quote(request_id, safe='')}", _charge_answer)

    async def refund(self, request_id: str, charge_id: str, amount: Money) -> NetworkAnswer:
        body = {"request_id": request_id, "charge_id": charge_id, "amount": _money_body(amount)}
        return await self._write("refund", request_id, "/v1/refunds", body, _refund_answer)

    async def refund_status(self, request_id: str) -> NetworkAnswer:
        return await self._inquire("refund", request_id, f"/v1/refunds/{quote(request_id, safe='')}", _refund_answer)

    async def _write(self, what: str, request_id: str, path: str, body: dict[str, Any], read: _Reader) -> NetworkAnswer:
        """A charge or refund: the request may be applied, so only a failure before sending is
        Unavailable; any later one is Unknown."""
        try:
            response = await self._http.post(path, json=body)
        except _NOT_SENT as error:
            return _logged(what, request_id, Unavailable(NETWORK_UNREACHABLE), error)
        except httpx.TimeoutException as error:
            return _logged(what, request_id, Unknown(NETWORK_TIMEOUT), error)
        except httpx.HTTPError as error:  # read/write errors, the connection dropped mid-way
            return _logged(what, request_id, Unknown(CONNECTION_LOST), error)
        return _logged(what, request_id, _write_answer(what, request_id, response, read))

    async def _inquire(self, what: str, request_id: str, path: str, read: _Reader) -> NetworkAnswer:
        """A status inquiry applies nothing; every failure leaves the outcome Unknown (ask again)."""
        try:
            response = await self._http.get(path)
        except httpx.TimeoutException as error:
            return _logged(f"{what} status", request_id, Unknown(NETWORK_TIMEOUT), error)
        except httpx.HTTPError as error:
            return _logged(f"{what} status", request_id, Unknown(CONNECTION_LOST), error)
        payload = _json_object(response)
        if response.status_code == 200:
            return _logged(f"{what} status", request_id, read(payload, 200))
        if response.status_code == 404 and payload is not None and payload.get("status") == "not_found":
            return _logged(f"{what} status", request_id, NotFound())
        # A 404 without the network's body is a wrong URL, not an answer: the outcome is still unknown.
        return _logged(f"{what} status", request_id, Unknown(f"unexpected answer {response.status_code}"))


def _write_answer(what: str, request_id: str, response: httpx.Response, read: _Reader) -> NetworkAnswer:
    """The answer a charge or refund got; a caller's mistake raises :class:`NetworkRequestRefused`."""
    status = response.status_code
    payload = _json_object(response)
    if status in {201, 402}:
        return read(payload, status)
    if status == 503:
        error = payload.get("error") if payload is not None else None
        rule = error.get("rule") if isinstance(error, dict) else None
        return Unavailable(rule if isinstance(rule, str) and rule else ISSUER_UNAVAILABLE)
    if status == 429:
        return Unavailable("rate_limited")
    if status in _REFUSED_STATUSES:
        raise _refused(what, request_id, status, payload)
    # 500, a gateway's 502/504, anything else: the request arrived and may have been applied.
    return Unknown(f"unexpected answer {status}")


class _Reader(Protocol):
    def __call__(self, payload: dict[str, Any] | None, status: int, /) -> NetworkAnswer: ...


def _money_body(amount: Money) -> dict[str, object]:
    return {"amount_minor": amount.amount_minor, "currency": amount.currency}


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        payload = response.json()
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def _charge_answer(payload: dict[str, Any] | None, status: int) -> NetworkAnswer:
    """A charge as the network shows it (201 or 200 captured, 402 or 200 declined)."""
    if payload is None:
        return Unknown(UNREADABLE_ANSWER)
    state = payload.get("status")
    if state == "captured" and status in {200, 201}:
        charge_id = payload.get("charge_id")
        amount = _money(payload.get("amount"))
        if isinstance(charge_id, str) and charge_id and amount is not None:
            return Charged(charge_id, amount)
    if state == "declined" and status in {200, 402}:
        reason = payload.get("decline_reason")
        if isinstance(reason, str) and reason:
            return Declined(reason)
    return Unknown(UNREADABLE_ANSWER)


def _refund_answer(payload: dict[str, Any] | None, status: int) -> NetworkAnswer:
    if payload is None or status not in {200, 201}:
        return Unknown(UNREADABLE_ANSWER)
    refund_id = payload.get("refund_id")
    amount, remaining = _money(payload.get("amount")), _money(payload.get("remaining"))
    if isinstance(refund_id, str) and refund_id and amount is not None and remaining is not None:
        return Refunded(refund_id, amount, remaining)
    return Unknown(UNREADABLE_ANSWER)


def _money(value: object) -> Money | None:
    try:
        return Money.model_validate(value)
    except ValidationError:
        return None


def _refused(what: str, request_id: str, status: int, payload: dict[str, Any] | None) -> NetworkRequestRefused:
    error = payload.get("error") if payload is not None else None
    error = error if isinstance(error, dict) else {}
    message = error.get("message")
    rule, field = error.get("rule"), error.get("field")
    text = message if isinstance(message, str) and message else f"the network refused the {what} ({status})"
    log.warning("funding network refused a request", operation=what, request_id=request_id, status=status, rule=rule)
    return NetworkRequestRefused(
        f"{what} {request_id!r} refused ({status}): {text}",
        status=status,
        rule=rule if isinstance(rule, str) else "",
        field=field if isinstance(field, str) else "",
        remaining=_money(error.get("remaining")),
    )


def _logged(what: str, request_id: str, answer: NetworkAnswer, error: Exception | None = None) -> NetworkAnswer:
    cause = type(error).__name__ if error is not None else None
    if isinstance(answer, Unknown):
        log.warning(
            "funding network outcome unknown", operation=what, request_id=request_id, reason=answer.reason, cause=cause
        )
    else:
        log.info(
            "funding network answered", operation=what, request_id=request_id, answer=type(answer).__name__, cause=cause
        )
    return answer
