"""G2, X6: a short chaos run, the one `make test` runs (the long one is `make chaos`).

A few hundred orders through every branch while services are SIGKILLed every 5-10 s, the
broker restarts once, 30% of records are copied (at once or late), poison arrives and the
funding network fails first attempts; then every invariant, the books audit included. The run
has its own broker and state folder (scripts/chaos/run.py), so the session's broker is untouched.
"""

from __future__ import annotations

import pytest
from rich.console import Console

from scripts.chaos.orders import Branch
from scripts.chaos.plan import FaultKind
from scripts.chaos.report import print_report
from scripts.chaos.run import ChaosOptions, ChaosRun
from scripts.stack import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.kafka, pytest.mark.slow]

SHORT = ChaosOptions(
    seed=1,
    orders=200,
    minutes=0.75,
    state_dir=ROOT / ".cache" / "chaos-test" / "state",
    kafka_data_dir=ROOT / ".cache" / "chaos-test" / "kafka",
    kafka_port=19482,
)


async def test_g2_x6_a_short_chaos_run_breaks_no_invariant() -> None:
    console = Console(width=160)
    report = await ChaosRun(SHORT, console).run()
    print_report(console, report)

    # The faults happened (a run that injected nothing proves nothing) ...
    injected = report.figures.injected
    assert sum(n for kind, n in injected.items() if kind.startswith(FaultKind.KILL)) >= SHORT.minutes * 60 / 10 - 1
    assert injected[FaultKind.BROKER_RESTART] == 1
    assert injected["copy:duplicate"] > 0
    assert injected["copy:late"] > 0
    assert report.poison
    # ... every branch was driven, and nothing broke.
    assert {d.plan.branch for d in report.driven.values()} == set(Branch)
    assert [str(v) for v in report.violations] == []
    assert report.audit is not None
    assert report.audit.ok
