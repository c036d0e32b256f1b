"""`tradeguard dead-letters list|redrive`: see what no service could process, and send it back.

Output never contains a secret: payloads are shown as JSON with secret-looking fields masked,
or as a size summary when they are not a JSON object; raw bytes are never printed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from contracts.topics import DEAD_LETTER
from scripts.cli.kafka_io import (
    KafkaUnavailableError,
    Lookup,
    Published,
    fetch_dead_letters,
    publish_redrives,
    read_dead_letters,
)
from scripts.cli.model import (
    DeadLetter,
    DeadLetterId,
    InvalidIdError,
    Json,
    Redrive,
    RedriveRefusedError,
    key_view,
    parse_since,
    plan_redrive,
    select,
)
from shared.settings import KafkaSettings

PAYLOAD_WIDTH = 64  # characters of compact JSON shown per row in the table; --json shows it all
T = TypeVar("T")

app = typer.Typer(
    help=f"Inspect and re-drive the records on {DEAD_LETTER.name}.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

BootstrapOption = Annotated[
    str | None,
    typer.Option(
        "--bootstrap-servers",
        "-b",
        help="Kafka host:port[,host:port]. Default: $KAFKA_BOOTSTRAP_SERVERS, else 127.0.0.1:19092.",
        metavar="SERVERS",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON array instead of a table (for scripts).")]


def _console(*, stderr: bool = False) -> Console:
    # Made per call so output goes to whatever sys.stdout is now (CliRunner swaps it); a pipe
    # gets a table 180 columns wide rather than rich's 80.
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 180)


def _fail(*messages: str) -> NoReturn:
    console = _console(stderr=True)
    for message in messages:
        console.print(Text.assemble(("error: ", "bold red"), _printable(message)), soft_wrap=True)
    raise typer.Exit(1)


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run one Kafka operation; an unreachable broker is a one-line error, not a traceback."""
    # aiokafka logs each failed connection attempt; the error we print says it once.
    aiokafka_log = logging.getLogger("aiokafka")
    level = aiokafka_log.level
    aiokafka_log.setLevel(logging.CRITICAL)
    try:
        return asyncio.run(coroutine)
    except KafkaUnavailableError as error:
        _fail(str(error))
    finally:
        aiokafka_log.setLevel(level)


def _bootstrap(option: str | None) -> str:
    return option or KafkaSettings().bootstrap_servers


def _printable(text: str) -> str:
    """Control characters escaped: header values come from other programs and must not drive the terminal."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


# --- list ----------------------------------------------------------------------------------


@app.command("list")
def list_command(
    service: Annotated[
        list[str] | None,
        typer.Option(
            "--service",
            "-s",
            help="Only dead letters from this service (repeatable).",
            metavar="SERVICE",
            show_default=False,
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="Only those dead-lettered at or after this: ISO 8601 (2025-05-01T12:00:00Z) or 30s, 10m, 2h, 1d ago.",
            metavar="TIME",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
    bootstrap_servers: BootstrapOption = None,
) -> None:
    """Show every dead letter on the topic, oldest first, with secrets masked."""
    cutoff = None
    if since is not None:
        cutoff = parse_since(since, datetime.now(UTC))
        if cutoff is None:
            raise typer.BadParameter(
                f"{since!r} is neither an ISO 8601 time nor a duration like 30s, 10m, 2h, 1d", param_hint="--since"
            )
    servers = _bootstrap(bootstrap_servers)
    letters = select(_run(read_dead_letters(servers)), services=service or (), since=cutoff)
    if as_json:
        typer.echo(json.dumps([dead_letter_json(letter) for letter in letters], indent=2))
    elif letters:
        _console().print(_letters_table(letters, servers))
    else:
        _console().print(f"No dead letters on {DEAD_LETTER.name} ({servers}) match.")


def dead_letter_json(letter: DeadLetter) -> dict[str, Json]:
    """One dead letter for --json: every field the table shows, unabridged (secrets still masked)."""
    source = letter.source
    return {
        "id": str(letter.id),
        "partition": letter.id.partition,
        "offset": letter.id.offset,
        "at": letter.at.isoformat(),
        "at_from": "header" if letter.at_from_header is not None else "kafka-timestamp",
        "service": letter.service,
        "class": letter.dead_letter_class,
        "source": None
        if source is None
        else {"topic": source.topic, "partition": source.partition, "offset": source.offset},
        "source_header": letter.source_header,
        "type": letter.message_type,
        "redrive_count": letter.redrive_count,
        "reason": letter.reason,
        "key": key_view(letter.key),
        "value_bytes": None if letter.value is None else len(letter.value),
        "payload": letter.payload,
    }


def _letters_table(letters: Sequence[DeadLetter], servers: str) -> Table:
    table = Table(
        title=f"{len(letters)} dead letter(s) on {DEAD_LETTER.name} ({servers})",
        caption="ID = partition:offset on the dead-letter topic, for `redrive`. "
        "* = no tg-dead-letter-at header: the Kafka record time.",
    )
    table.add_column("ID", no_wrap=True)
    table.add_column("dead-lettered (UTC)", no_wrap=True)
    table.add_column("service")
    table.add_column("class")
    table.add_column("source", overflow="fold")
    table.add_column("type", overflow="fold")
    table.add_column("redrives", justify="right")
    table.add_column("reason", overflow="fold")
    # Cut at PAYLOAD_WIDTH (with an ellipsis), at most two lines: --json has the whole masked payload.
    table.add_column("payload", overflow="fold", min_width=28, max_width=PAYLOAD_WIDTH // 2)
    for letter in letters:
        table.add_row(*(Text(_printable(cell)) for cell in _row(letter)))
    return table


def _row(letter: DeadLetter) -> tuple[str, ...]:
    at = letter.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    count = letter.redrive_count
    return (
        str(letter.id),
        at if letter.at_from_header is not None else f"{at}*",
        letter.service,
        letter.dead_letter_class,
        letter.source_header or "?",
        letter.message_type,
        "?" if count is None else str(count),
        letter.reason,
        _abridged(letter.payload),
    )


def _abridged(payload: Json) -> str:
    """One cell's worth: of an envelope only its (masked) payload, since the type has a column."""
    if isinstance(payload, dict) and isinstance(payload.get("type"), str) and isinstance(payload.get("payload"), dict):
        payload = payload["payload"]
    text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= PAYLOAD_WIDTH else f"{text[: PAYLOAD_WIDTH - 1]}…"


# --- redrive -------------------------------------------------------------------------------


@app.command("redrive")
def redrive_command(
    ids: Annotated[
        list[str],
        typer.Argument(help="Dead-letter IDs (partition:offset) as `dead-letters list` shows them.", metavar="ID"),
    ],
    as_json: JsonOption = False,
    bootstrap_servers: BootstrapOption = None,
) -> None:
    """Re-publish the original records to where they were read from, counting the re-drive.

    Each goes back to its source topic and partition with its original key, value and headers, plus tg-redrive-count = previous count + 1.

    All IDs are checked first: if any is malformed, missing or has no usable source, nothing at all is published.
    """
    servers = _bootstrap(bootstrap_servers)
    redrives = _plan(ids, servers)
    published = _run(publish_redrives(servers, redrives))
    if as_json:
        typer.echo(json.dumps([_published_json(p) for p in published], indent=2))
    else:
        _console().print(_published_table(published))
    failures = [p for p in published if p.error is not None]
    if failures:
        _fail(*(f"{p.redrive.dead_letter}: not re-driven: {p.error}" for p in failures))


def _plan(ids: Sequence[str], servers: str) -> list[Redrive]:
    """Every ID's re-drive, or exit 1 naming each bad ID before anything is published."""
    errors: list[str] = []
    parsed: list[DeadLetterId] = []
    for text in ids:
        try:
            parsed.append(DeadLetterId.parse(text))
        except InvalidIdError as error:
            errors.append(str(error))
    unique = list(dict.fromkeys(parsed))  # the same ID twice is re-driven once
    lookup = _run(fetch_dead_letters(servers, unique)) if unique else Lookup({}, {})
    redrives: list[Redrive] = []
    for letter_id in unique:
        try:
            redrives.append(plan_redrive(letter_id, lookup.dead_letters.get(letter_id), lookup.partitions))
        except RedriveRefusedError as error:
            errors.append(str(error))
    if errors:
        _fail(*errors, "nothing was re-driven (fix or leave out the IDs above)")
    return redrives


def _published_json(published: Published) -> dict[str, Json]:
    redrive = published.redrive
    return {
        "id": str(redrive.dead_letter),
        "topic": redrive.topic,
        "partition": published.partition,
        "offset": published.offset,
        "redrive_count": redrive.count,
        "error": published.error,
    }


def _published_table(published: Sequence[Published]) -> Table:
    table = Table(title="Re-driven")
    table.add_column("ID", no_wrap=True)
    table.add_column("written to (topic/partition/offset)")
    table.add_column("redrive count", justify="right")
    for p in published:
        written = f"{p.redrive.topic}/{p.partition}/{p.offset}" if p.error is None else f"FAILED ({p.redrive.topic})"
        table.add_row(str(p.redrive.dead_letter), written, str(p.redrive.count))
    return table
