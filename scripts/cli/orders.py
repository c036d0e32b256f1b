"""``tradeguard orders``: the saga's orders for an operator (S6): look at one, list the stuck ones, act.

tradeguard orders show order-7f3a                  # status, money, next deadline, dispute, refunds, audit trail
tradeguard orders show order-7f3a --json           # the saga's answer as it is
tradeguard orders stuck --minutes 30 --reason retrying
tradeguard orders retry order-7f3a --operator ops-ana --reason "issuer back up"       # retry its step now
tradeguard orders cancel order-7f3a --operator ops-ana --reason "buyer asked" --yes   # an unpaid order
tradeguard orders compensate order-7f3a --operator ops-ana --reason "bank fixed"      # pay a compensation now
tradeguard orders resolve order-7f3a dispute-9 --operator ops-ana --reason "photos" --split 15.33

Reading asks the saga's read API (``GET /order``, ``GET /orders/stuck``), found through the state
folder's endpoints file as every read command does. Acting publishes a command on the order
commands topic as the ``operator`` producer and waits for the saga's answer to that very message
(its causation id): ``OperatorActionTaken`` or ``DisputeResolved``, or a ``CommandRejected``.

An operator action carries an id; the saga carries out each id once and ignores a repeat without
answering it. So before sending a given ``--action-id`` the command looks for the saga's earlier
``OperatorActionTaken`` of that id on the order events topic: found, the repeat is sent and reported
as changing nothing; not found, it is awaited like a new one (an earlier copy still in flight is
answered as its own).

Exit codes of the acting commands: 0 carried out (or carried out before), 1 refused (the saga's
code and reason are printed) or could not be sent, 3 no answer in time.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from aiokafka.errors import KafkaError
from rich.table import Table
from rich.text import Text

from contracts import (
    Command,
    CommandRejected,
    DisputeResolution,
    DisputeResolved,
    Message,
    Money,
    OperatorAction,
    OperatorActionTaken,
    OperatorOrderAction,
    ResolveDispute,
    minor_unit_exponent,
)
from contracts.topics import ORDER_COMMANDS, ORDER_EVENTS
from scripts.cli.dead_letters import BootstrapOption, _bootstrap, _console, _fail, _printable, _run
from scripts.cli.kafka_io import KafkaUnavailableError, _consumer, _topic_partitions
from scripts.cli.timeline import (
    SAGA_TIMEOUT,
    SagaUnavailableError,
    fetch_saga_order,
    next_deadline,
    read_order,
    saga_url,
    utc_text,
)
from scripts.marketplace import EventWatcher, Marketplace, Seen
from scripts.stack import StackLayout
from shared.clock import FileClock

OPERATOR_SOURCE = "operator"  # the producer contracts/catalogue.py names for operator commands
NO_ANSWER_EXIT = 3

app = typer.Typer(
    help="The saga's orders (S6): show one, list the stuck ones, retry, cancel, compensate, resolve a dispute.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

StateDir = Annotated[Path, typer.Option(help="The stack's state folder (`make run`: .data).")]
OrderArg = Annotated[str, typer.Argument(help="The marketplace's order id.", metavar="ORDER_ID", show_default=False)]
OperatorOpt = Annotated[str, typer.Option("--operator", help="Who acts, for the audit trail.", show_default=False)]
ReasonOpt = Annotated[str, typer.Option(help="Why, for the audit trail.", show_default=False)]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
TimeoutOpt = Annotated[float, typer.Option(min=1, help="Seconds to wait for the saga's answer.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="The saga's answer as it is.")]


# --- money and time (pure) ---------------------------------------------------------------------


def money_text(money: Mapping[str, Any] | None) -> str:
    """``{"amount_minor": 1533, "currency": "USD"}`` -> ``15.33 USD``."""
    if money is None:
        return ""
    return str(Money(amount_minor=money["amount_minor"], currency=money["currency"]))


def to_minor(amount: str, currency: str) -> int:
    """``"15.33"`` in USD -> 1533, exactly; ValueError for anything that is not such an amount
    (a sign, an exponent, more decimals than the currency has, a thousands separator)."""
    exponent = minor_unit_exponent(currency)
    text = amount.strip()
    digits = text.replace(".", "", 1)
    if not (digits.isascii() and digits.isdigit()):  # refuses 1e3, -5, +5, 1,000, NaN, Infinity
        raise ValueError(f"{amount[:40]!r} is not an amount such as 15.33: digits and one point only")
    minor = Decimal(text).scaleb(exponent)
    if minor != minor.to_integral_value():
        raise ValueError(f"{currency} has {exponent} decimal(s): {amount[:40]!r} has more")
    return int(minor)


def time_text(iso_time: str | None) -> str:
    return "" if iso_time is None else utc_text(datetime.fromisoformat(iso_time))


def due_text(at: datetime, now: datetime) -> str:
    """``in 11d 23h`` or ``overdue by 5m``, to the minute."""
    left = at - now
    words = _span(abs(left))
    return f"in {words}" if left >= timedelta(0) else f"overdue by {words}"


def _span(span: timedelta) -> str:
    minutes = int(span.total_seconds()) // 60
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days}d"] * bool(days) + [f"{hours}h"] * bool(hours) + [f"{minutes}m"] * bool(minutes)
    return " ".join(parts[:2]) or "less than a minute"


# --- reading the saga --------------------------------------------------------------------------


def _saga(state_dir: Path) -> str:
    try:
        return saga_url(state_dir)
    except SagaUnavailableError as error:
        raise typer.BadParameter(str(error), param_hint="--state-dir") from None


def saga_order(state_dir: Path, order_id: str) -> dict[str, Any]:
    """The saga's ``GET /order`` answer; a one-line error (exit 1) when it has no such order or cannot say."""
    if not order_id.strip():
        raise typer.BadParameter("an order id, not an empty string", param_hint="ORDER_ID")
    try:
        found = fetch_saga_order(_saga(state_dir), order_id)
    except SagaUnavailableError as error:
        _fail(str(error))
    if found is None:
        _fail(f"the saga has no order {order_id!r}")
    return found


def fetch_stuck(base_url: str, minutes: int, reason: str | None, page: int, per_page: int) -> dict[str, Any]:
    params: dict[str, str | int] = {"minutes": minutes, "page": page, "per_page": per_page}
    if reason:
        params["reason"] = reason
    try:
        response = httpx.get(f"{base_url}/orders/stuck", params=params, timeout=SAGA_TIMEOUT)
        body: dict[str, Any] = response.json()
    except (httpx.HTTPError, ValueError) as error:
        _fail(f"the saga at {base_url} did not answer: {error}")
    if response.status_code == 400:  # the saga names the parameter and its rule
        raise typer.BadParameter(str(body.get("error", response.text)))
    if response.status_code != 200:
        _fail(f"the saga at {base_url} answered {response.status_code}: {body.get('error', response.text)}")
    return body


# --- show --------------------------------------------------------------------------------------


def summary_lines(order: Mapping[str, Any], now: datetime) -> list[str]:
    """What a person reads first: status, money, the next deadline, what waits on an operator."""
    reason = f" ({order['reason']})" if order.get("reason") else ""
    lines = [
        f"order {order['order_id']}: {order['status']}{reason}",
        (
            f"buyer {order['buyer_id']} -> seller {order['seller_id']}; "
            f"{order.get('shipping_method') or 'standard'} shipping; attempt {order['attempt']}; "
            f"updated {time_text(order.get('updated_at'))}"
        ),
        (
            f"price {money_text(order['amount'])}; still held {money_text(order['still_held'])}; "
            f"returned {money_text(order['returned'])}; refunded {money_text(order['refunded'])}"
            + (f"; refunding {order['refunding']}" if order.get("refunding") else "")
        ),
    ]
    upcoming = next_deadline(order)
    if upcoming is None:
        lines.append("next deadline: none (no timer is set)")
    else:
        name, at = upcoming
        later = sorted((datetime.fromisoformat(t), n) for n, t in order["timers"].items() if n != name)
        then = "".join(f"; then {n} at {utc_text(t)}" for t, n in later)
        lines.append(f"next deadline: {name} at {utc_text(at)} ({due_text(at, now)} by the stack's clock){then}")
    lines.append(f"needs an operator: {order['attention']}" if order.get("attention") else "needs an operator: no")
    dispute = order.get("dispute")
    if dispute:
        lines.append(dispute_line(dispute))
    return lines


def dispute_line(dispute: Mapping[str, Any]) -> str:
    line = (
        f"dispute {dispute['dispute_id']}: {dispute['status']} ({dispute['reason']}), opened "
        f"{time_text(dispute.get('opened_at'))}, the seller to answer by {time_text(dispute.get('answer_by'))}"
    )
    if dispute.get("statement"):
        line += "; the seller answered"
    if dispute.get("resolution"):
        line += (
            f"; resolved {dispute['resolution']} by {dispute.get('decided_by')}"
            f" ({dispute.get('decision_reason')}), {money_text(dispute.get('refund')) or 'nothing'} back"
        )
    return line


def refunds_table(refunds: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(title=f"refunds: {len(refunds)}", title_justify="left")
    for column in ("refund", "amount", "status", "reason", "failure", "dispute", "updated (UTC)"):
        table.add_column(column, overflow="fold")
    for refund in refunds:
        cells = (
            refund["refund_id"],
            money_text(refund["amount"]),
            refund["status"],
            refund.get("reason") or "",
            refund.get("failure") or "",
            refund.get("dispute_id") or "",
            time_text(refund.get("updated_at")),
        )
        table.add_row(*(Text(_printable(str(c))) for c in cells))
    return table


def audit_table(trail: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(
        title=f"audit trail: {len(trail)} message(s) handled",
        title_justify="left",
        caption="time: the saga's clock (UTC) when it handled the message.",
        caption_justify="left",
    )
    table.add_column("time (UTC)", no_wrap=True)
    for column in ("cause", "from -> to", "sent", "note"):
        table.add_column(column, overflow="fold")
    for row in trail:
        moved = f"{row['from_status']} -> {row['to_status']}" if row.get("to_status") else ""
        cells = (time_text(row["at"]), row["cause_type"], moved, ", ".join(row["sent"]), row.get("note") or "")
        # Text, not markup: notes carry reasons other programs (and operators) wrote.
        table.add_row(*(Text(_printable(c)) for c in cells))
    return table


@app.command()
def show(order_id: OrderArg, as_json: JsonOpt = False, state_dir: StateDir = Path(".data")) -> None:
    """One order as the saga keeps it: status, money, the next deadline, what waits on an operator,
    the dispute, the refunds and the audit trail of every message it handled (S6)."""
    order = saga_order(state_dir, order_id)
    if as_json:
        typer.echo(json.dumps(order, indent=2, ensure_ascii=False))
        return
    console = _console()
    now = FileClock(StackLayout.of(state_dir).clock_file).now()
    for line in summary_lines(order, now):
        console.print(Text(_printable(line)), soft_wrap=True)
    if order["refunds"]:
        console.print(refunds_table(order["refunds"]))
    console.print(audit_table(order["audit"]))


# --- stuck -------------------------------------------------------------------------------------


def counts_table(counts: Mapping[str, int]) -> Table:
    table = Table(title="stuck orders by reason", title_justify="left")
    table.add_column("reason")
    table.add_column("orders", justify="right")
    for reason, count in counts.items():
        table.add_row(reason, str(count))
    table.add_row("all", str(sum(counts.values())), style="bold")
    return table


def stuck_table(body: Mapping[str, Any]) -> Table:
    title = f"stuck orders: {body['total']} (page {body['page']}, {body['per_page']} a page)"
    table = Table(title=title, title_justify="left")
    for column in ("order", "stuck", "status", "reason", "needs an operator", "attempt", "next deadline", "updated"):
        table.add_column(column, overflow="fold")
    for order in body["orders"]:
        upcoming = next_deadline(order)
        cells = (
            order["order_id"],
            order["stuck"],
            order["status"],
            order.get("reason") or "",
            order.get("attention") or "",
            str(order["attempt"]),
            "" if upcoming is None else f"{upcoming[0]} {utc_text(upcoming[1])}",
            time_text(order.get("updated_at")),
        )
        table.add_row(*(Text(_printable(c)) for c in cells))
    return table


@app.command()
def stuck(
    *,
    minutes: Annotated[int, typer.Option(min=1, help="No progress for this long counts as stuck.")] = 30,
    reason: Annotated[
        str | None,
        typer.Option(
            help="Only waiting_on_operator, compensating, retrying or no_progress (the counts stay whole).",
            show_default=False,
        ),
    ] = None,
    page: Annotated[int, typer.Option(min=1)] = 1,
    per_page: Annotated[int, typer.Option(min=1, max=100)] = 50,
    as_json: JsonOpt = False,
    state_dir: StateDir = Path(".data"),
) -> None:
    """Orders an operator should look at: retrying, compensating, waiting on an operator, or without
    progress for --minutes; the counts by reason, then the orders, oldest first (S6)."""
    body = fetch_stuck(_saga(state_dir), minutes, reason, page, per_page)
    if as_json:
        typer.echo(json.dumps(body, indent=2, ensure_ascii=False))
        return
    console = _console()
    console.print(counts_table(body["counts"]))
    console.print(stuck_table(body))


# --- acting: send, then wait for the saga's answer ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """What came of a command: the saga's answer, or None when it did not answer in time."""

    message: Message | None
    earlier: OperatorActionTaken | None = None  # the same action id, carried out before this command


def answers(sent_id: uuid.UUID, kind: type[Message], also: Callable[[Message], bool] | None) -> Callable[[Seen], bool]:
    """The saga's answer to the message ``sent_id``: ``kind`` or a rejection caused by it (or a
    ``kind`` that ``also`` accepts: an earlier copy's answer)."""

    def matches(seen: Seen) -> bool:
        message = seen.message
        if seen.envelope.causation_id == sent_id and isinstance(message, (kind, CommandRejected)):
            return True
        return isinstance(message, kind) and also is not None and also(message)

    return matches


def same_action(order_id: str, action_id: str) -> Callable[[Message], bool]:
    """The saga's record of carrying out ``action_id`` on the order, whichever copy caused it."""

    def matches(message: Message) -> bool:
        if not isinstance(message, OperatorActionTaken):
            return False
        return message.order_id == order_id and message.action_id == action_id

    return matches


async def earlier_action(servers: str, order_id: str, action_id: str) -> OperatorActionTaken | None:
    """The saga's OperatorActionTaken for this action id, if it carried it out before."""
    entries = await read_order(servers, order_id, topics=[ORDER_EVENTS])
    done = same_action(order_id, action_id)
    for entry in entries:
        payload = entry.envelope.payload
        if entry.dead_letter is None and isinstance(payload, OperatorActionTaken) and done(payload):
            return payload
    return None


async def require_order_topics(servers: str) -> None:
    """KafkaUnavailableError unless the broker answers and has the order topics.

    Asked first with a client that cleans up after a failed start (EventWatcher's does not), so
    a broker that is not there is one line of error, not that and a warning."""
    async with _consumer(servers) as consumer:
        existing = await _topic_partitions(consumer)
    missing = [topic.name for topic in (ORDER_COMMANDS, ORDER_EVENTS) if not existing.get(topic.name)]
    if missing:
        raise KafkaUnavailableError(f"{', '.join(missing)} not on {servers}: is this TradeGuard's broker?")


async def send_and_wait(
    servers: str,
    command: Command,
    kind: type[Message],
    *,
    order_id: str,
    idempotency_key: str,
    timeout: float,
    repeat_of: str | None = None,
) -> Answer:
    """Publish ``command`` as the operator and wait for its answer. ``repeat_of``: an action id the
    operator gave, which the saga may have carried out already (then it stays silent)."""
    await require_order_topics(servers)
    # The watcher starts first: an answer published while we look back or send is not missed.
    async with EventWatcher(servers, [ORDER_EVENTS]) as watcher, Marketplace(servers, OPERATOR_SOURCE) as client:
        earlier = None if repeat_of is None else await earlier_action(servers, order_id, repeat_of)
        sent = await client.publish(command, correlation_id=order_id, idempotency_key=idempotency_key)
        if earlier is not None:
            return Answer(None, earlier)
        also = None if repeat_of is None else same_action(order_id, repeat_of)
        try:
            seen = await watcher.wait_for(answers(sent.message_id, kind, also), timeout=timeout)
        except TimeoutError:
            return Answer(None)
    return Answer(seen.message)


def _send(servers: str, command: Command, kind: type[Message], **options: Any) -> Answer:
    try:
        return _run(send_and_wait(servers, command, kind, **options))
    except KafkaError as error:  # the watcher's or the producer's start: the broker is not there
        _fail(f"cannot reach Kafka at {servers}: {error}")


def _refused(rejected: CommandRejected) -> NoReturn:
    _fail(f"refused by the saga: {rejected.code}: {rejected.reason}")


def _no_answer(what: str, order_id: str, timeout: float) -> NoReturn:
    console = _console(stderr=True)
    console.print(
        Text(
            _printable(
                f"no answer from the saga to {what} in {timeout:.0f} s: it may still act on it "
                f"(`tradeguard orders show {order_id}`)"
            ),
            style="yellow",
        ),
        soft_wrap=True,
    )
    raise typer.Exit(NO_ANSWER_EXIT)


def _confirm(question: str, yes: bool) -> None:
    if not yes:
        typer.confirm(_printable(question), abort=True)


def _status_after(state_dir: Path, order_id: str) -> str:
    try:
        order = fetch_saga_order(saga_url(state_dir), order_id)
    except SagaUnavailableError as error:
        return f"status now unknown: {error}"
    if order is None:
        return "status now unknown: the saga has no such order"
    reason = f" ({order['reason']})" if order.get("reason") else ""
    return f"order {order_id} is now {order['status']}{reason}"


ACTION_WORDS: dict[OperatorAction, str] = {
    "retry_now": "retry the waiting step of",
    "cancel": "cancel",
    "compensate_now": "run the compensation of",
}


def operator_action(
    action: OperatorAction,
    order_id: str,
    *,
    operator: str,
    reason: str,
    action_id: str | None,
    yes: bool,
    timeout: float,
    state_dir: Path,
    bootstrap_servers: str | None,
) -> None:
    order = saga_order(state_dir, order_id)
    chosen = action_id or f"{action}-{uuid.uuid4().hex}"
    try:
        command = OperatorOrderAction(
            order_id=order_id, action_id=chosen, action=action, operator_id=operator, reason=reason
        )
    except ValueError as error:  # pydantic's: lengths of the operator, the reason, the action id
        raise typer.BadParameter(str(error)) from None
    _confirm(
        f"{ACTION_WORDS[action]} order {order_id} ({order['status']}, {money_text(order['amount'])}) "
        f"as {operator}, action {chosen}?",
        yes,
    )
    answer = _send(
        _bootstrap(bootstrap_servers),
        command,
        OperatorActionTaken,
        order_id=order_id,
        # One intent per action id: were the saga to answer repeats by key, it would answer this one.
        idempotency_key=f"OperatorOrderAction:{order_id}:{chosen}",
        timeout=timeout,
        repeat_of=action_id,
    )
    console = _console()
    if answer.earlier is not None:
        done = answer.earlier
        console.print(
            Text(
                _printable(
                    f"action {chosen} was carried out before ({done.action} by {done.operator_id}: {done.outcome}); "
                    "the saga ignores a repeat: nothing changed"
                )
            ),
            soft_wrap=True,
        )
        return
    message = answer.message
    if message is None:
        _no_answer(f"{action} {chosen}", order_id, timeout)
    if isinstance(message, CommandRejected):
        _refused(message)
    assert isinstance(message, OperatorActionTaken)
    console.print(
        Text(
            _printable(f"carried out: {message.action} {message.action_id} by {message.operator_id}: {message.outcome}")
        ),
        soft_wrap=True,
    )
    console.print(Text(_printable(_status_after(state_dir, order_id))), soft_wrap=True)


def _action_command(action: OperatorAction, doc: str) -> Callable[..., None]:
    """One typer command per operator action, all with the same options."""

    def command(
        order_id: OrderArg,
        *,
        operator: OperatorOpt,
        reason: ReasonOpt,
        action_id: Annotated[
            str | None,
            typer.Option(help="The action's id; give an earlier one to repeat it (done once). Default: a new one."),
        ] = None,
        yes: YesOpt = False,
        timeout: TimeoutOpt = 30.0,
        state_dir: StateDir = Path(".data"),
        bootstrap_servers: BootstrapOption = None,
    ) -> None:
        operator_action(
            action,
            order_id,
            operator=operator,
            reason=reason,
            action_id=action_id,
            yes=yes,
            timeout=timeout,
            state_dir=state_dir,
            bootstrap_servers=bootstrap_servers,
        )

    command.__doc__ = doc
    return command


app.command("retry")(
    _action_command(
        "retry_now",
        "Retry now what ORDER_ID waits to retry (its payment, or its refund or compensation); "
        "exit 1 with the saga's code when nothing waits (S6).",
    )
)
app.command("cancel")(
    _action_command(
        "cancel",
        "Cancel ORDER_ID while it is unpaid (what was paid comes back); a paid order is refused "
        "(not_cancellable): refund or dispute it instead (S6).",
    )
)
app.command("compensate")(
    _action_command(
        "compensate_now",
        "Pay ORDER_ID's compensation or refund under way again now, attempts starting over (S3, S6).",
    )
)


# --- resolve a dispute -------------------------------------------------------------------------


def resolution_of(
    order: Mapping[str, Any], *, refund_in_full: bool, release: bool, split: str | None
) -> tuple[DisputeResolution, Money | None]:
    """The one resolution the options name, a split's refund in the order's currency."""
    chosen = [refund_in_full, release, split is not None]
    if sum(chosen) != 1:
        raise typer.BadParameter("exactly one of --refund-in-full, --release, --split AMOUNT")
    if refund_in_full:
        return DisputeResolution.REFUND_IN_FULL, None
    if release:
        return DisputeResolution.RELEASE, None
    assert split is not None
    currency = str(order["amount"]["currency"])
    try:
        refund = Money(amount_minor=to_minor(split, currency), currency=currency)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--split") from None
    return DisputeResolution.SPLIT, refund


@app.command()
def resolve(
    order_id: OrderArg,
    dispute_id: Annotated[str, typer.Argument(metavar="DISPUTE_ID", help="As `orders show` names it.")],
    *,
    operator: OperatorOpt,
    reason: ReasonOpt,
    refund_in_full: Annotated[
        bool, typer.Option("--refund-in-full", help="Everything held back to the buyer.")
    ] = False,
    release: Annotated[bool, typer.Option("--release", help="Everything held to the seller.")] = False,
    split: Annotated[
        str | None,
        typer.Option(
            metavar="AMOUNT",
            help="This much (major units, e.g. 15.33) back to the buyer, the rest to the seller.",
            show_default=False,
        ),
    ] = None,
    yes: YesOpt = False,
    timeout: TimeoutOpt = 30.0,
    state_dir: StateDir = Path(".data"),
    bootstrap_servers: BootstrapOption = None,
) -> None:
    """Decide DISPUTE_ID of ORDER_ID: a full refund, a release, or a split; wait for DisputeResolved
    (exit 1 with the saga's code when it refuses) (E3, S6)."""
    order = saga_order(state_dir, order_id)
    resolution, refund = resolution_of(order, refund_in_full=refund_in_full, release=release, split=split)
    try:
        command = ResolveDispute(
            order_id=order_id,
            dispute_id=dispute_id,
            operator_id=operator,
            resolution=resolution,
            refund=refund,
            reason=reason,
        )
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    back = f", {refund} back to the buyer" if refund is not None else ""
    _confirm(
        f"resolve {dispute_id} of order {order_id} ({money_text(order['still_held'])} held): "
        f"{resolution.value}{back}, as {operator}?",
        yes,
    )
    answer = _send(
        _bootstrap(bootstrap_servers),
        command,
        DisputeResolved,
        order_id=order_id,
        idempotency_key=f"ResolveDispute:{order_id}:{dispute_id}:{uuid.uuid4().hex}",
        timeout=timeout,
    )
    message = answer.message
    if message is None:
        _no_answer(f"ResolveDispute {dispute_id}", order_id, timeout)
    if isinstance(message, CommandRejected):
        _refused(message)
    assert isinstance(message, DisputeResolved)
    _console().print(
        Text(
            _printable(
                f"resolved: {message.dispute_id} {message.resolution.value} by {message.decided_by}: "
                f"{message.refund} back to the buyer, {message.release} to the seller"
            )
        ),
        soft_wrap=True,
    )
    _console().print(Text(_printable(_status_after(state_dir, order_id))), soft_wrap=True)
