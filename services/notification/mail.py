"""The mail server's port (N2): build a notification's email and hand a batch of them to SMTP.

:class:`SmtpMailer` speaks SMTP with aiosmtplib over one connection per batch, upgrading it
with STARTTLS whenever the server offers it. Every answer has one meaning
(:class:`~contracts.EmailOutcome`): a 250 is ``sent``; a 5xx for the message or the recipient
is ``refused`` (permanent); anything else (no connection, a timeout, a 4xx, a dropped
connection) is ``unavailable``: nothing was accepted, try again later.
"""

from __future__ import annotations

import email.utils
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

import aiosmtplib

from contracts import EmailOutcome


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One email, as the worker read it from the notification and its delivery."""

    notification_id: str
    message_id: str
    to: str
    subject: str
    text: str
    html: str
    language: str


@dataclass(frozen=True, slots=True)
class Answer:
    outcome: EmailOutcome
    detail: str = ""


class Mailer(Protocol):
    async def send(self, messages: Sequence[Outgoing]) -> list[Answer]:
        """One answer per message, in order; never raises for the server's sake."""
        ...


def build_email(message: Outgoing, sender: str) -> EmailMessage:
    """A multipart/alternative email: the plain text first, the autoescaped HTML second."""
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = message.to
    mail["Subject"] = message.subject
    mail["Message-ID"] = message.message_id  # the same on every attempt: the server can dedupe on it
    mail["Date"] = email.utils.formatdate(localtime=False, usegmt=True)
    mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to notifications
    mail.set_content(message.text, charset="utf-8")
    mail.add_alternative(message.html, subtype="html", charset="utf-8")
    mail["Content-Language"] = message.language  # after the content: setting it clears Content-* headers
    return mail


_CONNECTION_ERRORS = (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPConnectError, OSError, TimeoutError)


class SmtpMailer:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        timeout: float = 10.0,
        username: str | None = None,
        password: str | None = None,
        validate_certs: bool = True,
    ) -> None:
        self.host, self.port, self.sender, self.timeout = host, port, sender, timeout
        self._username, self._password, self._validate_certs = username, password, validate_certs

    async def send(self, messages: Sequence[Outgoing]) -> list[Answer]:
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            timeout=self.timeout,
            start_tls=None,  # STARTTLS when the server offers it, plain otherwise
            validate_certs=self._validate_certs,
            username=self._username,
            password=self._password,
        )
        try:
            await client.connect()
        except (aiosmtplib.SMTPException, *_CONNECTION_ERRORS) as error:
            return [Answer(EmailOutcome.UNAVAILABLE, _describe(error))] * len(messages)
        answers: list[Answer] = []
        try:
            for message in messages:
                answer = await self._send_one(client, message)
                answers.append(answer)
                if answer.outcome is EmailOutcome.UNAVAILABLE and not client.is_connected:
                    break  # the connection is gone: the rest were not sent either
        finally:
            if client.is_connected:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, *_CONNECTION_ERRORS):
                    client.close()
        lost = Answer(EmailOutcome.UNAVAILABLE, "the connection to the mail server was lost")
        return answers + [lost] * (len(messages) - len(answers))

    async def _send_one(self, client: aiosmtplib.SMTP, message: Outgoing) -> Answer:
        try:
            _refused, reply = await client.send_message(build_email(message, self.sender))
        except aiosmtplib.SMTPRecipientsRefused as error:
            permanent = all(refusal.code >= 500 for refusal in error.recipients)
            return Answer(EmailOutcome.REFUSED if permanent else EmailOutcome.UNAVAILABLE, _describe(error))
        except aiosmtplib.SMTPResponseException as error:
            return Answer(EmailOutcome.REFUSED if error.code >= 500 else EmailOutcome.UNAVAILABLE, _describe(error))
        except (aiosmtplib.SMTPException, *_CONNECTION_ERRORS) as error:
            return Answer(EmailOutcome.UNAVAILABLE, _describe(error))
        return Answer(EmailOutcome.SENT, reply[:200])


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:500]
