"""Holds still open from before escrow_0004 are carried into the E1 books, so they can be
released or refunded like any other: for each held hold without a reservation, one linked set
of three records, as a hold placed today would have (holds.py):

    buyer_funds_in:<buyer>   -> escrow_holding:<order>   the price (posted)
    escrow_holding:<order>   -> refunds_out:<order>      what refunds already took (posted, if any)
    escrow_holding:<order>   -> seller_payable:<order>   the reservation of what is left (pending)

and the account rows those records add up to. Ended holds (released, returned) keep their old
``ledger_entries`` rows only: nothing of theirs is open. (Written with plain SQL, not the domain
code, so that this revision means the same whatever the code becomes.)

Revision ID: escrow_0005
"""

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "escrow_0005"
down_revision = "escrow_0004"
branch_labels = None
depends_on = None

ACCOUNT_COLUMNS = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")
accounts = sa.table(
    "ledger_accounts",
    *(sa.column(name) for name in ("code", "kind", "owner", "currency", "order_id", *ACCOUNT_COLUMNS)),
    sa.column("version"),
    sa.column("created_at"),
    sa.column("updated_at"),
)
transfers = sa.table(
    "ledger_transfers",
    *(
        sa.column(name)
        for name in (
            "transfer_id",
            "kind",
            "debit_account",
            "credit_account",
            "amount_minor",
            "currency",
            "order_id",
            "code",
            "pending_id",
            "expires_at",
            "applied_at",
            "linked_set",
        )
    ),
)
holds = sa.table("escrow_holds", sa.column("order_id"), sa.column("reservation_id"), sa.column("reserved_at"))


def upgrade() -> None:
    bind = op.get_bind()
    now = datetime.now(UTC)
    open_holds = bind.execute(
        sa.text(
            "SELECT order_id, buyer_id, amount_minor, currency, returned_minor FROM escrow_holds "
            "WHERE status = 'held' AND reservation_id IS NULL ORDER BY order_id"
        )
    ).all()
    for hold in open_holds:
        _carry(bind, now, hold)


def _carry(bind: Any, now: datetime, hold: Any) -> None:
    order_id, buyer_id, currency = hold.order_id, hold.buyer_id, hold.currency
    amount, returned = int(hold.amount_minor), int(hold.returned_minor or 0)
    buyer = ("buyer_funds_in", buyer_id, None)
    holding, refunds, payable = (
        (kind, order_id, order_id) for kind in ("escrow_holding", "refunds_out", "seller_payable")
    )
    first = f"legacy:{order_id}:in"
    moves: list[tuple[str, str, tuple[str, str, str | None], tuple[str, str, str | None], int, str]] = [
        (first, "single_phase", buyer, holding, amount, "hold")
    ]
    if returned:
        moves.append((f"legacy:{order_id}:returned", "single_phase", holding, refunds, returned, "refund"))
    reservation = f"legacy:{order_id}:reserve"
    moves.append((reservation, "pending", holding, payable, amount - returned, "hold"))
    totals: dict[tuple[str, str, str | None], dict[str, int]] = {}
    for transfer_id, kind, debit, credit, minor, code in moves:
        bind.execute(
            transfers.insert().values(
                transfer_id=transfer_id,
                kind=kind,
                debit_account=_code(debit, currency),
                credit_account=_code(credit, currency),
                amount_minor=minor,
                currency=currency,
                order_id=order_id,
                code=code,
                pending_id=None,
                expires_at=None,
                applied_at=now,
                linked_set=first,
            )
        )
        phase = "pending" if kind == "pending" else "posted"
        _add(totals, debit, f"debits_{phase}", minor)
        _add(totals, credit, f"credits_{phase}", minor)
    for account, moved in totals.items():
        _book(bind, now, account, currency, moved)
    bind.execute(holds.update().where(holds.c.order_id == order_id).values(reservation_id=reservation, reserved_at=now))


def _code(account: tuple[str, str, str | None], currency: str) -> str:
    kind, owner, _ = account
    return f"{kind}:{owner}:{currency}"


def _add(totals: dict[tuple[str, str, str | None], dict[str, int]], account: Any, column: str, minor: int) -> None:
    moved = totals.setdefault(account, dict.fromkeys(ACCOUNT_COLUMNS, 0))
    moved[column] += minor


def _book(bind: Any, now: datetime, account: tuple[str, str, str | None], currency: str, moved: dict[str, int]) -> None:
    """Add to the account's row (a buyer's may exist already, from holds placed after 0004)."""
    kind, owner, order_id = account
    code = _code(account, currency)
    found = bind.execute(sa.select(accounts.c.version).where(accounts.c.code == code)).first()
    if found is None:
        bind.execute(
            accounts.insert().values(
                code=code,
                kind=kind,
                owner=owner,
                currency=currency,
                order_id=order_id,
                version=1,
                created_at=now,
                updated_at=now,
                **moved,
            )
        )
        return
    bind.execute(
        accounts.update()
        .where(accounts.c.code == code)
        .values(
            version=accounts.c.version + 1,
            updated_at=now,
            **{column: getattr(accounts.c, column) + minor for column, minor in moved.items()},
        )
    )


def downgrade() -> None:
    """Carried holds go back to having no reservation; their records and rows are taken out."""
    bind = op.get_bind()
    carried = bind.execute(sa.text("SELECT order_id FROM escrow_holds WHERE reservation_id LIKE 'legacy:%'")).all()
    if carried:
        raise RuntimeError(
            f"{len(carried)} holds were carried into the E1 books by escrow_0005; "
            "taking them out again would unbalance the books: restore a backup instead"
        )
