"""N1: every user-visible event has a template in every language, renders in it, formats money per
currency and locale, escapes HTML, explains payment failures and never shows a card number."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from contracts import (
    MESSAGE_TYPES,
    AccountStatus,
    AccountStatusChanged,
    AutoReleaseApproaching,
    DeclineReason,
    DisputeOpened,
    DisputeReason,
    DisputeResolution,
    DisputeResolved,
    Event,
    IdentityRejectionReason,
    Money,
    OrderStatus,
    OrderStatusChanged,
    PaymentFailed,
    ProtectionExtended,
)
from services.notification.domain.reasons import read_reason
from services.notification.domain.rendering import (
    LANGUAGES,
    AdviceBook,
    Rendered,
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
    if rule.event is PaymentFailed:
        candidate = event.model_copy(update={"permanent": True})
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
        "gave_up_after": None,
        "unpaid": False,
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


def usd(minor: int) -> Money:
    return Money(amount_minor=minor, currency="USD")


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


# ---------------------------------------------------------------------- the contracts' newer events (0.6.0)

RELEASE_AT = datetime(2026, 3, 15, 9, 30, tzinfo=UTC)


def rule_of(kind: NoticeKind) -> Rule:
    return next(rule for rule in RULES if rule.kind is kind)


def render(kind: NoticeKind, language: str, event: Event, **extra: Any) -> Rendered:
    rule = rule_of(kind)
    return RENDERER.render(kind, language, context(rule, event, **extra))


def resolved(resolution: DisputeResolution, refund: int, release: int, decided_by: str) -> DisputeResolved:
    return DisputeResolved(
        order_id="order-1",
        dispute_id="d-1",
        buyer_id="buyer-1",
        seller_id="seller-1",
        resolution=resolution,
        refund=Money(amount_minor=refund, currency="JPY"),
        release=Money(amount_minor=release, currency="JPY"),
        decided_by=decided_by,
        reason="two of the five cups arrived broken",
    )


@pytest.mark.parametrize(
    ("language", "date", "amount", "ways_out"),
    [
        (
            "en",
            "Mar 15, 2026, 9:30:00\u202fAM (UTC)",  # CLDR puts a narrow no-break space before AM
            "$129.99",
            ("confirm receipt", "extend your protection", "dispute"),
        ),
        ("zh-CN", "2026年3月15日 09:30:00（UTC）", "US$129.99", ("确认收货", "延长保障期", "提起争议")),  # noqa: RUF001
    ],
)
def test_n1_the_auto_release_reminder_says_when_the_seller_is_paid_and_the_ways_out(
    language: str, date: str, amount: str, ways_out: tuple[str, ...]
) -> None:
    event = AutoReleaseApproaching(
        order_id="order-1", buyer_id="buyer-1", seller_id="seller-1", amount=usd(12999), release_at=RELEASE_AT
    )
    rendered = render(NoticeKind.AUTO_RELEASE_APPROACHING, language, event)
    assert date in rendered.text
    assert amount in rendered.text
    for words in ways_out:
        assert words in rendered.text
        assert words in rendered.html


@pytest.mark.parametrize("kind", [NoticeKind.PROTECTION_EXTENDED, NoticeKind.PROTECTION_EXTENDED_SELLER])
def test_n1_an_extended_protection_tells_both_parties_the_new_date(kind: NoticeKind) -> None:
    event = ProtectionExtended(order_id="order-1", buyer_id="buyer-1", seller_id="seller-1", release_at=RELEASE_AT)
    assert "Mar 15, 2026" in render(kind, "en", event).text
    assert "2026年3月15日" in render(kind, "zh-CN", event).text


def opened(description: str = "") -> DisputeOpened:
    return DisputeOpened(
        order_id="order-1",
        dispute_id="d-1",
        buyer_id="buyer-1",
        seller_id="seller-1",
        amount=Money(amount_minor=5000, currency="JPY"),
        reason=DisputeReason.DAMAGED,
        description=description,
        answer_by=RELEASE_AT,
    )


def test_n1_a_dispute_tells_the_seller_its_reason_the_deadline_and_what_silence_costs() -> None:
    en = render(NoticeKind.DISPUTE_OPENED_SELLER, "en", opened("Box <crushed> & wet"))
    assert "the goods arrived damaged" in en.text
    assert "Mar 15, 2026, 9:30:00\u202fAM (UTC)" in en.text
    assert "refunded in full" in en.text
    assert "¥5,000" in en.text
    assert "Box <crushed> & wet" in en.text
    assert "Box &lt;crushed&gt; &amp; wet" in en.html  # the buyer's words cannot inject markup
    zh = render(NoticeKind.DISPUTE_OPENED_SELLER, "zh-CN", opened())
    assert "商品到货时已损坏" in zh.text
    assert "2026年3月15日" in zh.text
    assert "JP¥5,000" in zh.text
    assert "买家的说明" not in zh.text  # no description, no empty quote


def test_n1_a_dispute_tells_the_buyer_it_was_received_and_when_the_seller_must_answer() -> None:
    en = render(NoticeKind.DISPUTE_OPENED, "en", opened())
    assert "We received your dispute" in en.subject
    assert "frozen" in en.text
    assert "Mar 15, 2026, 9:30:00\u202fAM (UTC)" in en.text
    zh = render(NoticeKind.DISPUTE_OPENED, "zh-CN", opened())
    assert "已被冻结" in zh.text
    assert "2026年3月15日 09:30:00（UTC）前答复" in zh.text  # noqa: RUF001 - Chinese full-width parentheses


@pytest.mark.parametrize(
    ("kind", "language", "expected"),
    [
        (NoticeKind.DISPUTE_RESOLVED, "en", "¥2,000 goes back to you and ¥3,000 goes to the seller"),
        (NoticeKind.DISPUTE_RESOLVED, "zh-CN", "JP¥2,000 退还给您，JP¥3,000 付给卖家"),  # noqa: RUF001
        (NoticeKind.DISPUTE_RESOLVED_SELLER, "en", "¥3,000 is released to you and ¥2,000 goes back to the buyer"),
        (NoticeKind.DISPUTE_RESOLVED_SELLER, "zh-CN", "JP¥3,000 付给您，JP¥2,000 退还给买家"),  # noqa: RUF001
    ],
)
def test_n1_a_split_resolution_formats_each_part_per_locale_and_names_the_operators_reason(
    kind: NoticeKind, language: str, expected: str
) -> None:
    rendered = render(kind, language, resolved(DisputeResolution.SPLIT, 2000, 3000, "operator:ops-alice"))
    assert expected in rendered.text
    assert "two of the five cups arrived broken" in rendered.text
    assert "ops-alice" not in rendered.text + rendered.html  # an operator, never which one


def test_n1_a_resolution_by_the_deadline_says_the_seller_did_not_answer() -> None:
    event = resolved(DisputeResolution.REFUND_IN_FULL, 5000, 0, "deadline")
    buyer = render(NoticeKind.DISPUTE_RESOLVED, "en", event)
    assert "The seller did not answer your dispute" in buyer.text
    assert "¥5,000 goes back to you." in buyer.text
    assert "¥0" not in buyer.text
    seller = render(NoticeKind.DISPUTE_RESOLVED_SELLER, "zh-CN", event)
    assert "您未在期限内答复" in seller.text
    assert "JP¥5,000 退还给买家" in seller.text
    assert "裁决理由" not in seller.text  # the deadline's reason is machine words: not shown


def test_n1_a_release_resolution_pays_the_seller_and_refunds_nothing() -> None:
    event = resolved(DisputeResolution.RELEASE, 0, 5000, "operator:ops-1")
    buyer = render(NoticeKind.DISPUTE_RESOLVED, "en", event)
    assert "the ¥5,000 held in escrow goes to the seller" in buyer.text
    assert "refund" not in buyer.text.lower().split("what to do next")[-1]
    seller = render(NoticeKind.DISPUTE_RESOLVED_SELLER, "en", event)
    assert "the ¥5,000 held in escrow is released to you" in seller.text


def cancelled(reason: str | None) -> OrderStatusChanged:
    return OrderStatusChanged(
        order_id="order-1",
        buyer_id="buyer-1",
        seller_id="seller-1",
        amount=usd(2500),
        status=OrderStatus.CANCELLED,
        reason=reason,
    )


def cancellation(reason: str | None, language: str) -> Rendered:
    read = read_reason(reason)
    return render(
        NoticeKind.ORDER_CANCELLED,
        language,
        cancelled(reason),
        reason_code=read.code,
        gave_up_after=read.gave_up_after,
        unpaid=read.unpaid,
    )


def test_n1_an_order_cancelled_after_the_retries_says_how_often_we_tried_and_why() -> None:
    """S2: a transient failure is not told; the cancellation once the retries are spent is, with the reason."""
    reason = "issuer_unavailable: the card issuer did not answer (gave up after 4 attempts)"
    en = cancellation(reason, "en")
    assert "we tried 4 times to take the payment" in en.text
    assert "did not answer in time; you were not charged" in en.text
    assert "the card issuer did not answer" not in en.text  # the saga's detail is for logs
    zh = cancellation(reason, "zh-CN")
    assert "我们尝试扣款 4 次均未成功" in zh.text
    assert "发卡行未能及时响应" in zh.text


def test_n1_an_order_cancelled_unpaid_says_so_with_the_last_failure() -> None:
    en = cancellation(
        "payment_window_expired: not paid within the payment window (last failure: insufficient_funds: 10.00 held)",
        "en",
    )
    assert "was cancelled because it was not paid in time" in en.text
    assert "not enough money" in en.text
    bare = cancellation("payment_window_expired: not paid within the payment window", "zh-CN")
    assert "未在付款期限内完成付款" in bare.text
    assert "请重新下单" in bare.text
    assert bare.html.count("<p>") >= 3  # greeting, the cancellation, the refund line: paragraphs kept apart


@pytest.mark.parametrize("language", LANGUAGES)
def test_n1_an_operators_cancellation_reason_is_not_shown_as_a_payment_failure(language: str) -> None:
    rendered = cancellation("cancelled by ops-1: the buyer asked", language)
    assert "ops-1" not in rendered.text
    assert rendered.subject
