"""Fault injection for the fault tests (S5, X6): kill this process at a named point, once.

``TRADEGUARD_CRASH_AT=<service>:<point>:<message type>`` (for example
``saga:after_store:PaymentCaptured``) makes that service's batch consumer SIGKILL its own
process when a batch holding that message type reaches ``point``; ``TRADEGUARD_CRASH_MARK`` names a file made just before, so the restarted
process (same environment) carries on. ``TRADEGUARD_CRASH_SIGNAL=SIGTERM`` (or ``SIGINT``) sends
that signal instead: the clean stop asked for with a batch in hand (issue 12). Points:

- ``before_store``: the batch was received and handled, nothing stored (the effects and the
  offsets are lost with the process: the broker delivers the records again);
- ``after_store``: the batch's effects and outgoing messages are committed, nothing published
  (the outbox relay of the restarted process publishes them).

Never set in production; unset, it costs one dictionary lookup per batch.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable
from pathlib import Path

CRASH_AT = "TRADEGUARD_CRASH_AT"
CRASH_MARK = "TRADEGUARD_CRASH_MARK"
CRASH_SIGNAL = "TRADEGUARD_CRASH_SIGNAL"
POINTS = ("before_store", "after_store")


def crash_if_asked(service: str, point: str, message_types: Iterable[str]) -> None:
    spec = os.environ.get(CRASH_AT)
    if not spec:
        return
    wanted_service, wanted_point, wanted_type = [*spec.split(":", 2), "", ""][:3]
    if (wanted_service, wanted_point) != (service, point) or wanted_type not in set(message_types):
        return
    mark = Path(os.environ.get(CRASH_MARK, ".tradeguard-crashed"))
    if mark.exists():
        return
    mark.write_text(f"{point}:{wanted_type}\n")
    os.kill(os.getpid(), signal.Signals[os.environ.get(CRASH_SIGNAL, "SIGKILL")])
