"""The scenario catalogue (X7) as an acceptance suite: every scenario against the test stack,
and the runner's verdicts (a failing expectation must fail the run)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
from rich.console import Console
from typer.testing import CliRunner

from contracts import AccountRegistered
from scripts.cli import app
from scripts.scenarios import (
    CATALOGUE,
    Catalogue,
    ScenarioRunner,
    StackHandle,
    Verdict,
    World,
    exit_code,
    expect,
)
from scripts.scenarios.catalogue.accounts import registration
from scripts.secrets_scan import all_records, findings, stack_files, stack_secrets
from scripts.stack import ROOT, ServiceProcesses
from shared.sealing import public_path

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]

FIRST_SCENARIOS = (
    "happy-path",
    "payment-declined",
    "register-and-verify",
    "unsupported-region",
    "binding-name-mismatch",
    "binding-revoked-payment-refused",
    "expired-card-refused",
    "locked-after-failed-checks",
)


@pytest.fixture(scope="module")
def handle(stack: ServiceProcesses) -> StackHandle:
    return StackHandle.from_services(stack)


@pytest.fixture(scope="module")
async def runner(handle: StackHandle) -> AsyncIterator[ScenarioRunner]:
    # rich writes to whatever sys.stdout is at the time: each test's timeline lands in its own report.
    async with ScenarioRunner(handle, Console(width=160)) as runner:
        yield runner


def test_the_catalogue_holds_the_first_scenarios_each_described() -> None:
    assert set(FIRST_SCENARIOS) <= set(CATALOGUE.names())
    for s in CATALOGUE:
        assert s.summary
        assert s.features
        assert s.description != s.summary  # a docstring saying what it shows


@pytest.mark.parametrize("name", CATALOGUE.names())
async def test_scenario_passes(runner: ScenarioRunner, name: str) -> None:
    result = await runner.run(CATALOGUE.get(name))

    assert result.passed, result.message


@pytest.mark.long  # make test runs the catalogue once, in order
async def test_the_catalogue_passes_again_in_reverse_order(runner: ScenarioRunner) -> None:
    """Fresh ids every run: the same stack takes every scenario again, in another order."""
    results = await runner.run_all(reversed(list(CATALOGUE)))

    assert [r.message for r in results if not r.passed] == []
    assert exit_code(results) == 0


async def test_x9_no_secret_the_scenarios_used_reaches_a_log_a_topic_or_a_database(stack: ServiceProcesses) -> None:
    """After every scenario (twice), and every test before them on this broker: the people's
    password and document number, the funding network's test card numbers, the broker's
    passwords and the account service's private sealing and storage keys appear nowhere they do
    not belong."""
    used = stack_secrets(stack.layout)
    everywhere = [*await all_records(stack.bootstrap_servers), *stack_files(stack.layout, stack.log_dir)]
    assert len(everywhere) > 1000  # every record of the session, not an empty scan
    assert findings(used, everywhere) == []


async def test_a_scenario_whose_expectation_fails_fails_the_run(handle: StackHandle) -> None:
    trial = Catalogue()

    @trial.scenario("kp-is-served", "Wrongly expects a registration in KP to open an account")
    async def kp_is_served(world: World) -> None:
        person = world.person("holder", country="KP")
        sent = await world.send(registration(world, person), about=person.account_id)
        await world.reply(sent, AccountRegistered)

    @trial.scenario("plain-wrong", "Expects what is false")
    async def plain_wrong(world: World) -> None:
        expect(world.clock.now().year < 2000, "a clock before 2000", got=world.clock.now().year)

    @trial.scenario("broken", "A bug in the scenario itself")
    async def broken(_: World) -> None:
        raise RuntimeError("scenario bug")

    @trial.scenario("fine", "Passes")
    async def fine(_: World) -> None:
        pass

    console = Console(width=160, record=True)
    async with ScenarioRunner(handle, console) as runner:
        results = {r.scenario.name: r for r in await runner.run_all(trial)}

    printed = console.export_text()

    assert results["kp-is-served"].verdict is Verdict.FAILED
    assert "unsupported_region" in results["kp-is-served"].message
    assert results["plain-wrong"].verdict is Verdict.FAILED
    assert results["plain-wrong"].message.startswith("expected a clock before 2000; got 20")
    assert results["broken"].verdict is Verdict.ERROR
    assert "scenario bug" in results["broken"].message
    assert results["fine"].passed
    assert exit_code(list(results.values())) == 1
    assert exit_code([results["fine"]]) == 0
    assert exit_code([]) == 1
    # A failing scenario still prints its timeline, then its verdict.
    assert "RegisterAccount" in printed
    assert "unsupported_region" in printed
    assert "kp-is-served FAILED" in printed
    assert "broken ERROR" in printed


def test_the_handle_finds_what_the_stack_leaves(stack: ServiceProcesses, handle: StackHandle) -> None:
    assert handle.sealing_key_file == public_path(stack.layout.sealing_key_file)
    assert handle.sealing_key() == stack.sealing_key()
    assert handle.sms_outbox == stack.sms_outbox
    assert handle.clock_file == stack.clock_file
    assert handle.vault_url == stack.vault_url
    assert StackHandle(stack.bootstrap_servers, stack.state_dir).vault_url == stack.vault_url


def test_the_cli_runs_a_scenario_against_a_running_stack(stack: ServiceProcesses) -> None:
    command = [sys.executable, "-m", "scripts.cli", "scenario", "unsupported-region"]
    options = ["--bootstrap", stack.bootstrap_servers, "--state-dir", str(stack.state_dir)]
    done = subprocess.run([*command, *options], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "unsupported-region PASSED" in done.stdout


def test_the_cli_lists_the_catalogue_and_refuses_unclear_requests() -> None:
    cli = CliRunner()

    listed = cli.invoke(app, ["scenario", "--list"])
    unknown = cli.invoke(app, ["scenario", "no-such-scenario"])
    nothing = cli.invoke(app, ["scenario"])
    both = cli.invoke(app, ["scenario", "happy-path", "--all"])

    assert listed.exit_code == 0
    assert all(name in listed.stdout for name in FIRST_SCENARIOS)
    assert (unknown.exit_code, nothing.exit_code, both.exit_code) == (2, 2, 2)
    assert "happy-path" in unknown.stdout  # names what there is
