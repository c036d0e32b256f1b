"""The invariants a chaos run checks once its faults stopped (G2, X6), as pure functions of what
the run read: each returns the :class:`Violation` s it finds (none when the invariant holds).

The books audit (G1, :mod:`scripts.audit`) covers money conserved per currency (every captured
unit held, released or refunded, nothing counted twice), the ledger's own books (balanced,
no account past its flags, i.e. no negative balance where none is allowed) and orders stuck;
the run adds what only it knows: what each order should have ended in, how long it took after
the faults stopped, one ledger effect per (order, step), where each poison record went, that
every consumer group reached the end of its partitions, and that no secret leaked.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from contracts import ALL_TOPICS
from contracts.catalogue import consumers_of
from scripts.chaos.faults import PoisonSent
from scripts.cli.model import DeadLetter
from services.escrow.domain.ledger import TransferRecord

RECORD_FAULT = "record"
"""The dead-letter class of a record that cannot be read (shared.consumer: no retry)."""
POISON_ATTEMPTS = 3
"""The issue's bound: every poison record dead-lettered within this many attempts."""


@dataclass(frozen=True, slots=True)
class Violation:
    """One invariant broken: which, about what, and the figures; ``order_id`` when one order is to blame."""

    invariant: str
    subject: str
    detail: str
    order_id: str | None = None

    def __str__(self) -> str:
        return f"{self.invariant} {self.subject}: {self.detail}"


def outcome_violations(driven: Iterable[tuple[str, str | None, str, str]]) -> list[Violation]:
    """(what, order id, expected, outcome) per order: each must have ended as its branch says."""
    return [
        Violation("outcome", what, f"expected {expected}, ended {outcome}", order_id)
        for what, order_id, expected, outcome in driven
        if outcome != expected
    ]


def slow_violations(
    after_faults: Mapping[str, float], within: float, allowance: Mapping[str, float] | None = None
) -> list[Violation]:
    """Every order final within ``within`` seconds of the faults stopping, plus its ``allowance``
    (the real-time retry waits its branch has by design, whatever the faults)."""
    extra = allowance or {}
    found = []
    for order_id, seconds in sorted(after_faults.items()):
        limit = within + extra.get(order_id, 0.0)
        if seconds > limit:
            detail = f"final {seconds:.1f} s after the faults stopped (limit {limit:.0f} s)"
            found.append(Violation("final_in_time", order_id, detail, order_id))
    return found


def ledger_effect_violations(records: Sequence[TransferRecord]) -> list[Violation]:
    """One ledger effect per (order, step): escrow names every transfer after its order and step
    (``hold:<order>``, ``return:<order>:<refund>``, ``release:<order>``, and the parts of each
    linked set after them), so a step applied twice is a transfer id applied twice."""
    ids = Counter(record.transfer_id for record in records)
    orders = {record.transfer_id: record.order_id for record in records}
    return [
        Violation("ledger_once", tid, f"transfer applied {n} times", orders[tid]) for tid, n in ids.items() if n > 1
    ]


def poison_violations(
    sent: Sequence[PoisonSent], letters: Sequence[DeadLetter], services: Iterable[str]
) -> list[Violation]:
    """Every poison record dead-lettered by every service that consumes its topic, as unreadable
    (class ``record``: never retried), within ``POISON_ATTEMPTS`` attempts. A service killed after
    it dead-lettered a record and before it committed the offset reads the record again in its
    next life and dead-letters it again: each such life is one attempt."""
    topics = {topic.name: topic for topic in ALL_TOPICS}
    running = set(services)
    by_source: dict[str, list[DeadLetter]] = defaultdict(list)
    for letter in letters:
        if letter.source_header is not None:
            by_source[letter.source_header].append(letter)
    found = []
    for poison in sent:
        expected = set(consumers_of(topics[poison.topic])) & running
        got = Counter(letter.service for letter in by_source.get(poison.source, []))
        subject = f"{poison.kind} on {poison.source}"
        if missing := expected - set(got):
            found.append(
                Violation("poison_dead_lettered", subject, f"not dead-lettered by {', '.join(sorted(missing))}")
            )
        if often := [f"{name} {n} times" for name, n in sorted(got.items()) if n > POISON_ATTEMPTS]:
            found.append(Violation("poison_dead_lettered", subject, f"dead-lettered by {', '.join(often)}"))
        classes = {letter.dead_letter_class for letter in by_source.get(poison.source, [])}
        if classes - {RECORD_FAULT}:
            found.append(Violation("poison_dead_lettered", subject, f"dead-lettered as {sorted(classes)}, not at once"))
    return found


def lag_violations(lag: Mapping[tuple[str, str, int], int]) -> list[Violation]:
    """No partition blocked: every service's group committed up to the end of every partition it reads."""
    return [
        Violation("partition_blocked", f"{group} {topic}/{partition}", f"{behind} records not consumed")
        for (group, topic, partition), behind in sorted(lag.items())
        if behind > 0
    ]


def secret_violations(found: Iterable[str]) -> list[Violation]:
    return [Violation("secret_leaked", where, "a secret where it must never be") for where in found]
