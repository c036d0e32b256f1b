"""Features A1, A2, A5 and A6: the account service's pure rules (no database, no Kafka).

The status machine, the phone code, the failed checks that lock an account, passwords,
PINs and TOTP, phone numbers, the automatic identity review, marketplace grants and the
usability of funding sources, each against the rule as the spec states it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pyotp
import pytest

from contracts import (
    AccountStatus,
    BindingScope,
    CardBrand,
    DeclineReason,
    DocumentType,
    FundingType,
    IdentityRejectionReason,
    VerificationLevel,
)
from services.account.domain.accounts import (
    ALLOWED_MOVES,
    Account,
    CodeCheck,
    IllegalMove,
    SecurityPolicy,
)
from services.account.domain.bindings import (
    MarketplaceGrant,
    check_expiry_ahead,
    check_profile_matches,
)
from services.account.domain.credentials import (
    SecretHasher,
    check_password_strength,
    check_pin_format,
    check_totp_secret,
    mask_phone,
    normalize_phone,
    normalized_name,
    totp_matches,
)
from services.account.domain.errors import PaymentDeclined
from services.account.domain.funding_sources import StoredSource, card_expired
from services.account.domain.verification import (
    IdentityReview,
    ReviewStatus,
    age_on,
    automatic_findings,
    check_submission_order,
    mask_document,
    normalized_document_number,
)
from shared.errors import CommandRefused

R = IdentityRejectionReason
S = AccountStatus
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
POLICY = SecurityPolicy()
PHONE = "+14155550123"


def account(status: AccountStatus = S.PENDING, **fields: object) -> Account:
    values: dict[str, object] = {
        "account_id": "buyer-1",
        "phone": PHONE,
        "full_name": "Ana Li",
        "country": "US",
        "currency": "USD",
        "language": "en",
        "password_hash": "$argon2id$unused",
        "status": status,
    }
    return Account(**(values | fields))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- A1 status machine

ALL_MOVES = [(current, wanted) for current in AccountStatus for wanted in AccountStatus]
ALLOWED = [(current, wanted) for current, wanted in ALL_MOVES if wanted in ALLOWED_MOVES[current]]
REFUSED = [(current, wanted) for current, wanted in ALL_MOVES if wanted not in ALLOWED_MOVES[current]]


def test_a1_the_table_names_every_status_and_only_statuses() -> None:
    assert set(ALLOWED_MOVES) == set(AccountStatus)
    assert all(moves <= set(AccountStatus) for moves in ALLOWED_MOVES.values())
    assert ALLOWED  # the machine moves at all
    assert all(current not in ALLOWED_MOVES[current] for current in AccountStatus)  # no move to itself


@pytest.mark.parametrize(("current", "wanted"), ALLOWED, ids=[f"{c}->{w}" for c, w in ALLOWED])
def test_a1_every_allowed_move_works_and_says_who_and_why(current: AccountStatus, wanted: AccountStatus) -> None:
    holder = account(current)
    change = holder.move_to(wanted, reason="because", by="op-ana")
    assert holder.status is wanted
    assert (change.previous, change.status, change.reason, change.changed_by) == (current, wanted, "because", "op-ana")


@pytest.mark.parametrize(("current", "wanted"), REFUSED, ids=[f"{c}->{w}" for c, w in REFUSED])
def test_a1_every_other_move_is_refused_naming_the_allowed_moves(current: AccountStatus, wanted: AccountStatus) -> None:
    holder = account(current)
    with pytest.raises(IllegalMove) as caught:
        holder.move_to(wanted, reason="because", by="op-ana")
    assert caught.value.code == "illegal_status_change"
    assert holder.status is current  # unchanged
    assert f"is {current}" in caught.value.reason
    assert f"cannot become {wanted}" in caught.value.reason
    allowed_part = caught.value.reason.split(f"(allowed from {current}: ", 1)[1]
    for allowed in ALLOWED_MOVES[current]:
        assert allowed.value in allowed_part
    for other in set(AccountStatus) - ALLOWED_MOVES[current]:
        assert other.value not in allowed_part.removeprefix("none: it is closed for good")


def test_a1_closed_is_final() -> None:
    assert ALLOWED_MOVES[S.CLOSED] == frozenset()
    closed = account(S.CLOSED)
    for wanted in AccountStatus:
        with pytest.raises(IllegalMove, match="closed for good"):
            closed.move_to(wanted, reason="reopen", by="op-ana")
    assert closed.status is S.CLOSED


def test_a6_becoming_active_clears_the_failed_checks() -> None:
    holder = account(S.ACTIVE)
    assert fail_at(holder, 0, 1, 2, 3, 4)[-1] is True
    holder.move_to(S.ACTIVE, reason="reviewed", by="op-ana")
    assert holder.failed_checks == 0
    # A fresh start: four more failures right away do not lock again.
    assert fail_at(holder, 5, 5, 5, 5) == [False] * 4


@pytest.mark.parametrize(
    ("status", "code"),
    [(S.CLOSED, "account_closed"), (S.LOCKED, "account_locked"), (S.PENDING, "phone_not_verified")],
    ids=["closed", "locked", "pending"],
)
def test_a1_a_closed_locked_or_unproven_account_takes_no_holder_command(status: AccountStatus, code: str) -> None:
    # Pending too: an account whose phone is not proven offers no password to guess.
    with pytest.raises(CommandRefused) as caught:
        account(status).check_open()
    assert caught.value.code == code


@pytest.mark.parametrize("status", [S.ACTIVE, S.RESTRICTED])
def test_a1_other_statuses_take_holder_commands(status: AccountStatus) -> None:
    account(status).check_open()


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (S.LOCKED, DeclineReason.ACCOUNT_LOCKED),
        (S.PENDING, DeclineReason.ACCOUNT_NOT_ACTIVE),
        (S.RESTRICTED, DeclineReason.ACCOUNT_NOT_ACTIVE),
        (S.CLOSED, DeclineReason.ACCOUNT_NOT_ACTIVE),
    ],
)
def test_a1_only_an_active_account_pays(status: AccountStatus, reason: DeclineReason) -> None:
    account(S.ACTIVE).check_can_pay()
    with pytest.raises(PaymentDeclined) as caught:
        account(status).check_can_pay()
    assert caught.value.decline_reason is reason


# ---------------------------------------------------------------------------- A1 phone code


def test_a1_a_code_is_accepted_once_before_it_expires() -> None:
    holder = account()
    assert holder.issue_phone_code("digest-1", NOW, POLICY) == POLICY.phone_code_sends - 1
    expires_at = holder.phone_code_expires_at
    assert expires_at == NOW + timedelta(minutes=5)
    assert holder.check_phone_code("digest-1", NOW + timedelta(minutes=4), POLICY) is CodeCheck.ACCEPTED
    # Used up: the digest is gone, so the same code cannot be checked again.
    assert (holder.phone_code_digest, holder.phone_code_expires_at) == (None, None)
    assert holder.check_phone_code("digest-1", NOW, POLICY) is CodeCheck.EXPIRED


def test_a1_a_code_expires_exactly_at_its_ttl() -> None:
    just_before, at_ttl = account(), account()
    for holder in (just_before, at_ttl):
        holder.issue_phone_code("digest-1", NOW, POLICY)
    ttl = POLICY.phone_code_ttl
    assert just_before.check_phone_code("digest-1", NOW + ttl - timedelta(microseconds=1), POLICY) is CodeCheck.ACCEPTED
    assert at_ttl.check_phone_code("digest-1", NOW + ttl, POLICY) is CodeCheck.EXPIRED
    assert at_ttl.phone_code_attempts == 0  # an expired code costs no attempt
    assert at_ttl.attempts_left(POLICY) == POLICY.phone_code_attempts


def test_a1_no_code_issued_reads_as_expired() -> None:
    assert account().check_phone_code("anything", NOW, POLICY) is CodeCheck.EXPIRED


def test_a1_wrong_codes_are_limited_and_the_last_attempt_exhausts() -> None:
    holder = account()
    holder.issue_phone_code("right", NOW, POLICY)
    results = [holder.check_phone_code("wrong", NOW, POLICY) for _ in range(POLICY.phone_code_attempts)]
    assert results == [CodeCheck.WRONG] * (POLICY.phone_code_attempts - 1) + [CodeCheck.EXHAUSTED]
    assert holder.attempts_left(POLICY) == 0
    # Even the right code is refused now, and checking it costs nothing more.
    assert holder.check_phone_code("right", NOW, POLICY) is CodeCheck.EXHAUSTED
    assert holder.phone_code_attempts == POLICY.phone_code_attempts
    assert holder.status is S.PENDING


def test_a1_a_resend_replaces_the_code_and_restores_the_attempts() -> None:
    holder = account()
    holder.issue_phone_code("first", NOW, POLICY)
    for _ in range(POLICY.phone_code_attempts):
        holder.check_phone_code("wrong", NOW, POLICY)
    later = NOW + timedelta(minutes=1)
    holder.issue_phone_code("second", later, POLICY)
    assert holder.phone_code_expires_at == later + POLICY.phone_code_ttl
    assert holder.attempts_left(POLICY) == POLICY.phone_code_attempts
    assert holder.check_phone_code("first", later, POLICY) is CodeCheck.WRONG  # the old code stopped working
    assert holder.check_phone_code("second", later, POLICY) is CodeCheck.ACCEPTED


def test_a1_resends_are_limited() -> None:
    holder = account()
    left = [holder.issue_phone_code(f"d{n}", NOW, POLICY) for n in range(POLICY.phone_code_sends)]
    assert left == [3, 2, 1, 0]
    assert holder.code_sequence == POLICY.phone_code_sends
    with pytest.raises(CommandRefused) as caught:
        holder.issue_phone_code("one-more", NOW, POLICY)
    assert caught.value.code == "resend_limit"
    assert "4 codes" in caught.value.reason
    assert holder.phone_code_digest == "d3"  # the last code still works


@pytest.mark.parametrize("status", [S.ACTIVE, S.RESTRICTED, S.LOCKED, S.CLOSED])
def test_a1_an_account_past_pending_refuses_codes(status: AccountStatus) -> None:
    holder = account(status)
    for attempt in (
        lambda: holder.issue_phone_code("d", NOW, POLICY),
        lambda: holder.check_phone_code("d", NOW, POLICY),
    ):
        with pytest.raises(CommandRefused) as caught:
            attempt()
        assert caught.value.code == "phone_already_verified"


def test_a1_a_verified_account_refuses_a_code_issued_before_verification() -> None:
    holder = account()
    holder.issue_phone_code("d", NOW, POLICY)
    assert holder.check_phone_code("d", NOW, POLICY) is CodeCheck.ACCEPTED
    holder.move_to(S.ACTIVE, reason="phone verified", by="buyer-1")
    with pytest.raises(CommandRefused, match="verified its phone"):
        holder.check_phone_code("d", NOW, POLICY)


def test_a1_phone_codes_are_derived_six_digits_and_differ_per_send() -> None:
    hasher = SecretHasher(b"k" * 32, time_cost=1, memory_kib=8)
    codes = [hasher.phone_code("buyer-1", n) for n in (1, 2, 3)]
    assert all(len(code) == 6 and code.isdigit() for code in codes)
    assert len(set(codes)) == 3
    assert hasher.phone_code("buyer-1", 1) == codes[0]  # a re-run makes the same code
    assert hasher.digest("phone-code", codes[0]) != codes[0]


# ---------------------------------------------------------------------------- A6 failed checks


def fail_at(holder: Account, *minutes: float) -> list[bool]:
    """Record a failed check at each minute after NOW; True where it locked the account."""
    return [holder.record_failed_check(NOW + timedelta(minutes=m), POLICY) is not None for m in minutes]


def test_a6_the_fifth_failed_check_within_15_minutes_locks() -> None:
    holder = account(S.ACTIVE)
    assert fail_at(holder, 0, 3, 6, 9) == [False] * 4
    change = holder.record_failed_check(NOW + timedelta(minutes=14), POLICY)
    assert change is not None
    assert (change.previous, change.status, change.changed_by) == (S.ACTIVE, S.LOCKED, "system")
    assert change.reason == "5 failed security checks within 15 minutes"
    assert holder.status is S.LOCKED
    assert holder.failed_checks == 5


def test_a6_five_failed_checks_in_a_burst_lock() -> None:
    holder = account(S.ACTIVE)
    assert fail_at(holder, 0, 0, 0, 0, 0) == [False, False, False, False, True]


def test_a6_a_restricted_account_locks_too() -> None:
    holder = account(S.RESTRICTED)
    assert fail_at(holder, 0, 1, 2, 3, 4)[-1] is True
    assert holder.status is S.LOCKED


def test_a6_failed_checks_spread_beyond_the_window_never_lock() -> None:
    holder = account(S.ACTIVE)
    # One every 4 minutes for two hours: never five within any 15 minutes.
    assert not any(fail_at(holder, *range(0, 120, 4)))
    assert holder.status is S.ACTIVE


def test_a6_a_passed_check_resets_the_count() -> None:
    holder = account(S.ACTIVE)
    assert fail_at(holder, 0, 1, 2, 3) == [False] * 4
    holder.record_passed_check()
    assert holder.failed_checks == 0
    assert fail_at(holder, 4, 5, 6, 7) == [False] * 4
    assert holder.status is S.ACTIVE
    assert fail_at(holder, 8) == [True]


def test_a6_five_failed_checks_within_any_15_minutes_lock() -> None:
    # The window slides: a first failure, then five ~15 minutes later that straddle the
    # first one's 15 minutes (a window anchored at the first failure once let these pass).
    holder = account(S.ACTIVE)
    locked = fail_at(holder, 0, 14, 15 + 1 / 60, 15 + 2 / 60, 15 + 3 / 60)
    assert locked == [False] * 5
    assert holder.failed_checks == 4  # the failure at minute 0 has left the window
    assert fail_at(holder, 15 + 4 / 60) == [True]
    assert holder.status is S.LOCKED


def test_a6_only_failures_of_the_last_15_minutes_count() -> None:
    holder = account(S.ACTIVE)
    assert fail_at(holder, 0, 1, 2, 3) == [False] * 4
    assert fail_at(holder, 20) == [False]  # the first four are older than 15 minutes
    assert holder.failed_checks == 1
    assert fail_at(holder, 21, 22, 23) == [False] * 3
    assert fail_at(holder, 24) == [True]


def test_a6_a_pending_account_counts_failures_but_cannot_lock() -> None:
    # The table does not allow pending -> locked: the count grows, the status stays.
    holder = account(S.PENDING)
    assert not any(fail_at(holder, 0, 1, 2, 3, 4, 5))
    assert holder.status is S.PENDING
    assert holder.failed_checks >= POLICY.failed_check_limit


# ---------------------------------------------------------------------------- A1 passwords

GOOD_PASSWORD = "Correct-Horse-42"


@pytest.mark.parametrize(
    "password",
    [GOOD_PASSWORD, "Tr0ub4dor&3x", "correct horse battery staple", "Zq7-vwy-plk"],
)
def test_a1_a_strong_password_passes(password: str) -> None:
    check_password_strength(password, account_id="buyer-1", phone=PHONE)


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("Xq7#vw9", "at least 10 characters"),
        ("zqvwplkmrtyu", "three of lower case, upper case, digits, symbols"),
        ("zqvwplkm8341", "three of lower case, upper case, digits, symbols"),
        ("LetMeIn123", "not a common or repetitive password"),
        ("IloveYou12", "not a common or repetitive password"),
        ("aAaAaAaAaAaAaAaAaA", "not a common or repetitive password"),
        ("Zq7-BUYER-1-vw", "not containing the account id or the phone number"),
        ("Zq7-x550123-vw", "not containing the account id or the phone number"),
    ],
    ids=["short", "one-class", "two-classes", "common", "common-case-folded", "repetitive", "account-id", "phone"],
)
def test_a1_a_weak_password_is_refused_naming_the_rule_never_the_password(password: str, rule: str) -> None:
    with pytest.raises(CommandRefused) as caught:
        check_password_strength(password, account_id="buyer-1", phone=PHONE)
    assert caught.value.code == "weak_password"
    assert caught.value.reason.startswith("password: must have ")
    assert rule in caught.value.reason
    assert password not in caught.value.reason
    assert password not in str(caught.value)


def test_a1_a_password_breaking_several_rules_names_them_all() -> None:
    with pytest.raises(CommandRefused) as caught:
        check_password_strength("aaaa", account_id="buyer-1", phone=PHONE)
    reason = caught.value.reason
    assert "at least 10 characters" in reason
    assert "three of lower case" in reason
    assert "not a common or repetitive password" in reason
    assert "aaaa" not in reason


def test_a1_a_long_password_needs_no_character_classes() -> None:
    check_password_strength("zqvwplkmrtyuhgfd", account_id="buyer-1", phone=PHONE)  # 16 lower-case letters
    with pytest.raises(CommandRefused, match="three of"):
        check_password_strength("zqvwplkmrtyuhgf", account_id="buyer-1", phone=PHONE)  # 15


def test_a1_passwords_are_kept_as_argon2id_hashes() -> None:
    hasher = SecretHasher(b"k" * 32, time_cost=1, memory_kib=8)
    stored = hasher.hash(GOOD_PASSWORD)
    assert stored.startswith("$argon2id$")
    assert GOOD_PASSWORD not in stored
    assert hasher.verify(stored, GOOD_PASSWORD)
    assert not hasher.verify(stored, GOOD_PASSWORD + "x")
    assert not hasher.verify("not a hash", GOOD_PASSWORD)


# ---------------------------------------------------------------------------- A6 PIN and TOTP


@pytest.mark.parametrize("pin", ["284915", "102938", "000001", "135792"])
def test_a6_a_six_digit_pin_passes(pin: str) -> None:
    check_pin_format(pin)


@pytest.mark.parametrize(
    ("pin", "rule"),
    [
        ("28491", "exactly 6 digits"),
        ("2849150", "exactly 6 digits"),
        ("28a915", "exactly 6 digits"),
        ("", "exactly 6 digits"),
        ("\u0662\u0668\u0664\u0669\u0661\u0665", "exactly 6 digits"),  # Arabic-Indic digits are not ASCII
        ("777777", "one digit repeated or a run"),
        ("123456", "one digit repeated or a run"),
        ("456789", "one digit repeated or a run"),
        ("987654", "one digit repeated or a run"),
        ("567890", "one digit repeated or a run"),
        ("098765", "one digit repeated or a run"),
    ],
)
def test_a6_a_bad_pin_is_refused_without_showing_it(pin: str, rule: str) -> None:
    with pytest.raises(CommandRefused) as caught:
        check_pin_format(pin)
    assert caught.value.code == "weak_pin"
    assert rule in caught.value.reason
    # One of two fixed sentences: it cannot echo the PIN.
    assert caught.value.reason in {
        "pin: must be exactly 6 digits",
        "pin: must not be one digit repeated or a run such as 123456",
    }


SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
STEP_START = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)  # a multiple of 30 s
MID_STEP = STEP_START + timedelta(seconds=15)


@pytest.mark.parametrize(
    ("steps_away", "accepted"),
    [(0, True), (-1, True), (1, True), (-2, False), (2, False), (5, False)],
)
def test_a6_totp_accepts_one_step_of_drift_either_way(steps_away: int, accepted: bool) -> None:
    code = pyotp.TOTP(SECRET).at(MID_STEP + timedelta(seconds=30 * steps_away))
    assert totp_matches(SECRET, code, MID_STEP) is accepted


def test_a6_totp_with_a_random_secret_at_the_step_edges() -> None:
    secret = pyotp.random_base32()
    check_totp_secret(secret)
    totp = pyotp.TOTP(secret)
    last_instant = STEP_START + timedelta(seconds=29, microseconds=999_999)
    assert totp_matches(secret, totp.at(STEP_START), last_instant)
    assert totp_matches(secret, totp.at(STEP_START + timedelta(seconds=30)), last_instant)
    assert not totp_matches(secret, totp.at(STEP_START + timedelta(seconds=60)), last_instant)
    assert not totp_matches(secret, totp.at(STEP_START - timedelta(seconds=60)), last_instant)


@pytest.mark.parametrize("code", ["", "12345", "1234567", "12 456", "abcdef"])
def test_a6_a_totp_code_that_is_not_six_digits_never_matches(code: str) -> None:
    assert not totp_matches(SECRET, code, MID_STEP)


@pytest.mark.parametrize("secret", ["", "JBSWY3DPEHPK3PX", "jbswy3dpehpk3pxp", "JBSWY3DPEHPK3PX1", "JBSWY3DP EHPK3PXP"])
def test_a6_a_totp_secret_must_be_base32_of_16_or_more(secret: str) -> None:
    with pytest.raises(CommandRefused) as caught:
        check_totp_secret(secret)
    assert caught.value.code == "invalid_totp_secret"
    assert not secret or secret not in caught.value.reason


# ---------------------------------------------------------------------------- A1 phone numbers


@pytest.mark.parametrize(
    ("raw", "e164", "masked"),
    [
        ("+14155550123", "+14155550123", "+1*******123"),
        ("+1 (415) 555-0123", "+14155550123", "+1*******123"),
        ("+81 90 1234 5678", "+819012345678", "+81*******678"),
        ("+61 400 000 000", "+61400000000", "+61******000"),
    ],
)
def test_a1_phone_numbers_are_normalised_to_e164_and_masked(raw: str, e164: str, masked: str) -> None:
    assert normalize_phone(raw) == e164
    assert mask_phone(e164) == masked
    assert len(masked) == len(e164)  # one star per hidden digit: the holder recognises the shape


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("4155550123", "international form"),  # no country code
        ("+999123456789", "international form"),  # no such country code
        ("call me maybe", "international form"),
        ("+1 800 123 4567", "numbering plan"),  # a US number that cannot exist
        ("+447700900123", "numbering plan"),  # Ofcom's range reserved for drama
        ("+15550100", "numbering plan"),
    ],
)
def test_a1_an_invalid_phone_is_refused_without_repeating_it(raw: str, why: str) -> None:
    with pytest.raises(CommandRefused) as caught:
        normalize_phone(raw)
    assert caught.value.code == "invalid_phone"
    assert why in caught.value.reason
    digits = "".join(c for c in raw if c.isdigit())
    assert raw not in caught.value.reason
    assert not digits or digits not in "".join(c for c in caught.value.reason if c.isdigit())


# ---------------------------------------------------------------------------- A2 identity review


def review(level: VerificationLevel = VerificationLevel.L1, **fields: object) -> IdentityReview:
    values: dict[str, object] = {
        "account_id": "buyer-1",
        "level": level,
        "legal_name": "Ana Li",
        "document_type": DocumentType.PASSPORT,
        "document_digest": "digest",
        "document_masked": "******89",
        "birth_date": date(1990, 5, 17),
        "country": "US",
        "address": None,
        "submitted_at": NOW,
    }
    return IdentityReview(**(values | fields))  # type: ignore[arg-type]


TODAY = date(2026, 1, 1)


def findings(submitted: IdentityReview, number: str = "X1234567", holder: Account | None = None) -> list[R]:
    return automatic_findings(submitted, holder or account(S.ACTIVE), number, TODAY)


def test_a2_a_matching_submission_has_no_findings() -> None:
    assert findings(review()) == []


@pytest.mark.parametrize(
    ("document_type", "number", "valid"),
    [
        (DocumentType.PASSPORT, "X12345", True),  # 6
        (DocumentType.PASSPORT, "X12345678", True),  # 9
        (DocumentType.PASSPORT, "X1234", False),  # 5: too short for a passport
        (DocumentType.PASSPORT, "X123456789", False),  # 10: too long for a passport
        (DocumentType.PASSPORT, "x12345", False),  # lower case (the handler upper-cases first)
        (DocumentType.PASSPORT, "X12-345", False),
        (DocumentType.NATIONAL_ID, "A1234", True),  # 5
        (DocumentType.NATIONAL_ID, "A" * 20, True),
        (DocumentType.NATIONAL_ID, "A123", False),
        (DocumentType.NATIONAL_ID, "A" * 21, False),
        (DocumentType.DRIVING_LICENCE, "D1234567890", True),
        (DocumentType.DRIVING_LICENCE, "D 12345", False),
    ],
)
def test_a2_the_document_number_must_have_its_type_s_form(
    document_type: DocumentType, number: str, valid: bool
) -> None:
    found = findings(review(document_type=document_type), number)
    assert found == ([] if valid else [R.DOCUMENT_NUMBER_INVALID])


def test_a2_document_numbers_are_normalised_and_masked() -> None:
    assert normalized_document_number(" x12-34 567 ") == "X1234567"
    assert mask_document("X1234567") == "******67"
    assert "X1234567" not in mask_document("X1234567")


def test_a2_under_18_on_the_day_before_the_18th_birthday_adult_on_it() -> None:
    birth = date(2008, 1, 2)
    assert age_on(birth, date(2026, 1, 1)) == 17
    assert age_on(birth, date(2026, 1, 2)) == 18
    assert findings(review(birth_date=birth)) == [R.UNDERAGE]  # TODAY is the day before
    assert findings(review(birth_date=date(2008, 1, 1))) == []  # TODAY is the 18th birthday


def test_a2_a_leap_day_birthday_comes_of_age_on_the_first_of_march() -> None:
    birth = date(2008, 2, 29)
    assert age_on(birth, date(2026, 2, 28)) == 17
    assert age_on(birth, date(2026, 3, 1)) == 18


@pytest.mark.parametrize(
    "written", ["ana li", "ANA LI", "Ána Lí", "  Ana   Li ", "Ana-Li", "\uff21\uff4e\uff41 \uff2c\uff49"]
)
def test_a2_names_match_ignoring_case_accents_and_spacing(written: str) -> None:
    assert normalized_name(written) == normalized_name("Ana Li")
    assert findings(review(legal_name=written)) == []


@pytest.mark.parametrize("written", ["Ana Lee", "Anna Li", "Li Ana", "Ana"])
def test_a2_a_different_name_is_a_mismatch(written: str) -> None:
    assert findings(review(legal_name=written)) == [R.NAME_MISMATCH]


def test_a2_the_documents_country_must_be_the_accounts_region() -> None:
    assert findings(review(country="CA")) == [R.COUNTRY_MISMATCH]


def test_a2_l2_needs_an_address_and_is_checked_against_the_verified_legal_name() -> None:
    verified = account(S.ACTIVE, level=VerificationLevel.L1, legal_name="Ana María Li", full_name="Ana Li")
    l2 = VerificationLevel.L2
    assert findings(review(l2, legal_name="Ana Maria Li", address="1 Main St"), holder=verified) == []
    assert findings(review(l2, legal_name="Ana Maria Li"), holder=verified) == [R.ADDRESS_MISSING]
    assert findings(review(l2, legal_name="Ana Maria Li", address="   "), holder=verified) == [R.ADDRESS_MISSING]
    # At L2 the name to match is the verified legal name, not the name given at registration.
    assert findings(review(l2, legal_name="Ana Li", address="1 Main St"), holder=verified) == [R.NAME_MISMATCH]


def test_a2_every_finding_is_reported_at_once_in_a_fixed_order() -> None:
    bad = review(VerificationLevel.L2, legal_name="Bo", birth_date=date(2015, 1, 1), country="CA")
    holder = account(S.ACTIVE, level=VerificationLevel.L1, legal_name="Ana Li")
    assert findings(bad, "1", holder) == [
        R.DOCUMENT_NUMBER_INVALID,
        R.UNDERAGE,
        R.NAME_MISMATCH,
        R.COUNTRY_MISMATCH,
        R.ADDRESS_MISSING,
    ]


def test_a2_levels_are_submitted_in_order() -> None:
    check_submission_order(account(S.ACTIVE), VerificationLevel.L1)
    check_submission_order(account(S.ACTIVE, level=VerificationLevel.L1), VerificationLevel.L2)
    for level, holder_level, code in [
        (VerificationLevel.L2, VerificationLevel.L0, "level_order"),
        (VerificationLevel.L0, VerificationLevel.L0, "invalid_level"),
        (VerificationLevel.L0, VerificationLevel.L1, "invalid_level"),
    ]:
        with pytest.raises(CommandRefused) as caught:
            check_submission_order(account(S.ACTIVE, level=holder_level), level)
        assert caught.value.code == code


def test_a2_a_review_is_decided_once_and_only_a_rejected_one_is_resubmitted() -> None:
    pending = review()
    with pytest.raises(CommandRefused, match="still being reviewed"):
        pending.resubmit(review())
    pending.reject([R.DOCUMENT_UNREADABLE, R.SUSPECTED_FRAUD], "op-ana")
    assert (pending.status, pending.reviewed_by) == (ReviewStatus.REJECTED, "op-ana")
    assert pending.rejection_reasons == [R.DOCUMENT_UNREADABLE, R.SUSPECTED_FRAUD]
    with pytest.raises(CommandRefused) as approving:
        pending.approve("op-bo")
    with pytest.raises(CommandRefused) as rejecting:
        pending.reject([R.UNDERAGE], "op-bo")
    assert approving.value.code == rejecting.value.code == "no_pending_review"
    assert pending.rejection_reasons == [R.DOCUMENT_UNREADABLE, R.SUSPECTED_FRAUD]  # the decision stands
    pending.resubmit(review(legal_name="Ana  Li", document_masked="*****12"))
    assert (pending.status, pending.reasons, pending.reviewed_by) == (ReviewStatus.SUBMITTED, "", None)
    assert (pending.submissions, pending.document_masked) == (2, "*****12")
    pending.approve("op-bo")
    assert (pending.status, pending.reviewed_by, pending.rejection_reasons) == (ReviewStatus.APPROVED, "op-bo", [])
    with pytest.raises(CommandRefused) as caught:
        pending.resubmit(review())
    assert caught.value.code == "already_verified"


# ---------------------------------------------------------------------------- A5 bindings


def grant(**fields: object) -> MarketplaceGrant:
    values: dict[str, object] = {
        "account_id": "buyer-1",
        "marketplace_id": "shop",
        "scopes": "pay",
        "expires_at": NOW + timedelta(days=30),
        "granted_at": NOW,
    }
    return MarketplaceGrant(**(values | fields))  # type: ignore[arg-type]


def test_a5_a_profile_of_the_same_person_in_the_same_country_matches() -> None:
    check_profile_matches(account(S.ACTIVE), "ANA  LÍ", "US")
    # Once verified, the legal name is what the profile must carry.
    verified = account(S.ACTIVE, legal_name="Ana María Li")
    check_profile_matches(verified, "ana maria li", "US")
    with pytest.raises(CommandRefused, match="binding_name_mismatch"):
        check_profile_matches(verified, "Ana Li", "US")


def test_a5_a_name_mismatch_names_the_field() -> None:
    with pytest.raises(CommandRefused) as caught:
        check_profile_matches(account(S.ACTIVE), "Bo Chen", "US")
    assert caught.value.code == "binding_name_mismatch"
    assert caught.value.reason.startswith("legal_name:")


def test_a5_a_country_mismatch_names_the_field() -> None:
    with pytest.raises(CommandRefused) as caught:
        check_profile_matches(account(S.ACTIVE), "Ana Li", "GB")
    assert caught.value.code == "binding_country_mismatch"
    assert caught.value.reason.startswith("country:")
    assert "GB" in caught.value.reason
    assert "US" in caught.value.reason


def test_a5_the_expiry_must_be_ahead() -> None:
    check_expiry_ahead(NOW + timedelta(seconds=1), NOW)
    for when in (NOW, NOW - timedelta(days=1)):
        with pytest.raises(CommandRefused) as caught:
            check_expiry_ahead(when, NOW)
        assert caught.value.code == "invalid_expiry"
        assert caught.value.reason.startswith("expires_at:")


def test_a5_a_live_grant_allows_its_scopes_only() -> None:
    live = grant(scopes="pay,refund")
    live.check_allows(BindingScope.PAY, NOW)
    live.check_allows(BindingScope.REFUND, NOW)
    with pytest.raises(PaymentDeclined) as caught:
        grant(scopes="refund").check_allows(BindingScope.PAY, NOW)
    assert caught.value.decline_reason is DeclineReason.BINDING_MISSING
    assert "'pay'" in caught.value.reason


def test_a5_a_grant_expires_at_its_expiry() -> None:
    expiring = grant()
    expiring.check_allows(BindingScope.PAY, expiring.expires_at - timedelta(microseconds=1))
    with pytest.raises(PaymentDeclined) as caught:
        expiring.check_allows(BindingScope.PAY, expiring.expires_at)
    assert caught.value.decline_reason is DeclineReason.BINDING_EXPIRED
    assert "grant it again" in caught.value.reason


def test_a5_a_revoked_grant_allows_nothing_until_granted_again() -> None:
    bound = grant()
    bound.revoke(NOW)
    with pytest.raises(PaymentDeclined) as caught:
        bound.check_allows(BindingScope.PAY, NOW)
    assert caught.value.decline_reason is DeclineReason.BINDING_MISSING
    assert "revoked" in caught.value.reason
    with pytest.raises(CommandRefused) as twice:
        bound.revoke(NOW)
    assert twice.value.code == "binding_missing"
    later = NOW + timedelta(days=1)
    bound.regrant([BindingScope.REFUND, BindingScope.PAY, BindingScope.PAY], later + timedelta(days=7), later)
    assert (bound.scopes, bound.granted_at, bound.revoked_at) == ("pay,refund", later, None)
    assert bound.scope_set == {BindingScope.PAY, BindingScope.REFUND}
    bound.check_allows(BindingScope.PAY, later)


# ---------------------------------------------------------------------------- A4 funding sources


def card(**fields: object) -> StoredSource:
    values: dict[str, object] = {
        "account_id": "buyer-1",
        "source_id": "card-1",
        "type": FundingType.CARD,
        "token": "tok_visa4242",
        "last4": "4242",
        "brand": CardBrand.VISA,
        "expiry_month": 1,
        "expiry_year": 2026,
    }
    return StoredSource(**(values | fields))  # type: ignore[arg-type]


def test_a4_a_card_is_good_through_the_last_day_of_its_month() -> None:
    assert not card_expired(1, 2026, date(2026, 1, 31))
    assert card_expired(1, 2026, date(2026, 2, 1))
    assert card_expired(12, 2025, date(2026, 1, 1))
    assert not card_expired(1, 2027, date(2026, 12, 31))
    good = card()
    good.check_usable(date(2026, 1, 31))
    with pytest.raises(PaymentDeclined) as caught:
        good.check_usable(date(2026, 2, 1))
    assert caught.value.decline_reason is DeclineReason.SOURCE_EXPIRED
    assert "visa ending 4242" in caught.value.reason
    assert "01/2026" in caught.value.reason


def test_a4_a_removed_source_fails_as_removed_even_when_also_expired() -> None:
    gone = card()
    gone.remove(NOW)
    with pytest.raises(PaymentDeclined) as caught:
        gone.check_usable(date(2030, 1, 1))
    assert caught.value.decline_reason is DeclineReason.SOURCE_REMOVED
    with pytest.raises(CommandRefused) as twice:
        gone.remove(NOW)
    assert twice.value.code == "source_removed"


def test_a4_a_bank_account_never_expires_and_shows_only_its_last_four() -> None:
    bank = StoredSource("buyer-1", "bank-1", FundingType.BANK_ACCOUNT, "tok_bank0001", "3000", country="DE")
    bank.check_usable(date(2100, 1, 1))
    assert bank.describe() == "bank account ending 3000"
    public = bank.public()
    assert (public.type, public.last4, public.brand, public.expiry_month) == (
        FundingType.BANK_ACCOUNT,
        "3000",
        None,
        None,
    )


def test_a4_the_public_view_carries_no_token() -> None:
    public = card().public()
    assert "tok_" not in public.model_dump_json()
    assert (public.brand, public.last4, public.expiry_month, public.expiry_year) == (CardBrand.VISA, "4242", 1, 2026)


def test_a4_re_adding_a_source_id_must_describe_the_same_source() -> None:
    card().check_same(card(brand=None))  # type, token and last four decide
    for other in (card(token="tok_other0001"), card(last4="1111"), card(type=FundingType.BANK_ACCOUNT)):
        with pytest.raises(CommandRefused) as caught:
            card().check_same(other)
        assert caught.value.code == "source_exists"
    removed = replace(card(), removed_at=NOW)
    with pytest.raises(CommandRefused, match="source_exists"):
        removed.check_same(card())
