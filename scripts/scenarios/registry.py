"""The catalogue of scenarios: each registered by name with a summary and the features it shows."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from scripts.scenarios.world import World

ScenarioFunction = Callable[[World], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Scenario:
    """A short script of actors' actions against the running stack, and what it expects."""

    name: str
    summary: str
    features: tuple[str, ...]
    play: ScenarioFunction

    @property
    def description(self) -> str:
        """What the scenario shows: its function's docstring (the summary when there is none)."""
        return (self.play.__doc__ or self.summary).strip()


class Catalogue:
    """Scenarios by name, in the order they were registered."""

    def __init__(self) -> None:
        self._scenarios: dict[str, Scenario] = {}

    def scenario(
        self, name: str, summary: str, *, features: tuple[str, ...] = ()
    ) -> Callable[[ScenarioFunction], ScenarioFunction]:
        """Register the decorated coroutine function as the scenario ``name``."""

        def register(play: ScenarioFunction) -> ScenarioFunction:
            if name in self._scenarios:
                raise ValueError(f"scenario {name!r} is registered twice")
            self._scenarios[name] = Scenario(name, summary, features, play)
            return play

        return register

    def get(self, name: str) -> Scenario:
        """The scenario ``name``; KeyError naming the known ones otherwise."""
        try:
            return self._scenarios[name]
        except KeyError:
            known = ", ".join(self._scenarios)
            raise KeyError(f"no scenario {name!r}; the catalogue has: {known}") from None

    def names(self) -> list[str]:
        return list(self._scenarios)

    def __iter__(self) -> Iterator[Scenario]:
        return iter(self._scenarios.values())

    def __len__(self) -> int:
        return len(self._scenarios)

    def __contains__(self, name: object) -> bool:
        return name in self._scenarios


CATALOGUE = Catalogue()
"""The product's scenarios (registered by the modules of :mod:`scripts.scenarios.catalogue`)."""

scenario = CATALOGUE.scenario
"""``@scenario("name", "one-line summary", features=("A1", "A2"))`` registers in :data:`CATALOGUE`."""
