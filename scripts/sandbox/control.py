"""The sandbox's test helpers over HTTP (issue 20): what a marketplace's tests do to a TradeGuard
in test mode that a real one never lets them, as Stripe's test helpers and test clocks do.

    GET  /test-cards        the funding network's test cards: number, brand, behaviour, description
    POST /buyers            a ready buyer: registered, phone proven, identity verified, wallet bound
                            to the marketplace, a payment PIN; optionally a funded wallet and a card
    GET  /clock             the time every service sees (X8)
    POST /clock/advance     move it forward {"seconds": N}: deadlines fall due, nothing sleeps
    GET  /audit             the books audit (G1) of the whole sandbox: {"ok": ..., "report": ...}

Bodies are JSON; a wrong one is answered 422 naming the field (a wrong query parameter 400), a step
TradeGuard refused 409 with its code and reason. The helpers act through the same commands and topics as any client.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from contracts import Money, VerificationLevel
from scripts.audit.checks import AuditLimits
from scripts.audit.reader import audit_stack
from scripts.audit.report import as_json
from scripts.onboarding import CommandRefusedError
from scripts.scenarios.handle import StackClock
from scripts.scenarios.outcome import ScenarioFailed
from scripts.scenarios.runner import ScenarioRunner
from scripts.scenarios.steps import add_card, top_up
from services.funding.vault import load_scripted_cards
from shared.read_api import whole

MAX_ADVANCE = timedelta(days=3650)


class NewBuyer(BaseModel):
    """``POST /buyers``: who the test buyer is and what they pay with."""

    model_config = ConfigDict(extra="forbid")

    country: str = Field(default="US", min_length=2, max_length=2, description="ISO 3166 alpha-2.")
    level: VerificationLevel = VerificationLevel.L1
    wallet: Money | None = Field(default=None, description="Top the wallet up with this much test money.")
    card: str | None = Field(default=None, max_length=23, description="Add this test card (see /test-cards).")


class ClockMove(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seconds: int = Field(gt=0, le=int(MAX_ADVANCE.total_seconds()))


@dataclass
class SandboxControl:
    """The helpers, over the sandbox's own scenario runner (its marketplace client, watcher, vault)."""

    runner: ScenarioRunner
    state_dir: Path
    clock_file: Path

    def app(self) -> Starlette:
        routes = [
            Route("/test-cards", self.cards, methods=["GET"]),
            Route("/buyers", _answering(self.new_buyer), methods=["POST"]),
            Route("/clock", self.clock, methods=["GET"]),
            Route("/clock/advance", _answering(self.advance_clock), methods=["POST"]),
            Route("/audit", self.audit, methods=["GET"]),
        ]
        return Starlette(routes=routes)

    async def cards(self, _request: Request) -> Response:
        cards = sorted(load_scripted_cards().values(), key=lambda c: (c.behaviour != "approve", c.behaviour, c.number))
        rows = [
            {"number": c.number, "brand": c.brand.value, "behaviour": c.behaviour.value, "description": c.description}
            for c in cards
        ]
        return JSONResponse({"cards": rows})

    async def new_buyer(self, request: Request) -> Response:
        wanted = NewBuyer.model_validate(await _json(request))
        world = self.runner.world()
        person = world.person("buyer", country=wanted.country.upper())
        await world.onboarding.buyer(person, wanted.level)
        await world.onboarding.set_pin(person)
        balance = await top_up(world, person.account_id, wanted.wallet) if wanted.wallet else None
        source_id = (await add_card(world, person, wanted.card))[0] if wanted.card else None
        body = {
            "account_id": person.account_id,
            "country": person.country,
            "level": wanted.level.value,
            "pin": person.pin,  # a made-up test person's, for the marketplace's test to pay above the threshold
            "wallet": balance.model_dump(mode="json") if balance else None,
            "source_id": source_id,
        }
        return JSONResponse(body, status_code=201)

    async def clock(self, _request: Request) -> Response:
        return JSONResponse({"now": StackClock(self.clock_file).now().isoformat()})

    async def advance_clock(self, request: Request) -> Response:
        move = ClockMove.model_validate(await _json(request))
        now = StackClock(self.clock_file).advance(timedelta(seconds=move.seconds))
        return JSONResponse({"now": now.isoformat()})

    async def audit(self, request: Request) -> Response:
        try:
            attempts = whole(request.query_params, "attempts", 1, least=1, most=30)
        except ValueError as error:  # a query parameter: answered as the read APIs answer one
            return JSONResponse({"error": str(error)}, status_code=400)
        report = await audit_stack(self.state_dir, AuditLimits(), attempts=attempts)
        return JSONResponse({"ok": report.ok, "report": as_json(report)})


class _BadBody(ValueError):
    pass


async def _json(request: Request) -> object:
    try:
        return await request.json()
    except ValueError:
        raise _BadBody("the body is not JSON") from None


def _answering(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """``handler``, with a wrong body answered 422 (naming the field) and a refused step 409."""

    async def answered(request: Request) -> Response:
        try:
            return await handler(request)
        except _BadBody as error:
            return JSONResponse({"error": str(error)}, status_code=422)
        except ValidationError as error:
            fields = [
                {"field": ".".join(map(str, e["loc"])), "problem": e["msg"]}
                for e in error.errors(include_url=False, include_input=False)
            ]
            return JSONResponse({"error": "the body is not valid", "fields": fields}, status_code=422)
        except (CommandRefusedError, ScenarioFailed) as error:
            return JSONResponse({"error": str(error)}, status_code=409)

    return answered
