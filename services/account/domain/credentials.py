"""What an account holder proves themselves with (A1, A6): phone numbers, passwords, PINs,
one-time codes and TOTP. Only hashes and digests are kept; the clear values exist only in
memory while a command is handled.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime

import phonenumbers
import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from shared.errors import CommandRefused

MIN_PASSWORD_LENGTH = 10
LONG_PASSWORD_LENGTH = 16  # long enough that character classes no longer matter (NIST 800-63B)
_COMMON_PASSWORDS = frozenset(
    {"password", "passw0rd", "123456789", "1234567890", "qwertyuiop", "iloveyou12", "letmein123", "password1"}
)


def normalize_phone(raw: str) -> str:
    """The number in E.164, or a refusal that says what is wrong with it (never the number)."""
    try:
        number = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException:
        raise CommandRefused(
            "invalid_phone", "phone: not a phone number in international form (E.164, starting with +)"
        ) from None
    if not phonenumbers.is_valid_number(number):
        raise CommandRefused("invalid_phone", "phone: not a valid number for any country's numbering plan")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def mask_phone(e164: str) -> str:
    """``+447700900123`` -> ``+44*******123``: enough for the holder to recognise it."""
    number = phonenumbers.parse(e164, None)
    prefix = f"+{number.country_code}"
    rest = e164.removeprefix(prefix)
    return prefix + "*" * (len(rest) - 3) + rest[-3:]


def check_password_strength(password: str, *, account_id: str, phone: str) -> None:
    """Refuse a weak password, naming the rule it breaks (never the password)."""
    problems = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(f"at least {MIN_PASSWORD_LENGTH} characters")
    classes = sum(bool(re.search(pattern, password)) for pattern in (r"[a-z]", r"[A-Z]", r"[0-9]", r"[^A-Za-z0-9]"))
    if len(password) < LONG_PASSWORD_LENGTH and classes < 3:
        problems.append(f"three of lower case, upper case, digits, symbols (or {LONG_PASSWORD_LENGTH}+ characters)")
    lowered = password.casefold()
    if lowered in _COMMON_PASSWORDS or len(set(lowered)) <= 2:
        problems.append("not a common or repetitive password")
    digits = re.sub(r"\D", "", phone)
    if account_id.casefold() in lowered or (len(digits) >= 6 and digits[-6:] in password):
        problems.append("not containing the account id or the phone number")
    if problems:
        raise CommandRefused("weak_password", "password: must have " + "; ".join(problems))


def check_pin_format(pin: str) -> None:
    if not re.fullmatch(r"[0-9]{6}", pin):
        raise CommandRefused("weak_pin", "pin: must be exactly 6 digits")
    if len(set(pin)) == 1 or pin in "01234567890" or pin in "09876543210":
        raise CommandRefused("weak_pin", "pin: must not be one digit repeated or a run such as 123456")


def check_totp_secret(secret: str) -> None:
    if not re.fullmatch(r"[A-Z2-7]{16,64}=*", secret):
        raise CommandRefused("invalid_totp_secret", "secret: must be base32 (A-Z, 2-7), at least 16 characters")


def totp_matches(secret: str, code: str, now: datetime) -> bool:
    """RFC 6238, 30 s steps, one step of clock drift allowed either way."""
    return bool(re.fullmatch(r"[0-9]{6}", code)) and pyotp.TOTP(secret).verify(code, for_time=now, valid_window=1)


@dataclass(frozen=True, slots=True)
class SecretHasher:
    """argon2id for passwords and PINs (memory-hard: guessing costs memory, not just time);
    keyed HMAC-SHA256 for short-lived codes and document numbers (looked up, not guessed)."""

    key: bytes
    time_cost: int = 2
    memory_kib: int = 19456
    parallelism: int = 1

    @property
    def _argon2(self) -> PasswordHasher:
        return PasswordHasher(time_cost=self.time_cost, memory_cost=self.memory_kib, parallelism=self.parallelism)

    def hash(self, secret: str) -> str:
        return self._argon2.hash(secret)

    def verify(self, stored_hash: str, secret: str) -> bool:
        try:
            return self._argon2.verify(stored_hash, secret)
        except (VerificationError, InvalidHashError):
            return False

    def digest(self, purpose: str, value: str) -> str:
        return hmac.new(self.key, f"{purpose}\x00{value}".encode(), hashlib.sha256).hexdigest()

    def phone_code(self, account_id: str, sequence: int) -> str:
        """The ``sequence``-th code of an account: derived, not random, so a re-run handler
        makes (and sends) the same code instead of a second one."""
        mac = hmac.new(self.key, f"phone-code\x00{account_id}\x00{sequence}".encode(), hashlib.sha256).digest()
        return f"{int.from_bytes(mac[:8], 'big') % 1_000_000:06d}"


def normalized_name(name: str) -> str:
    """Names compared the way people write them: case, accents and spacing do not matter."""
    decomposed = unicodedata.normalize("NFKD", name)
    letters = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(letters.casefold().replace("-", " ").split())
