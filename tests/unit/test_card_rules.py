"""Feature A4: the funding simulator vault's rules for cards and bank accounts (pure, no I/O)."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.funding_sources import CardBrand
from services.funding.cards import (
    Behaviour,
    CardRefused,
    InstrumentRefused,
    ScriptedCardsInvalid,
    card_brand,
    check_card,
    check_card_number,
    check_cvc,
    check_expiry,
    check_iban,
    iban_last4,
    iban_valid,
    luhn_check_digit,
    luhn_valid,
    scripted_cards_from_toml,
)
from services.funding.vault import load_scripted_cards

TODAY = date(2026, 6, 15)


def with_check_digit(payload: str) -> str:
    return payload + luhn_check_digit(payload)


def card_of(prefix: str, length: int) -> str:
    """A Luhn-valid number of ``length`` digits starting with ``prefix``."""
    return with_check_digit(prefix.ljust(length - 1, "0"))


class TestLuhn:
    """A4: the number is checked by Luhn."""

    @pytest.mark.parametrize(
        "number", ["4242424242424242", "4242 4242 4242 4242", "4242-4242-4242-4242", "378282246310005", "79927398713"]
    )
    def test_published_numbers_pass(self, number: str) -> None:
        assert luhn_valid(number)

    @pytest.mark.parametrize(
        "number", ["4242424242424241", "79927398710", "", "0", "4242x42424242424", "\uff14\uff12\uff14\uff12"]
    )
    def test_wrong_or_malformed_numbers_fail(self, number: str) -> None:
        # the last: full-width digits, which str.isdigit() would take
        assert not luhn_valid(number)

    @given(st.text(alphabet="0123456789", min_size=1, max_size=30))
    def test_the_right_check_digit_makes_any_digit_string_valid(self, payload: str) -> None:
        valid = [d for d in "0123456789" if luhn_valid(payload + d)]
        assert valid == [luhn_check_digit(payload)]

    @given(st.text(alphabet="0123456789", min_size=2, max_size=19), st.integers(min_value=0, max_value=18))
    def test_changing_one_digit_breaks_a_valid_number(self, payload: str, position: int) -> None:
        number = with_check_digit(payload)
        i = position % len(number)
        changed = number[:i] + str((int(number[i]) + 1) % 10) + number[i + 1 :]
        assert not luhn_valid(changed)


class TestBrands:
    """A4: the brand comes from the IIN range, with that brand's lengths."""

    @pytest.mark.parametrize(
        ("prefix", "length", "brand"),
        [
            ("4", 13, CardBrand.VISA),
            ("4", 16, CardBrand.VISA),
            ("4", 19, CardBrand.VISA),
            ("51", 16, CardBrand.MASTERCARD),
            ("55", 16, CardBrand.MASTERCARD),
            ("2221", 16, CardBrand.MASTERCARD),
            ("2720", 16, CardBrand.MASTERCARD),
            ("34", 15, CardBrand.AMEX),
            ("37", 15, CardBrand.AMEX),
            ("6011", 16, CardBrand.DISCOVER),
            ("644", 17, CardBrand.DISCOVER),
            ("649", 18, CardBrand.DISCOVER),
            ("65", 19, CardBrand.DISCOVER),
            ("3528", 16, CardBrand.JCB),
            ("3589", 19, CardBrand.JCB),
            ("62", 16, CardBrand.UNIONPAY),
            ("62", 19, CardBrand.UNIONPAY),
        ],
    )
    def test_each_range_names_its_brand(self, prefix: str, length: int, brand: CardBrand) -> None:
        assert card_brand(card_of(prefix, length)) is brand

    @pytest.mark.parametrize(
        ("prefix", "length"),
        [
            ("50", 16),  # just below mastercard's 51
            ("56", 16),  # just above 55
            ("2220", 16),  # just below the 2-series
            ("2721", 16),  # just above it
            ("35", 15),  # neither amex (34/37) nor jcb (3528-3589)
            ("3527", 16),
            ("3590", 16),
            ("6010", 16),
            ("643", 16),
            ("36", 14),  # Diners Club: not a brand we take
            ("1", 16),
        ],
    )
    def test_numbers_outside_every_range_have_no_brand(self, prefix: str, length: int) -> None:
        assert card_brand(card_of(prefix, length)) is None

    @pytest.mark.parametrize(
        ("prefix", "length"), [("4", 15), ("4", 17), ("51", 15), ("51", 19), ("34", 16), ("6011", 15), ("62", 15)]
    )
    def test_a_length_the_brand_does_not_issue_has_no_brand(self, prefix: str, length: int) -> None:
        assert card_brand(card_of(prefix, length)) is None

    def test_refusals_say_which_rule_and_which_brands_are_supported(self) -> None:
        with pytest.raises(CardRefused) as luhn:
            check_card_number("4242424242424241")
        assert (luhn.value.field, luhn.value.rule, luhn.value.message) == (
            "number",
            "luhn",
            "number: fails the Luhn check",
        )
        with pytest.raises(CardRefused) as brand:
            check_card_number("36227206271667")
        assert brand.value.rule == "brand"
        assert brand.value.message.startswith("number: brand not recognised (supported: visa, mastercard, amex")
        with pytest.raises(CardRefused) as length:
            check_card_number(card_of("51", 19))
        assert length.value.message == "number: a mastercard number has 16 digits, not 19"


class TestExpiry:
    """A4: a card is valid through the last day of its expiry month."""

    def test_valid_on_the_last_day_of_the_month(self) -> None:
        check_expiry(11, 2026, date(2026, 11, 30))
        check_expiry(2, 2028, date(2028, 2, 29))  # leap year

    def test_expired_the_next_day(self) -> None:
        with pytest.raises(CardRefused) as refused:
            check_expiry(11, 2026, date(2026, 12, 1))
        assert (refused.value.field, refused.value.rule) == ("expiry", "expired")
        assert refused.value.message == "expiry: the card expired at the end of 11/2026"

    def test_december_expires_at_the_turn_of_the_year(self) -> None:
        check_expiry(12, 2026, date(2026, 12, 31))
        with pytest.raises(CardRefused):
            check_expiry(12, 2026, date(2027, 1, 1))

    @pytest.mark.parametrize(
        ("month", "year", "field"),
        [(0, 2030, "expiry_month"), (13, 2030, "expiry_month"), (12, 30, "expiry_year"), (1, 2101, "expiry_year")],
    )
    def test_impossible_dates_are_refused_by_field(self, month: int, year: int, field: str) -> None:
        with pytest.raises(CardRefused) as refused:
            check_expiry(month, year, TODAY)
        assert (refused.value.field, refused.value.rule) == (field, "range")


class TestCvc:
    def test_amex_takes_four_digits_and_the_others_three(self) -> None:
        check_cvc("1234", CardBrand.AMEX)
        check_cvc("123", CardBrand.VISA)
        for cvc, brand in [
            ("123", CardBrand.AMEX),
            ("1234", CardBrand.VISA),
            ("12a", CardBrand.VISA),
            ("", CardBrand.JCB),
        ]:
            with pytest.raises(CardRefused) as refused:
                check_cvc(cvc, brand)
            assert (refused.value.field, refused.value.rule) == ("cvc", "format")


class TestIban:
    """A4: bank accounts by IBAN (ISO 13616 mod-97)."""

    @pytest.mark.parametrize(
        "iban",
        [
            "DE89370400440532013000",
            "DE89 3704 0044 0532 0130 00",
            "GB82 WEST 1234 5698 7654 32",
            "FR14 2004 1010 0505 0001 3M02 606",
            "NL91ABNA0417164300",
            "BE68539007547034",
            "NO9386011117947",
            "gb82west12345698765432",
        ],
    )
    def test_valid_ibans(self, iban: str) -> None:
        assert iban_valid(iban)

    @pytest.mark.parametrize(
        ("iban", "rule"),
        [
            ("", "required"),
            ("DE89 3704 0044 0532 0130 01", "checksum"),  # one digit changed
            ("DE88370400440532013000", "checksum"),  # wrong check digits
            ("DE8937040044053201300", "length"),  # one character short
            ("DEXX370400440532013000", "checksum"),
            ("1289370400440532013000", "country"),
            ("XX89370400440532013000", "country"),  # no such country in the table
            ("DE89-3704-0044-0532-0130-00", "format"),
        ],
    )
    def test_invalid_ibans_name_the_rule(self, iban: str, rule: str) -> None:
        assert not iban_valid(iban)
        with pytest.raises(InstrumentRefused) as refused:
            check_iban(iban)
        assert (refused.value.field, refused.value.rule) == ("iban", rule)

    def test_compact_form_and_last_four(self) -> None:
        compact = check_iban("fr14 2004 1010 0505 0001 3m02 606")
        assert compact == "FR1420041010050500013M02606"
        assert iban_last4(compact) == "2606"


SECRETS = [
    "4242424242424241",  # Luhn fails
    "36227206271667",  # brand unknown
    "5105105105105100000",  # wrong length for its brand
    "4242 4242 42x2 4242",  # not digits
]


class TestRefusalsNeverHoldTheNumber:
    """A4: only a token and the last four digits are ever stored or logged."""

    @pytest.mark.parametrize("number", SECRETS)
    def test_number_refusals(self, number: str) -> None:
        with pytest.raises(CardRefused) as refused:
            check_card(number, 12, 2030, TODAY, "123")
        digits = number.replace(" ", "")
        for text in (str(refused.value), refused.value.message, repr(refused.value)):
            assert digits not in text
            assert number not in text
            assert digits[:6] not in text

    @given(st.text(alphabet="0123456789", min_size=11, max_size=18), st.integers(0, 9))
    def test_no_refusal_of_any_number_quotes_it(self, payload: str, check: int) -> None:
        number = payload + str(check)
        with pytest.raises(CardRefused) as refused:
            check_card(number, 1, 2000, TODAY, "1")  # expired and a bad cvc: always refused somewhere
        assert number not in refused.value.message
        assert number[:-4] not in refused.value.message

    def test_iban_refusals(self) -> None:
        iban = "DE89370400440532013001"
        with pytest.raises(InstrumentRefused) as refused:
            check_iban(iban)
        assert iban[4:] not in refused.value.message

    def test_a_checked_card_does_not_print_its_number(self) -> None:
        card = check_card("4242424242424242", 12, 2030, TODAY, "123")
        assert card.last4 == "4242"
        assert "42424242" not in repr(card)


class TestScriptedCards:
    """A4: test card numbers carry the behaviour the simulated issuer scripts for them."""

    def test_the_shipped_table_loads_and_covers_every_behaviour(self) -> None:
        cards = load_scripted_cards()
        assert {card.behaviour for card in cards.values()} == set(Behaviour)
        for number, behaviour in [
            ("4242424242424242", Behaviour.APPROVE),
            ("5555555555554444", Behaviour.APPROVE),
            ("378282246310005", Behaviour.APPROVE),
            ("6200000000000005", Behaviour.APPROVE),
        ]:
            assert cards[number].behaviour is behaviour
        assert all(luhn_valid(number) and card_brand(number) is card.brand for number, card in cards.items())

    @pytest.mark.parametrize(
        ("row", "complaint"),
        [
            (
                {"number": "4242424242424241", "brand": "visa", "behaviour": "approve"},
                "card 2: number: fails the Luhn check",
            ),
            ({"number": "5555555555554444", "brand": "visa", "behaviour": "approve"}, "card 2: brand 'visa' given"),
            (
                {"number": "5555555555554444", "brand": "mastercard", "behaviour": "explode"},
                "card 2: behaviour 'explode'",
            ),
            ({"number": "5555555555554444", "brand": "mastercard", "behavior": "approve"}, "card 2: unknown keys"),
            ({"number": "4242424242424242", "brand": "visa", "behaviour": "approve"}, "card 2: the same number"),
        ],
    )
    def test_a_bad_row_is_named(self, row: dict[str, str], complaint: str) -> None:
        good = {"number": "4242424242424242", "brand": "visa", "behaviour": "approve"}
        with pytest.raises(ScriptedCardsInvalid, match=complaint):
            scripted_cards_from_toml({"card": [good, row]}, "cards.toml")
