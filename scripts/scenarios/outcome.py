"""How a scenario says its outcome differs from what it expects."""

from __future__ import annotations

from typing import Final


class ScenarioFailed(AssertionError):
    """The system did something other than what the scenario expects; the message says what."""


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Final = _Unset()


def expect(condition: bool, expected: str, *, got: object = _UNSET) -> None:
    """Fail the scenario unless ``condition`` holds: ``expected`` says what should have happened,
    ``got`` (when given) what did."""
    if condition:
        return
    message = f"expected {expected}"
    if got is not _UNSET:
        message += f"; got {got}"
    raise ScenarioFailed(message)
