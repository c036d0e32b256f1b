"""A1/G2: the account service texts a phone code at most once (after the commit that stores its
digest; the code itself is never stored), so a service stopped between the two never sends it.
The onboarding client then asks for a new code, as a person taps "send again" (a 10,000-order
chaos run lost one text to a SIGKILL at that moment)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from contracts import Message, PhoneCodeSent, RawEnvelope, ResendPhoneCode
from scripts import onboarding as onboarding_module
from scripts.marketplace import Seen
from scripts.onboarding import Onboarding, Person, Phone


@dataclass
class LosesTheFirstText(Onboarding):
    """The first text never arrives; each resend texts a new code to the phone's file."""

    sent: list[Message] = field(default_factory=list)
    texts_on_resend: bool = True

    async def send(self, command: Message, correlation_id: str, key: str) -> RawEnvelope:  # noqa: ARG002 - the port's shape
        self.sent.append(command)
        if isinstance(command, ResendPhoneCode) and self.texts_on_resend:
            line = {"to": "+15550000001", "text": f"TradeGuard code: {100000 + len(self.sent)}."}
            with self.phone.outbox.open("a") as out:
                out.write(json.dumps(line) + "\n")
        return None  # type: ignore[return-value]  # nothing here reads it

    async def answer(self, account_id: str, *kinds: type[Message]) -> Seen:  # noqa: ARG002 - the port's shape
        assert kinds == (PhoneCodeSent,)
        return None  # type: ignore[return-value]


def onboarding(tmp_path: Path, timeout: float) -> LosesTheFirstText:
    fields: dict[str, Any] = {"market": None, "watcher": None, "key": None}
    return LosesTheFirstText(**fields, phone=Phone(tmp_path / "sms.jsonl"), timeout=timeout)


PERSON = Person(account_id="buyer-1", phone="+1 555 000 0001", full_name="Ana Li")


async def test_a1_no_text_in_time_means_a_new_code_is_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(onboarding_module, "RESEND_AFTER", 0.2)
    client = onboarding(tmp_path, timeout=5)

    code = await client._texted_code(PERSON)

    assert code == "100001"
    assert [type(m) for m in client.sent] == [ResendPhoneCode]


async def test_a1_a_text_that_never_comes_is_still_an_error_in_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(onboarding_module, "RESEND_AFTER", 0.2)
    client = onboarding(tmp_path, timeout=0.5)
    client.texts_on_resend = False  # the gateway is down for good

    with pytest.raises(TimeoutError, match=r"no text reached \+15550000001"):
        await client._texted_code(PERSON)
    assert 1 <= len(client.sent) <= 3
