"""What the notification service stores: the inbox, the read copies it decides with, and each
email's delivery, each declared once as an aggregate (shared.aggregates); and the releases of
held notices, an append-only journal."""

from __future__ import annotations

import sqlalchemy as sa

from services.notification.domain.delivery import EmailDelivery
from services.notification.domain.notices import Notification
from services.notification.domain.orders import OrderCopy
from services.notification.domain.recipients import Recipient
from shared.aggregates import Aggregate, Journal

metadata = sa.MetaData()
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("notification_id", sa.String(36), nullable=False, unique=True),
    sa.Column("recipient_id", sa.String(100), nullable=False, index=True),
    sa.Column("kind", sa.String(50), nullable=False),
    sa.Column("category", sa.String(20), nullable=False),
    sa.Column("reference", sa.String(200), nullable=False),
    sa.Column("order_id", sa.String(100), nullable=True),
    sa.Column("language", sa.String(12), nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("html", sa.Text, nullable=False),
    sa.Column("correlation_id", sa.String(200), nullable=False),
    sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("recipient_id", "kind", "reference", name="uq_notification_once"),
)

recipients = sa.Table(
    "notification_recipients",
    metadata,
    sa.Column("account_id", sa.String(100), primary_key=True),
    sa.Column("language", sa.String(12), nullable=False),
    sa.Column("full_name", sa.String(200), nullable=True),
    sa.Column("email", sa.String(254), nullable=True),
    sa.Column("email_enabled", sa.Boolean, nullable=False),
    sa.Column("marketing_enabled", sa.Boolean, nullable=False),
    sa.Column("has_profile", sa.Boolean, nullable=False),
    sa.Column("held", sa.Text, nullable=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

orders = sa.Table(
    "notification_orders",
    metadata,
    sa.Column("order_id", sa.String(100), primary_key=True),
    sa.Column("status", sa.String(20), nullable=True),
    sa.Column("card_brand", sa.String(20), nullable=True),
    sa.Column("card_last4", sa.String(4), nullable=True),
    sa.Column("captured", sa.Boolean, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

email_deliveries = sa.Table(
    "email_deliveries",
    metadata,
    sa.Column("notification_id", sa.String(36), primary_key=True),
    sa.Column("recipient_id", sa.String(100), nullable=False, index=True),
    sa.Column("address", sa.String(254), nullable=True),  # None while held: see notification_releases
    sa.Column("message_id", sa.String(120), nullable=False),
    sa.Column("kind", sa.String(50), nullable=False),
    sa.Column("order_id", sa.String(100), nullable=True),
    sa.Column("state", sa.String(20), nullable=False, index=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_error", sa.String(500), nullable=True),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

email_send_log = sa.Table(
    "email_send_log",
    metadata,
    sa.Column("notification_id", sa.String(36), primary_key=True),
    sa.Column("message_id", sa.String(120), nullable=False),
    sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
)
"""The email worker's own record that the server accepted an email, written right after the 250
and before the outcome is reported: a restart re-reports instead of re-sending (worker.py)."""

notification_releases = sa.Table(
    "notification_releases",
    metadata,
    sa.Column("notification_id", sa.String(36), primary_key=True),
    sa.Column("recipient_id", sa.String(100), nullable=False),
    sa.Column("language", sa.String(12), nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("html", sa.Text, nullable=False),
    sa.Column("address", sa.String(254), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
"""A held notice as rendered when its recipient's profile arrived, in the profile's language, and
the address its email goes to (None: the holder's preferences want no email, or there is no
address). Written once per notice by the batch that read the profile, never changed: the inbox
and the email worker read a notice's release in place of its first rendering.

Why a journal and not new fields of the notice: the batch that reads an AccountRegistered can
only name what the event names (the account), never the ids of the notices its recipient holds,
so it cannot load and change their rows; it can append rows keyed by them."""

NOTICES = Aggregate(Notification, notifications, key="notification_id")
RECIPIENTS = Aggregate(Recipient, recipients, key="account_id")
ORDERS = Aggregate(OrderCopy, orders, key="order_id")
DELIVERIES = Aggregate(EmailDelivery, email_deliveries, key="notification_id")
RELEASES = Journal(notification_releases)
