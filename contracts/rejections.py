"""The answer to a command that was well-formed but could not be carried out."""

from __future__ import annotations

from pydantic import Field

from contracts.envelope import Event, WireUUID


class CommandRejected(Event):
    """A service refused a command; published on that service's events topic.

    Malformed records never get here: they go to the dead-letter topic.
    """

    subject_id: str = Field(description="The order or account the command was about.", examples=["order-7f3a"])
    rejected_message_id: WireUUID = Field(description="message_id of the refused command.")
    rejected_type: str = Field(description="Type of the refused command.", examples=["Checkout"])
    code: str = Field(description="Machine-readable reason.", examples=["order_conflict"])
    reason: str = Field(description="What was wrong, in words.")

    @property
    def partition_key(self) -> str:
        return self.subject_id
