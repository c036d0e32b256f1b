"""N1: a notice rendered from its template in the recipient's language, for email and the inbox.

Templates are data files, one per kind and language: ``templates/<language>/<kind>.txt``. Each
fills three blocks (``subject``, ``body`` and, where the reader has something to do,
``next_step``) and extends the layout it is given, so one source gives three renderings:

- the subject line (``_subject.txt``, plain);
- the plain-text body (``<language>/_email.txt``, plain);
- the HTML body (``<language>/_email.html``), rendered with **autoescaping on**: the loader
  serves the same file under an ``html:`` name, and only those names are escaped, so a name or
  a marketplace's text can never inject markup, while the plain text stays unescaped.

Undefined variables are errors (``StrictUndefined``): a template that names a field the event
lacks fails in the handler, and the consumer dead-letters that event with the reason.

Amounts are integer minor units formatted with babel for the currency and the locale (JPY
without decimals, KWD with three); never a float on the way.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from babel import Locale
from babel.dates import format_datetime
from babel.numbers import format_currency
from jinja2 import BaseLoader, Environment, FileSystemLoader, StrictUndefined, TemplateNotFound
from markupsafe import Markup, escape

from contracts import CardBrand, Money, minor_unit_exponent
from contracts.money import Balance
from services.notification.domain.rules import NoticeKind

PACKAGE = Path(__file__).resolve().parent.parent
TEMPLATES = PACKAGE / "templates"
ADVICE_FILE = PACKAGE / "data" / "advice.toml"
LANGUAGES = ("en", "zh-CN")
DEFAULT_LANGUAGE = "en"
_HTML, _TEXT = "html:", "text:"


def language_for(preferred: str | None) -> str:
    """The recipient's language when there are templates in it, else English."""
    return preferred if preferred in LANGUAGES else DEFAULT_LANGUAGE


@lru_cache(maxsize=8)
def _locale(language: str) -> Locale:
    return Locale.parse(language, sep="-")


def format_money(money: Money | Balance, language: str) -> str:
    """``$129.99``, ``¥1,235``, ``KWD 1.250``: exact, from minor units, per currency and locale."""
    return _formatted(money.amount_minor, money.currency, language)


@lru_cache(maxsize=4096)
def _formatted(amount_minor: int, currency: str, language: str) -> str:
    # babel's pattern work is a third of a notice's rendering; prices and balances repeat a lot.
    amount = Decimal(amount_minor).scaleb(-minor_unit_exponent(currency))
    return format_currency(amount, currency, locale=_locale(language))


def format_when(moment: datetime, language: str) -> str:
    return format_datetime(moment, "medium", tzinfo=UTC, locale=_locale(language))


_BRANDS = {
    CardBrand.VISA: "Visa",
    CardBrand.MASTERCARD: "Mastercard",
    CardBrand.AMEX: "American Express",
    CardBrand.DISCOVER: "Discover",
    CardBrand.JCB: "JCB",
    CardBrand.UNIONPAY: "UnionPay",
}


def card_label(brand: str | None, last4: str | None) -> str | None:
    """``Visa •••• 4242``: the brand and the last four digits, never more of the number."""
    if last4 is None or not re.fullmatch(r"[0-9]{4}", last4):
        return None
    name = _BRANDS.get(CardBrand(brand), brand) if brand in set(CardBrand) else "Card"
    return f"{name} •••• {last4}"


def paragraphs(value: Any) -> Markup:
    """An autoescaped block as HTML paragraphs (blank lines part them)."""
    safe = value if isinstance(value, Markup) else escape(value)
    parts = [part.strip() for part in re.split(r"\n\s*\n", str(safe).strip())]
    return Markup("").join(Markup("<p>{}</p>").format(Markup(part)) for part in parts if part)  # noqa: S704 - already escaped


@dataclass(frozen=True, slots=True)
class Advice:
    """A reason code in plain words and what to do about it, in one language."""

    reason: str
    next_step: str


class AdviceBook:
    """``data/advice.toml``: reason codes (payment failures, identity rejections) in plain words."""

    def __init__(self, table: Mapping[str, Mapping[str, Mapping[str, Mapping[str, str]]]]) -> None:
        self._table = table

    @classmethod
    def load(cls, path: Path = ADVICE_FILE) -> AdviceBook:
        with path.open("rb") as file:
            return cls(tomllib.load(file))

    def advise(self, topic: str, code: str, language: str) -> Advice:
        """The advice for ``code``; the topic's ``default`` for a code the file does not know."""
        entries = self._table[topic]
        entry = entries.get(code) or entries["default"]
        words = entry.get(language) or entry[DEFAULT_LANGUAGE]
        return Advice(words["reason"], words["next_step"])

    def codes(self, topic: str) -> frozenset[str]:
        return frozenset(self._table[topic])


@dataclass(frozen=True, slots=True)
class Rendered:
    language: str
    subject: str
    text: str
    html: str


class _TwoFaced(BaseLoader):
    """Serves each template file as ``html:<name>`` and ``text:<name>`` (autoescaped or not)."""

    def __init__(self, root: Path) -> None:
        self._files = FileSystemLoader(str(root), encoding="utf-8")

    def get_source(self, environment: Environment, template: str) -> tuple[str, str | None, Callable[[], bool] | None]:
        for prefix in (_HTML, _TEXT):
            if template.startswith(prefix):
                return self._files.get_source(environment, template.removeprefix(prefix))
        raise TemplateNotFound(template)


class Renderer:
    """Renders notices; one per process (templates are compiled once and cached)."""

    def __init__(self, templates: Path = TEMPLATES, advice: AdviceBook | None = None) -> None:
        self.templates = templates
        self.advice = advice or AdviceBook.load()
        self._env = Environment(
            loader=_TwoFaced(templates),
            # Escaped exactly when rendered as HTML; the plain-text alternative must stay unescaped.
            autoescape=lambda name: name is not None and name.startswith(_HTML),  # noqa: S701
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,
        )
        self._env.filters["paragraphs"] = paragraphs

    def has_template(self, kind: NoticeKind, language: str) -> bool:
        return (self.templates / language / f"{kind.value}.txt").is_file()

    def render(self, kind: NoticeKind, language: str, context: Mapping[str, Any]) -> Rendered:
        """Raises jinja2's TemplateNotFound or another TemplateError when the template is missing or wrong."""
        language = language_for(language)
        name = f"{language}/{kind.value}.txt"
        helpers = {
            "money": lambda money: format_money(money, language),
            "when": lambda moment: format_when(moment, language),
            "advice": lambda topic, code: self.advice.advise(topic, code, language),
        }
        values = {**context, **helpers}
        subject = self._render(_TEXT + name, "_subject.txt", values)
        text = self._render(_TEXT + name, f"{language}/_email.txt", values)
        html = self._render(_HTML + name, f"{language}/_email.html", values)
        return Rendered(language, " ".join(subject.split()), text.strip() + "\n", html)

    def _render(self, name: str, layout: str, values: Mapping[str, Any]) -> str:
        prefix = _HTML if name.startswith(_HTML) else _TEXT
        return self._env.get_template(name).render({**values, "layout": prefix + layout})
