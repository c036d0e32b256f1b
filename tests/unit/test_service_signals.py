"""X2, clean shutdown (issue 12): what each SIGINT or SIGTERM a service gets means. The first
stops it in order; the same signal again at once is the same request (Ctrl-C in a terminal
reaches a process under ``uv run`` twice: the group's copy and uv's); any later or other signal
during the stop ends the process at once."""

from __future__ import annotations

import signal

from shared.service import SAME_SIGNAL_SECONDS, StopSignals


def test_x2_the_first_signal_stops_in_order() -> None:
    assert StopSignals().meaning(signal.SIGTERM, now=100.0) == "stop"
    assert StopSignals().meaning(signal.SIGINT, now=100.0) == "stop"


def test_x2_the_same_signal_again_at_once_is_a_repeat_not_a_second_one() -> None:
    signals = StopSignals()
    signals.meaning(signal.SIGINT, now=100.0)

    assert signals.meaning(signal.SIGINT, now=100.0 + SAME_SIGNAL_SECONDS / 2) == "repeat"


def test_x2_a_later_or_another_signal_during_the_stop_exits_at_once() -> None:
    later = StopSignals()
    later.meaning(signal.SIGINT, now=100.0)
    other = StopSignals()
    other.meaning(signal.SIGTERM, now=100.0)

    assert later.meaning(signal.SIGINT, now=100.0 + SAME_SIGNAL_SECONDS) == "exit"
    assert other.meaning(signal.SIGINT, now=100.0) == "exit"
