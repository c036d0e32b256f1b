"""N1: every user-visible event has a template in every language, renders in it, formats money per
currency and locale, escapes HTML, explains payment failures and never shows a card number."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest

from contracts import (
    MESSAGE_TYPES,
    AccountStatus,
    AccountStatusChanged,
    DeclineReason,
    Event,
    IdentityRejectionReason,
    Money,
    OrderStatus,
    OrderStatusChanged,
    PaymentFailed,
)
from services.notification.domain.rendering import (
    LANGUAGES,
    AdviceBook,
    Renderer,
    card_label,
    format_money,
    language_for,
)
from services.notification.domain.rules import NOT_USER_FACING, RULES, NoticeKind, Rule
from tests.support.examples import example

RENDERER = Renderer()


def instance_for(rule: Rule) -> Event:
    """An example of the rule's event that the rule applies to."""
    event = example(rule.event)
    if rule.applies(event):
        return event
    if rule.event is AccountStatusChanged:
        previous: list[AccountStatus | None] = [None, *AccountStatus]
        for status, before in itertools.product(AccountStatus, previous):
            candidate = event.model_copy(update={"status": status, "previous_status": before})
            if rule.applies(candidate):
                return candidate
    if rule.event is OrderStatusChanged:
        for order_status in OrderStatus:
            candidate = event.model_copy(update={"status": order_status})
            if rule.applies(candidate):
                return candidate
    raise AssertionError(f"no example of {rule.event.__name__} that {rule.kind} applies to")


def context(rule: Rule, event: Event, **extra: Any) -> dict[str, Any]:
    return {
        "event": event,
        "name": "Ana Li",
        "category": rule.category.value,
        "card": None,
        "reason_code": None,
    } | extra


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("rule", RULES, ids=lambda r: f"{r.event.__name__}->{r.kind.value}")
def test_n1_every_user_visible_kind_has_a_template_that_renders_in_every_language(rule: Rule, language: str) -> None:
    assert RENDERER.has_template(rule.kind, language), f"templates/{language}/{rule.kind.value}.txt is missing"
    rendered = RENDERER.render(rule.kind, language, context(rule, instance_for(rule)))
    assert rendered.language == language
    assert rendered.subject
    assert "\n" not in rendered.subject
    assert "Ana Li" in rendered.text
    assert rendered.html.lstrip().startswith("<!DOCTYPE html>")
    assert f'lang="{language}"' in rendered.html


def test_n1_every_kind_has_a_rule_and_templates_exist_for_no_other_kind() -> None:
    assert {rule.kind for rule in RULES} == set(NoticeKind)
    for language in LANGUAGES:
        files = {p.stem for p in (RENDERER.templates / language).glob("*.txt") if not p.name.startswith("_")}
        assert files == {kind.value for kind in NoticeKind}, language


def test_n1_every_contract_event_is_in_the_table_or_named_not_user_facing() -> None:
    events = {m.message_type for m in MESSAGE_TYPES if issubclass(m, Event)}
    notified = {rule.event.message_type for rule in RULES}
    forgotten = events - notified - set(NOT_USER_FACING)
    assert not forgotten, f"add these to RULES or NOT_USER_FACING in services/notification/domain/rules.py: {forgotten}"
    assert not notified & set(NOT_USER_FACING)
    assert set(NOT_USER_FACING) <= events, "NOT_USER_FACING names no command or unknown type"


@pytest.mark.parametrize(
    ("minor", "currency", "language", "shown"),
    [
        (12999, "USD", "en", "$129.99"),
        (12999, "USD", "zh-CN", "US$129.99"),
        (1235, "JPY", "en", "¥1,235"),  # no minor unit
        (1235, "JPY", "zh-CN", "JP¥1,235"),
        (1250, "KWD", "en", "KWD1.250"),  # three decimals
        (100000001, "EUR", "en", "€1,000,000.01"),  # exact from integer minor units: no float rounding
    ],
)
def test_n1_money_is_formatted_per_currency_and_locale(minor: int, currency: str, language: str, shown: str) -> None:
    assert format_money(Money(amount_minor=minor, currency=currency), language) == shown


def test_n1_language_falls_back_to_english() -> None:
    assert language_for("zh-CN") == "zh-CN"
    assert language_for("fr") == "en"
    assert language_for("zh-TW") == "en"
    assert language_for(None) == "en"


def failed(reason: str, currency: str = "USD", minor: int = 12999) -> PaymentFailed:
    return PaymentFailed(
        order_id="order-1",
        buyer_id="buyer-1",
        amount=Money(amount_minor=minor, currency=currency),
        reason=reason,
        detail="an English detail for logs, never shown",
        permanent=True,
    )


def payment_failed_rule() -> Rule:
    return next(rule for rule in RULES if rule.kind is NoticeKind.PAYMENT_FAILED)


def test_n1_payment_failure_says_the_reason_in_plain_words_and_the_next_step_in_chinese() -> None:
    rule = payment_failed_rule()
    rendered = RENDERER.render(
        rule.kind, "zh-CN", context(rule, failed("insufficient_funds", "JPY", 5000), card="Visa •••• 4242")
    )
    assert rendered.subject == "订单 order-1 付款失败"
    assert "JP¥5,000" in rendered.text
    assert "余额不足" in rendered.text
    assert "下一步：请为钱包充值" in rendered.text  # noqa: RUF001 - the Chinese full-width colon
    assert "Visa •••• 4242" in rendered.text
    assert "never shown" not in rendered.text


@pytest.mark.parametrize("code", [*DeclineReason, "do_not_honor", "card_expired", "issuer_unavailable"])
def test_n1_every_decline_reason_has_its_own_advice(code: str) -> None:
    book = AdviceBook.load()
    assert code in book.codes("payment_failure")
    for language in LANGUAGES:
        advice = book.advise("payment_failure", code, language)
        assert advice.reason
        assert advice.next_step


def test_n1_every_identity_rejection_reason_has_advice() -> None:
    assert {r.value for r in IdentityRejectionReason} <= AdviceBook.load().codes("identity_rejection")


def test_n1_an_unknown_failure_code_gets_the_default_advice() -> None:
    rule = payment_failed_rule()
    rendered = RENDERER.render(rule.kind, "en", context(rule, failed("something_new")))
    assert "could not be completed" in rendered.text
    assert "contact support" in rendered.text


def test_n1_html_is_autoescaped_and_the_plain_text_is_not() -> None:
    rule = payment_failed_rule()
    rendered = RENDERER.render(rule.kind, "en", context(rule, failed("do_not_honor"), name="<script>x</script> & Co"))
    assert "<script>" not in rendered.html
    assert "&lt;script&gt;x&lt;/script&gt; &amp; Co" in rendered.html
    assert "<script>x</script> & Co" in rendered.text


def test_n1_a_card_is_only_ever_its_brand_and_last_four() -> None:
    assert card_label("visa", "4242") == "Visa •••• 4242"
    assert card_label("amex", "0005") == "American Express •••• 0005"
    assert card_label("visa", "4242424242424242") is None  # more than four digits is never shown
    assert card_label(None, None) is None


def test_n1_a_template_naming_a_missing_field_fails_loudly(tmp_path: Any) -> None:
    from jinja2 import UndefinedError

    (tmp_path / "en").mkdir()
    for name in ("_email.txt", "_email.html"):
        (tmp_path / "en" / name).write_text((RENDERER.templates / "en" / name).read_text())
    (tmp_path / "_subject.txt").write_text((RENDERER.templates / "_subject.txt").read_text())
    (tmp_path / "en" / "payment_failed.txt").write_text(
        "{% extends layout %}{% block subject %}{{ event.no_such_field }}{% endblock %}"
    )
    rule = payment_failed_rule()
    with pytest.raises(UndefinedError):
        Renderer(tmp_path).render(rule.kind, "en", context(rule, failed("x")))


def test_n1_no_rendered_message_holds_a_long_digit_run() -> None:
    """Nothing that could be a card or account number (more than 8 digits in a row)."""
    for rule, language in itertools.product(RULES, LANGUAGES):
        rendered = RENDERER.render(rule.kind, language, context(rule, instance_for(rule), card="Visa •••• 4242"))
        assert not re.search(r"\d{9,}", rendered.text + rendered.subject), (rule.kind, language)
