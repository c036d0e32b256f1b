"""G3 (web), S6, E3: the operator console against the real stack (broker, five service
processes), driven in headless Chromium (Debian's ``chromium``, through Playwright).

An operator signs in, opens a disputed order and reads its status, money and timeline, finds it
among the stuck orders, resolves the dispute with a split (confirmed on its own page), sees the
ledger move (escrow's read API says so too), and that the same action posted again changes
nothing; the audit log and the timeline show who did it and why. Another unlocks an account
locked by failed checks (A6), and sees why in its audit trail. Screenshots of each page are
written to ``$TRADEGUARD_ARTIFACTS`` (default ``.cache/artifacts``)/console/."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from contracts import (
    AccountStatus,
    AccountStatusChanged,
    OrderStatus,
)
from contracts.topics import DEAD_LETTER, ORDER_COMMANDS
from scripts.console.app import serve
from scripts.console.auth import hash_password
from scripts.console.settings import ConsoleSettings
from scripts.marketplace import EventWatcher, Marketplace, Seen
from scripts.onboarding import CommandRefusedError, Onboarding, Person
from scripts.stack import ROOT, ServiceProcesses
from tests.e2e.test_orders_cli import answered_dispute, reaches

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]

PASSWORD = "console-test-password"
CHROMIUM = os.environ.get("TRADEGUARD_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(os.environ.get("TRADEGUARD_ARTIFACTS") or ROOT / ".cache" / "artifacts") / "console"


@pytest.fixture
async def console_url(stack: ServiceProcesses, kafka_bootstrap: str, tmp_path: Path) -> AsyncIterator[str]:
    settings = ConsoleSettings(
        state_dir=stack.state_dir, port=0, password_hash=hash_password(PASSWORD), answer_seconds=60
    )
    listening: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    server = asyncio.create_task(serve(settings, kafka_bootstrap, listening.set_result))
    try:
        yield await asyncio.wait_for(listening, 30)
    finally:
        server.cancel()
        await asyncio.gather(server, return_exceptions=True)


@pytest.fixture
def chromium() -> str:
    """Debian's browser, never one Playwright downloads (nothing but the registries is reachable)."""
    assert Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM}: scripts/setup.sh installs Debian's chromium"
    return CHROMIUM


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            await launched.close()


def status_of(account_id: str, status: AccountStatus) -> Callable[[Seen], bool]:
    def matches(seen: Seen) -> bool:
        m = seen.message
        return isinstance(m, AccountStatusChanged) and m.account_id == account_id and m.status is status

    return matches


async def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def escrow_order(stack: ServiceProcesses, order_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{stack.escrow_url}/order", params={"order_id": order_id})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def sign_in(page: Page, url: str) -> None:
    """Open ``url``: the sign-in page comes first, refuses a wrong password, then goes back to ``url``."""
    await page.goto(url)
    await expect(page.locator("h1")).to_have_text("Sign in")
    await shot(page, "signin")
    await page.fill("input[name=operator_id]", "ops")
    await page.fill("input[name=password]", "not the password")
    await page.click("button.primary")
    await expect(page.get_by_role("alert")).to_have_text("wrong operator or password")
    await page.fill("input[name=operator_id]", "ops")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button.primary")


async def sees_the_disputed_order(page: Page, dispute_id: str) -> None:
    """Its status, money, what it waits for and its timeline across services."""
    await expect(page.locator("#status")).to_have_text("disputed")
    await expect(page.locator("#still-held")).to_have_text("30.00 USD")
    await expect(page.locator("#waiting")).to_contain_text(f"dispute {dispute_id} answered by the seller")
    await expect(page.locator("#money")).to_contain_text("frozen")
    timeline = page.locator("#timeline")
    for message in ("Checkout", "PaymentCaptured", "FundsHeld", "DisputeOpened", "DisputeAnswered", "FundsFrozen"):
        await expect(timeline.locator("td", has_text=message).first).to_be_visible()
    await expect(page.locator("#payment")).to_contain_text("captured")
    await shot(page, "order-disputed")


async def finds_it_among_the_stuck(page: Page, order_id: str) -> None:
    await page.click("nav >> text=Stuck orders")
    await expect(page.locator("#counts")).to_contain_text("waiting on operator")
    row = page.locator("#stuck tr", has_text=order_id)
    await expect(row).to_contain_text("waiting on operator")
    await shot(page, "stuck")
    await row.locator("a").click()


async def resolves_with_a_split(page: Page, order_id: str, dispute_id: str) -> dict[str, str | float | bool]:
    """12.50 USD back to the buyer, confirmed on its own page; the confirmed form, as posted."""
    dispute = page.locator("#dispute")
    await dispute.locator("input[value=split]").check()
    await dispute.locator("input[name=refund]").fill("12.50")
    await dispute.locator("input[name=reason]").fill("photos show transit damage")
    await dispute.locator("button", has_text="Resolve").click()
    await expect(page.locator(".summary")).to_contain_text(
        f"Resolve dispute {dispute_id} of order {order_id}: split: the amount below back to the buyer, "
        "the rest to the seller: 12.50 USD back to the buyer"
    )
    await shot(page, "confirm")
    form: dict[str, str | float | bool] = await page.locator("form:has(#confirm)").evaluate(
        "f => Object.fromEntries(new FormData(f).entries())"
    )
    await page.click("#confirm")
    await expect(page.locator("#outcome")).to_have_text(
        "resolved split: 12.50 USD back to the buyer, 17.50 USD to the seller", timeout=60_000
    )
    await shot(page, "outcome")
    return form


async def the_ledger_moved(stack: ServiceProcesses, order_id: str) -> None:
    """Escrow's own read API: the hold released, the seller's share posted to their payable, the
    order's holding account empty."""
    books = await escrow_order(stack, order_id)
    assert books["hold"]["status"] == "released"
    assert books["hold"]["still_held"] == {"amount_minor": 1750, "currency": "USD"}  # once released: what was paid
    posted = [t for t in books["transfers"] if t["kind"] == "post_pending"]
    assert [(t["amount_minor"], t["credit_account"].split(":")[0]) for t in posted] == [(1750, "seller_payable")], (
        books["transfers"]
    )
    holding = [a for a in books["accounts"] if a["kind"] == "escrow_holding"]
    assert holding
    assert all(a["balance_minor"] == a["credits_pending"] == a["debits_pending"] == 0 for a in holding)


async def test_g3_an_operator_follows_a_disputed_order_and_resolves_it_in_the_browser(
    stack: ServiceProcesses, onboarding: Onboarding, console_url: str, browser: Browser
) -> None:
    order_id, dispute_id = await answered_dispute(onboarding.market, onboarding.watcher, onboarding)
    page = await browser.new_page(viewport={"width": 1400, "height": 900})

    await sign_in(page, f"{console_url}/orders/{order_id}")
    await sees_the_disputed_order(page, dispute_id)
    await finds_it_among_the_stuck(page, order_id)
    confirmed = await resolves_with_a_split(page, order_id, dispute_id)
    await onboarding.watcher.wait_for(reaches(order_id, OrderStatus.COMPLETED), timeout=60)
    await the_ledger_moved(stack, order_id)

    # The same action posted again (a reload, a double click) is carried out once.
    again = await page.request.post(f"{console_url}/act/resolve/{order_id}", form=confirmed)
    assert again.status == 200
    assert "carried out before" in await again.text()

    # The order page shows where the money went, and the operator's command on the timeline.
    await page.click("#back")
    await expect(page.locator("#status")).to_have_text("completed")
    await expect(page.locator("#resolution")).to_contain_text(
        "split by operator:ops (photos show transit damage), 12.50 USD back"
    )
    await expect(page.locator("#timeline tr.operator", has_text="ResolveDispute")).to_have_count(1)
    await expect(page.locator("#hold-status")).to_have_text("released")
    await expect(page.locator("#money")).to_contain_text("17.50 USD paid to the seller")
    await expect(page.locator("#still-held")).to_have_text("0.00 USD")
    await expect(page.locator("#actions")).to_contain_text("nothing is left to retry")
    await shot(page, "order-resolved")

    # The audit log: who, when, why, what came of it; once.
    await page.click("nav >> text=Audit log")
    entries = page.locator("#audit tbody tr", has_text=order_id)
    await expect(entries).to_have_count(1)
    await expect(entries).to_contain_text("photos show transit damage")
    await expect(entries).to_contain_text("resolved split")
    await shot(page, "audit")

    # Without the session's CSRF token nothing is done; signed out, nothing is shown.
    forged = await page.request.post(f"{console_url}/act/cancel/{order_id}", form={**confirmed, "csrf_token": "x"})
    assert forged.status == 403
    await page.click(".signout button")
    await page.goto(f"{console_url}/orders/{order_id}")
    await expect(page.locator("h1")).to_have_text("Sign in")


async def test_g3_dead_letters_are_listed_with_their_reason_and_masked_payload(
    stack: ServiceProcesses, market: Marketplace, watcher: EventWatcher, console_url: str, browser: Browser
) -> None:
    marker = f"poison-g3-{uuid.uuid4().hex[:8]}"
    await market.publish_raw(ORDER_COMMANDS, marker, f'{{"password": "hunter2-{marker}", "x":'.encode())
    await watcher.wait_for_record(lambda r: r.topic == DEAD_LETTER.name and marker.encode() in (r.value or b""))
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    await page.goto(f"{console_url}/dead-letters")
    await page.fill("input[name=operator_id]", "ops")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button.primary")
    row = page.locator("#dead-letters tbody tr", has_text=marker)
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text("saga")
    await expect(row).to_contain_text("JSON")
    assert f"hunter2-{marker}" not in await page.content()
    await shot(page, "dead-letters")


async def test_a6_an_operator_unlocks_a_locked_account_in_the_browser(
    onboarding: Onboarding, console_url: str, browser: Browser
) -> None:
    run = uuid.uuid4().hex[:10]
    person = Person.numbered(f"buyer-a6-{run}", int(run, 16) % 10**8)
    await onboarding.buyer(person)
    wrong = replace(person, password="Not-Their-Password-1")
    for _ in range(5):  # the limit of failed checks (A6): the fifth locks the account
        with contextlib.suppress(CommandRefusedError):
            await onboarding.grant(wrong)
    await onboarding.watcher.wait_for(status_of(person.account_id, AccountStatus.LOCKED))
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    await page.goto(f"{console_url}/accounts")
    await page.fill("input[name=operator_id]", "ops")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button.primary")

    row = page.locator("#accounts tbody tr", has_text=person.account_id)
    await expect(row).to_contain_text("locked")
    await shot(page, "accounts-locked")
    await row.locator("input[name=reason]").fill("passport seen on a video call")
    await row.locator("button", has_text="Unlock").click()
    await expect(page.locator(".summary")).to_have_text(f"Unlock account {person.account_id} (it becomes active again)")
    await page.click("#confirm")

    await expect(page.locator("#outcome")).to_contain_text(f"account {person.account_id} is now active", timeout=60_000)
    await onboarding.watcher.wait_for(status_of(person.account_id, AccountStatus.ACTIVE))
    await page.goto(f"{console_url}/accounts/{person.account_id}")
    await expect(page.locator("h1 .badge")).to_have_text("active")
    await expect(page.locator("table")).to_contain_text("passport seen on a video call")
