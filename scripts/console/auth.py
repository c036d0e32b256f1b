"""Sign-in, sessions and CSRF tokens for the console's one operator account.

Sessions live on the server (a random id in an HttpOnly, SameSite=Strict cookie; nothing about the
operator in the cookie itself), end ``session_minutes`` after their last use or at sign-out, and
each carries its own CSRF token, which every form posts back and every POST must match. The
password is checked against an argon2 hash; neither the password nor the hash is ever logged.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

COOKIE = "tg_console_session"


@dataclass(slots=True)
class Session:
    operator_id: str
    csrf_token: str
    expires_at: datetime


@dataclass
class Sessions:
    """The signed-in sessions, by id; times come from the caller (the tests move them)."""

    length: timedelta
    _by_id: dict[str, Session] = field(default_factory=dict)

    def open(self, operator_id: str, now: datetime) -> str:
        session_id = secrets.token_urlsafe(32)
        self._by_id[session_id] = Session(operator_id, secrets.token_urlsafe(32), now + self.length)
        return session_id

    def find(self, session_id: str | None, now: datetime) -> Session | None:
        """The live session of that id, its life extended; None (and forgotten) once expired."""
        session = self._by_id.get(session_id or "")
        if session is None:
            return None
        if now >= session.expires_at:
            del self._by_id[session_id or ""]
            return None
        session.expires_at = now + self.length
        return session

    def close(self, session_id: str | None) -> None:
        self._by_id.pop(session_id or "", None)


@dataclass(frozen=True)
class OperatorAccount:
    operator_id: str
    password_hash: str

    def check(self, operator_id: str, password: str) -> bool:
        """The right name and password. A wrong name costs a hash check too, so timing tells nothing."""
        if not self.password_hash:
            return False  # no password configured: nobody signs in
        matched: bool
        try:
            matched = PasswordHasher().verify(self.password_hash, password)
        except (VerificationError, InvalidHashError):
            matched = False
        return matched and secrets.compare_digest(operator_id.encode(), self.operator_id.encode())


def csrf_ok(session: Session, posted: object) -> bool:
    return isinstance(posted, str) and secrets.compare_digest(posted.encode(), session.csrf_token.encode())


def hash_password(password: str) -> str:
    return PasswordHasher().hash(password)
