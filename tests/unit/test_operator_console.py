"""G3/S6 operator console, in process: sign-in, sessions that expire, CSRF on every action, the
confirmation step, and the plans the desk makes from forms (nothing sent for a bad one).

The pages against a real stack, in a real browser, are tests/e2e/test_console.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from contracts import DisputeResolution, Money, OperatorOrderAction, RejectIdentity, ResolveDispute, UnlockAccount
from scripts.console.app import create_app
from scripts.console.auth import OperatorAccount, Sessions, hash_password
from scripts.console.desk import ActionRefused, plan
from scripts.console.settings import ConsoleSettings, local_password

PASSWORD = "correct horse battery"
NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
ORDER = {"order_id": "order-1", "amount": {"amount_minor": 3000, "currency": "USD"}}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = ConsoleSettings(state_dir=tmp_path, password_hash=hash_password(PASSWORD))
    # No broker and no stack here: pages show what could not be read, actions are not carried out.
    with TestClient(create_app(settings, "127.0.0.1:1")) as client:
        yield client


def signed_in(client: TestClient) -> str:
    """Sign in; the session's CSRF token, as every page's forms carry it."""
    response = client.post("/signin", data={"operator_id": "ops", "password": PASSWORD, "next": "/audit"})
    assert response.status_code == 200
    found = re.search(r'name="csrf_token" value="([^"]+)"', response.text)
    assert found is not None
    return found.group(1)


# --- signing in --------------------------------------------------------------------------------


def test_g3_every_page_asks_for_sign_in_first(client: TestClient) -> None:
    for path in ("/stuck", "/orders/order-1", "/identities", "/accounts", "/dead-letters", "/notifications", "/audit"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"] == f"/signin?next={path}"
    refused = client.post("/act/cancel/order-1", data={"reason": "x"}, follow_redirects=False)
    assert refused.status_code == 303


def test_g3_a_wrong_password_or_operator_is_refused_without_saying_which(client: TestClient) -> None:
    wrong_password = client.post("/signin", data={"operator_id": "ops", "password": "nope"})
    wrong_operator = client.post("/signin", data={"operator_id": "root", "password": PASSWORD})
    for response in (wrong_password, wrong_operator):
        assert response.status_code == 401
        assert "wrong operator or password" in response.text
        assert "tg_console_session" not in response.headers.get("set-cookie", "")


def test_g3_signing_in_opens_a_session_the_cookie_names_only(client: TestClient) -> None:
    response = client.post(
        "/signin", data={"operator_id": "ops", "password": PASSWORD, "next": "/audit"}, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/audit"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "ops" not in cookie.split(";")[0]  # a random id, nothing about the operator
    assert client.get("/audit").status_code == 200


def test_g3_sign_in_goes_back_only_to_a_page_of_this_site(client: TestClient) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        response = client.post(
            "/signin", data={"operator_id": "ops", "password": PASSWORD, "next": target}, follow_redirects=False
        )
        assert response.headers["location"] == "/stuck", target


def test_g3_signing_out_ends_the_session(client: TestClient) -> None:
    token = signed_in(client)
    client.post("/signout", data={"csrf_token": token})
    assert client.get("/audit", follow_redirects=False).status_code == 303


def test_g3_a_session_ends_after_its_idle_time_and_lives_on_while_used() -> None:
    sessions = Sessions(timedelta(minutes=30))
    session_id = sessions.open("ops", NOW)
    assert sessions.find(session_id, NOW + timedelta(minutes=29)) is not None  # used: 30 minutes more
    assert sessions.find(session_id, NOW + timedelta(minutes=58)) is not None
    assert sessions.find(session_id, NOW + timedelta(minutes=89)) is None
    assert sessions.find(session_id, NOW + timedelta(minutes=90)) is None  # and forgotten
    assert sessions.find("made-up", NOW) is None


def test_g3_no_password_configured_means_nobody_signs_in() -> None:
    assert not OperatorAccount("ops", "").check("ops", "")
    assert not OperatorAccount("ops", "not an argon2 hash").check("ops", "anything")
    assert OperatorAccount("ops", hash_password("pw-1")).check("ops", "pw-1")


def test_g3_the_local_password_is_made_once_and_readable_by_its_owner_only(tmp_path: Path) -> None:
    settings = ConsoleSettings(state_dir=tmp_path)
    first = local_password(settings)
    assert len(first) >= 16
    assert local_password(settings) == first
    assert settings.password_file.stat().st_mode & 0o077 == 0


# --- acting: CSRF and the confirmation ---------------------------------------------------------


def test_g3_an_action_without_the_sessions_csrf_token_is_refused(client: TestClient) -> None:
    signed_in(client)
    form = {"action_id": "a-1", "reason": "buyer asked"}
    for token in (None, "forged"):
        posted = form if token is None else {**form, "csrf_token": token}
        response = client.post("/act/cancel/order-1", data=posted)
        assert response.status_code == 403
        assert "CSRF" in response.text


def test_s6_an_action_is_confirmed_on_a_page_of_its_own_before_anything_is_sent(client: TestClient) -> None:
    token = signed_in(client)
    response = client.post(
        "/act/cancel/order-1", data={"csrf_token": token, "action_id": "a-2", "reason": "buyer asked", "back": "/stuck"}
    )
    assert response.status_code == 200
    assert "Confirm" in response.text
    assert "Cancel the order (what was paid comes back): order order-1" in response.text
    assert 'name="confirmed" value="yes"' in response.text
    assert 'name="action_id" value="a-2"' in response.text  # the same action, whenever it is confirmed
    assert client.get("/audit").text.count("<code>a-2</code>") == 0  # nothing carried out


def test_s6_a_form_that_makes_no_action_says_what_is_wrong_and_sends_nothing(client: TestClient) -> None:
    token = signed_in(client)
    response = client.post("/act/cancel/order-1", data={"csrf_token": token, "action_id": "a-3", "reason": "x"})
    assert response.status_code == 400
    assert "nothing was sent: reason: 3 to 500 characters, not 1" in response.text


def test_g3_pages_say_which_service_could_not_answer(client: TestClient) -> None:
    signed_in(client)
    page = client.get("/stuck")
    assert page.status_code == 200
    assert "endpoints.json" in page.text  # no stack in this folder: said, not a crash
    assert page.headers["x-frame-options"] == "DENY"
    assert "default-src 'self'" in page.headers["content-security-policy"]


# --- the plans ---------------------------------------------------------------------------------


def test_s6_an_order_action_names_the_operator_the_reason_and_its_own_id() -> None:
    planned = plan("retry_now", "order-1", {"action_id": "a-4", "reason": "issuer back"}, "ops", None)
    assert isinstance(planned.command, OperatorOrderAction)
    assert (planned.command.action, planned.command.operator_id, planned.command.reason) == (
        "retry_now",
        "ops",
        "issuer back",
    )
    assert planned.command.action_id == "a-4"
    assert planned.idempotency_key == "OperatorOrderAction:order-1:a-4"


def test_e3_a_split_is_exact_minor_units_of_the_orders_currency() -> None:
    form = {"action_id": "a-5", "reason": "photos", "dispute_id": "d-1", "resolution": "split", "refund": "12.50"}
    planned = plan("resolve", "order-1", form, "ops", ORDER)
    assert isinstance(planned.command, ResolveDispute)
    assert planned.command.resolution is DisputeResolution.SPLIT
    assert planned.command.refund == Money(amount_minor=1250, currency="USD")
    assert "12.50 USD back to the buyer" in planned.summary
    with pytest.raises(ActionRefused, match="decimal"):
        plan("resolve", "order-1", {**form, "refund": "12.505"}, "ops", ORDER)
    with pytest.raises(ActionRefused, match="resolution"):
        plan("resolve", "order-1", {**form, "resolution": "half"}, "ops", ORDER)


@pytest.mark.parametrize(
    ("kind", "form", "problem"),
    [
        ("cancel", {"reason": "buyer asked"}, "action_id"),
        ("cancel", {"action_id": "a b", "reason": "buyer asked"}, "action_id"),
        ("reject_identity", {"action_id": "a-6", "reason": "blurred", "level": "L1"}, "reasons"),
        ("reject_identity", {"action_id": "a-6", "reason": "blurred", "level": "L1", "reasons": "ugly"}, "ugly"),
        ("redrive_letter", {"action_id": "a-7", "reason": "fixed"}, "partition"),
        ("launch_rocket", {"action_id": "a-8", "reason": "why not"}, "no such action"),
    ],
)
def test_s6_a_bad_form_is_refused_naming_the_field(kind: str, form: dict[str, str], problem: str) -> None:
    subject = "not-an-id" if kind == "redrive_letter" else "acct-1"
    with pytest.raises(ActionRefused, match=problem):
        plan(kind, subject, form, "ops", None)


def test_a2_a6_identity_and_unlock_actions_carry_the_operator() -> None:
    rejected = plan(
        "reject_identity",
        "buyer-1",
        {"action_id": "a-9", "reason": "blurred", "level": "L1", "reasons": "document_unreadable"},
        "ops",
        None,
    )
    assert isinstance(rejected.command, RejectIdentity)
    assert rejected.command.operator_id == "ops"
    unlocked = plan("unlock", "buyer-1", {"action_id": "a-10", "reason": "proof of id seen"}, "ops", None)
    assert isinstance(unlocked.command, UnlockAccount)
    assert unlocked.command.reason == "proof of id seen"
