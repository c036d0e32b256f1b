"""Payments, one row per order (describing its current attempt, S2), the requests to the funding
network they make, and their refunds."""

from __future__ import annotations

import sqlalchemy as sa

from services.payment.domain.limits import AccountLimits, SpendingWindow
from services.payment.domain.network import NetworkRequest
from services.payment.domain.payments import Payment
from services.payment.domain.pricing import CampaignBudget
from services.payment.domain.quotes import GivenQuote
from services.payment.domain.refunds import Refund
from shared.aggregates import Aggregate

metadata = sa.MetaData()

payments = sa.Table(
    "payments",
    metadata,
    sa.Column("order_id", sa.String(100), primary_key=True),
    sa.Column("buyer_id", sa.String(100), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),  # S2: the current attempt; the row describes it
    sa.Column("failure_reason", sa.String(50)),
    sa.Column("failure_detail", sa.Text),
    sa.Column("funding_type", sa.String(20)),
    sa.Column("charge_id", sa.String(100)),
    sa.Column("limit_reserved_minor", sa.BigInteger),
    sa.Column("limit_reserved_currency", sa.String(3)),
    sa.Column("limit_day", sa.String(10)),
    sa.Column("limit_month", sa.String(10)),
    sa.Column("wallet_leg_minor", sa.BigInteger),
    sa.Column("wallet_leg_currency", sa.String(3)),
    sa.Column("source_leg_minor", sa.BigInteger),
    sa.Column("source_leg_currency", sa.String(3)),
    sa.Column("quote_id", sa.String(100)),
    sa.Column("pricing", sa.JSON),
    sa.Column("budget_reserved", sa.JSON),
    *(
        sa.Column(f"{total}_{part}", sa.BigInteger if part == "minor" else sa.String(3))
        for total in ("refunded", "refunded_to_buyer", "source_refunded", "wallet_refunded")
        for part in ("minor", "currency")
    ),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

network_requests = sa.Table(
    "network_requests",
    metadata,
    sa.Column("request_id", sa.String(200), primary_key=True),
    sa.Column("order_id", sa.String(100), nullable=False),
    sa.Column("token", sa.String(64), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),  # 20 since payment_0005: "refund_status" is 13
    sa.Column("state", sa.String(10), nullable=False, index=True),
    sa.Column("not_before", sa.DateTime(timezone=True)),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("inquiries", sa.Integer, nullable=False),  # since payment_0007
    sa.Column("charge_id", sa.String(100)),
    sa.Column("last_reason", sa.String(100)),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

account_limits = sa.Table(
    "account_limits",
    metadata,
    sa.Column("account_id", sa.String(100), primary_key=True),
    sa.Column("per_payment_minor", sa.BigInteger, nullable=False),
    sa.Column("per_payment_currency", sa.String(3), nullable=False),
    sa.Column("daily_minor", sa.BigInteger, nullable=False),
    sa.Column("daily_currency", sa.String(3), nullable=False),
    sa.Column("monthly_minor", sa.BigInteger, nullable=False),
    sa.Column("monthly_currency", sa.String(3), nullable=False),
    sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("level", sa.String(2), nullable=False),
    sa.Column("country", sa.String(2)),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

spending_windows = sa.Table(
    "spending_windows",
    metadata,
    sa.Column("account_id", sa.String(100), primary_key=True),
    sa.Column("kind", sa.String(5), primary_key=True),
    sa.Column("start", sa.String(10), primary_key=True),
    sa.Column("spent_minor", sa.BigInteger, nullable=False),
    sa.Column("spent_currency", sa.String(3), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

quotes = sa.Table(
    "quotes",
    metadata,
    sa.Column("quote_id", sa.String(100), primary_key=True),
    sa.Column("order_id", sa.String(100), nullable=False),
    sa.Column("buyer_id", sa.String(100), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("buyer_currency", sa.String(3), nullable=False),
    sa.Column("rate", sa.JSON),
    sa.Column("breakdowns", sa.JSON, nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

campaign_budgets = sa.Table(
    "campaign_budgets",
    metadata,
    sa.Column("promotion_id", sa.String(64), primary_key=True),
    sa.Column("used_minor", sa.BigInteger, nullable=False),
    sa.Column("used_currency", sa.String(3), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

ACCOUNT_LIMITS = Aggregate(AccountLimits, account_limits, key="account_id")
"""The read copy of each buyer's limits, from the account service's events (P2)."""
SPENDING = Aggregate(SpendingWindow, spending_windows, key=("account_id", "kind", "start"))
NETWORK_REQUESTS = Aggregate(
    NetworkRequest, network_requests, key="request_id", money={"amount": ("amount_minor", "currency")}
)
PAYMENTS = Aggregate(Payment, payments, key="order_id", money={"amount": ("amount_minor", "currency")})
GIVEN_QUOTES = Aggregate(GivenQuote, quotes, key="quote_id", money={"amount": ("amount_minor", "currency")})
"""The prices given to buyers, which a checkout may name (P3)."""
CAMPAIGN_BUDGETS = Aggregate(CampaignBudget, campaign_budgets, key="promotion_id")
"""What each discount campaign has spent: one versioned row per campaign, so racing payments cannot overspend."""

refunds = sa.Table(
    "refunds",
    metadata,
    sa.Column("refund_id", sa.String(100), primary_key=True),
    sa.Column("order_id", sa.String(100), nullable=False, index=True),
    sa.Column("buyer_id", sa.String(100), nullable=False, index=True),  # P7: an account's history
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    *(
        sa.Column(f"{part}_{column}", sa.BigInteger if column == "minor" else sa.String(3), nullable=False)
        for part in ("buyer_amount", "source_part", "wallet_part")
        for column in ("minor", "currency")
    ),
    sa.Column("source_type", sa.String(20)),
    sa.Column("reason", sa.String(200), nullable=False),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("remaining_minor", sa.BigInteger),
    sa.Column("remaining_currency", sa.String(3)),
    sa.Column("failure_reason", sa.String(100)),
    sa.Column("failure_detail", sa.Text),
    sa.Column("attempt", sa.Integer, nullable=False),  # S3: the try under way, since payment_0007
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

REFUNDS = Aggregate(Refund, refunds, key="refund_id", money={"amount": ("amount_minor", "currency")})
"""P6: each refund of a payment, by its own id, and where giving it back stands."""
