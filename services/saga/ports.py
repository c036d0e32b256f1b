"""What the saga's handlers share: its windows and retry policies (read once per process)."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.saga.domain.policy import SagaPolicy, default_policy, load_policy
from services.saga.settings import SagaSettings
from shared.clock import Clock
from shared.consumer import HandlerContext


@dataclass(frozen=True)
class SagaPorts:
    policy: SagaPolicy = field(default_factory=default_policy)


def build_ports(settings: SagaSettings, _clock: Clock) -> SagaPorts:
    return SagaPorts(load_policy(settings.policy_file) if settings.policy_file else default_policy())


def policy(ctx: HandlerContext) -> SagaPolicy:
    deps = ctx.deps
    return deps.policy if isinstance(deps, SagaPorts) else default_policy()
