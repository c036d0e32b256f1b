"""The saga's windows and retry policies (S2, S3, S4), read from a data file (data/saga.toml).

Pure: durations and rules in, delays and deadlines out. The retry delay is jittered with a
random generator seeded by the order and the attempt, so two orders failing together spread
out, while one order's schedule is the same every time it is computed (a replay, a test).
"""

from __future__ import annotations

import random
import tomllib
from datetime import timedelta
from functools import cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULT_POLICY_FILE = Path(__file__).resolve().parent.parent / "data" / "saga.toml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetryPolicy(_Strict):
    """Exponential backoff with jitter up to a number of attempts (Temporal's RetryPolicy)."""

    initial_interval: timedelta = Field(gt=timedelta(0))
    backoff_coefficient: float = Field(ge=1.0)
    maximum_interval: timedelta = Field(gt=timedelta(0))
    maximum_attempts: int = Field(ge=1, description="Attempts in all, the first one included.")
    jitter: float = Field(ge=0.0, lt=1.0)
    non_retryable: frozenset[str] = frozenset()

    def retries(self, reason: str, attempts_made: int) -> bool:
        """Whether another attempt follows ``attempts_made`` that ended with ``reason``."""
        return reason not in self.non_retryable and attempts_made < self.maximum_attempts

    def delay(self, attempts_made: int, seed: str) -> timedelta:
        """How long to wait before the attempt after ``attempts_made`` (>= 1)."""
        # In float seconds, capped before it becomes a timedelta: a long policy must not overflow.
        exponent = min(attempts_made - 1, 1000)
        seconds = self.initial_interval.total_seconds() * self.backoff_coefficient**exponent
        capped = timedelta(seconds=min(seconds, self.maximum_interval.total_seconds()))
        spread = random.Random(f"{seed}:{attempts_made}").uniform(-self.jitter, self.jitter)  # noqa: S311 - not a secret
        return capped * (1 + spread)


class PaymentPolicy(_Strict):
    window: timedelta = Field(gt=timedelta(0))
    cancel_at_once: frozenset[str]
    retry: RetryPolicy


class CompensationPolicy(_Strict):
    retry: RetryPolicy


class ProtectionPolicy(_Strict):
    default_method: str
    reminder_before: timedelta = Field(ge=timedelta(0))
    extension: timedelta = Field(gt=timedelta(0))
    windows: dict[str, timedelta]

    def window(self, shipping_method: str | None) -> timedelta:
        """The protection for a shipping method; KeyError naming the known ones otherwise."""
        method = shipping_method or self.default_method
        try:
            return self.windows[method]
        except KeyError:
            known = ", ".join(sorted(self.windows))
            raise KeyError(f"shipping method {method!r} is not one of {known}") from None


class DisputePolicy(_Strict):
    seller_response: timedelta = Field(gt=timedelta(0))


class SagaPolicy(_Strict):
    payment: PaymentPolicy
    compensation: CompensationPolicy
    protection: ProtectionPolicy
    dispute: DisputePolicy


class PolicyFileInvalid(ValueError):
    """The policy file cannot be used; the message names the file and what is wrong."""


def load_policy(path: Path = DEFAULT_POLICY_FILE) -> SagaPolicy:
    try:
        document = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise PolicyFileInvalid(f"{path}: {error}") from None
    try:
        policy = SagaPolicy.model_validate(document)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise PolicyFileInvalid(f"{path}: {problems}") from None
    if policy.protection.default_method not in policy.protection.windows:
        raise PolicyFileInvalid(f"{path}: protection.default_method names no window")
    return policy


@cache
def default_policy() -> SagaPolicy:
    return load_policy()
