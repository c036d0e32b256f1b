"""pytest fixtures for a marketplace's tests against a TradeGuard sandbox (the ``pytest11`` entry
point ``tradeguard``: installed with ``tradeguard-client[pytest]``, there is nothing to import).

    async def test_a_paid_order_is_released(tradeguard_client, tradeguard_stack, books):
        buyer = await tradeguard_stack.new_buyer(wallet=Money(amount_minor=50_000, currency="USD"))
        order = await tradeguard_client.checkout(buyer_id=buyer.account_id, seller_id="seller-1",
                                                 amount=Money(amount_minor=12_999, currency="USD"))
        await order.wait_for(OrderStatus.IN_ESCROW)

Fixtures:

- ``tradeguard_stack`` (session): a :class:`~tradeguard_client.sandbox.Sandbox` started once for
  the run (``tradeguard sandbox``: a broker and every service as local processes) and stopped at
  the end, when tests fail, on Ctrl-C, or, should pytest itself be killed, when its pipe closes.
  ``--tradeguard-profile FILE`` uses a sandbox already running instead (nothing is started).
- ``tradeguard_client``: an open :class:`~tradeguard_client.TradeGuardClient` of it, per test.
- ``funding``: the simulated funding network's test cards (declines, timeouts, lost answers).
- ``clock``: the sandbox's test clock; ``await clock.advance(timedelta(days=16))``.
- ``books``: runs the books audit when the test ends and fails the test if the books do not balance.

Options: ``--tradeguard-command`` (or ``$TRADEGUARD_COMMAND``): how to run TradeGuard's CLI;
``--tradeguard-profile``. The async fixtures need pytest-asyncio (the ``[pytest]`` extra).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tradeguard_client.client import TradeGuardClient
from tradeguard_client.sandbox import COMMAND_VARIABLE, Sandbox, SandboxProcess, TestBuyer, TestCard, sandbox_command

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - the plugin loads; only its async fixtures need it
    pytest_asyncio = None  # type: ignore[assignment]

AUDIT_ATTEMPTS = 10
"""How many times (a second apart) ``books`` looks again before a break counts: a test's last
messages (a seller's payout after a release) may still be on their way when it returns."""

_started: list[SandboxProcess] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tradeguard", "TradeGuard sandbox")
    group.addoption(
        "--tradeguard-command",
        default=None,
        help=f"how to run TradeGuard's CLI, e.g. '/opt/tradeguard/.venv/bin/tradeguard' (default: ${COMMAND_VARIABLE}, "
        "else 'tradeguard')",
    )
    group.addoption(
        "--tradeguard-profile",
        default=None,
        help="the profile of a sandbox already running (`tradeguard sandbox` prints it): use it, start none",
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for process in _started:
        if process.startup_seconds is not None:
            terminalreporter.write_line(
                f"tradeguard sandbox: started in {process.startup_seconds:.1f} s (log: {process.log_file})"
            )


@pytest.fixture(scope="session")
def tradeguard_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A whole TradeGuard in test mode for this test run."""
    given = request.config.getoption("--tradeguard-profile")
    if given:
        yield Sandbox.from_profile(Path(given))
        return
    process = SandboxProcess(
        sandbox_command(request.config.getoption("--tradeguard-command")), _state_dir(tmp_path_factory)
    )
    _started.append(process)
    request.config.add_cleanup(process.stop_quietly)  # also on Ctrl-C, when fixtures may not be torn down
    try:
        yield process.start()
    finally:
        process.stop()


def _state_dir(factory: pytest.TempPathFactory) -> Path:
    return factory.mktemp("tradeguard") / "sandbox"


@dataclass
class Funding:
    """The simulated funding network, scripted by its test cards: each behaviour (``approve``,
    ``decline_insufficient_funds``, ``decline_do_not_honor``, ``decline_stolen_card``,
    ``timeout_once``, ``lost_answer``, ``issuer_unavailable``, ``unavailable_first_request``)
    is a published card number."""

    sandbox: Sandbox
    _cards: list[TestCard] | None = None

    async def cards(self) -> list[TestCard]:
        if self._cards is None:
            self._cards = await self.sandbox.test_cards()
        return self._cards

    async def card(self, behaviour: str = "approve") -> str:
        """The number of a test card whose issuer answers with ``behaviour``."""
        cards = await self.cards()
        for card in cards:
            if card.behaviour == behaviour:
                return card.number
        known = ", ".join(sorted({c.behaviour for c in cards}))
        raise LookupError(f"no test card behaves {behaviour!r}; the test cards' behaviours: {known}")

    async def buyer_with_card(self, behaviour: str = "approve", **details: Any) -> TestBuyer:
        """A new buyer who pays with a test card that behaves so (``checkout(source_id=buyer.source_id)``)."""
        return await self.sandbox.new_buyer(card=await self.card(behaviour), **details)


@dataclass
class Clock:
    """The sandbox's test clock: every service's time, moved forward instead of waited for."""

    sandbox: Sandbox

    async def now(self) -> datetime:
        return await self.sandbox.now()

    async def advance(self, by: timedelta) -> datetime:
        return await self.sandbox.advance_clock(by)


@pytest.fixture
def funding(tradeguard_stack: Sandbox) -> Funding:
    return Funding(tradeguard_stack)


@pytest.fixture
def clock(tradeguard_stack: Sandbox) -> Clock:
    return Clock(tradeguard_stack)


def _need_asyncio() -> None:
    pytest.fail(
        "the tradeguard fixtures tradeguard_client and books need pytest-asyncio: pip install 'tradeguard-client[pytest]'"
    )


if pytest_asyncio is not None:

    @pytest_asyncio.fixture
    async def tradeguard_client(tradeguard_stack: Sandbox) -> AsyncIterator[TradeGuardClient]:
        """An open client of the sandbox, closed after the test."""
        async with tradeguard_stack.client() as client:
            yield client

    @pytest_asyncio.fixture
    async def books(tradeguard_stack: Sandbox) -> AsyncIterator[Sandbox]:
        """After the test, the books audit of the whole sandbox; a break fails the test."""
        yield tradeguard_stack
        audit = await tradeguard_stack.audit(attempts=AUDIT_ATTEMPTS)
        if not audit.ok:
            pytest.fail("the books do not balance:\n  " + "\n  ".join(audit.breaks()), pytrace=False)

else:  # pragma: no cover

    @pytest.fixture
    def tradeguard_client() -> None:
        _need_asyncio()

    @pytest.fixture
    def books() -> None:
        _need_asyncio()
