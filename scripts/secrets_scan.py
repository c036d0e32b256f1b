"""Scanning a stack's logs, topics and databases for secrets (X9, A6): the tests that look for a
password, a code, a card number or a key where it must never be, and the chaos run's last check."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts import ALL_TOPICS
from scripts.onboarding import Person
from scripts.stack import StackLayout
from services.funding.vault import TEST_CARDS_PATH
from shared.broker_security import ADMIN, client_options, credentials_dir


def findings(secrets_used: dict[str, str], sources: Iterable[tuple[str, bytes]]) -> list[str]:
    """Where each secret appears, as text or digits (not as the fractional seconds of a timestamp)."""
    found = []
    for where, data in sources:
        text = data.decode("utf-8", errors="replace")
        for name, value in secrets_used.items():
            # A substring search first: it is fast, and almost every secret is nowhere.
            if value in text and re.search(rf"(?<![.\d]){re.escape(value)}(?!\d)", text):
                found.append(f"{name} in {where}")
    return found


async def all_records(bootstrap: str) -> list[tuple[str, bytes]]:
    """Every record of every topic, from the beginning: key, value and headers."""
    consumer = AIOKafkaConsumer(**client_options(ADMIN), bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(t.name, p) for t in ALL_TOPICS for p in range(t.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        out: list[tuple[str, bytes]] = []
        while [p for p in partitions if await consumer.position(p) < ends[p]]:
            for partition, records in (await consumer.getmany(timeout_ms=500, max_records=5000)).items():
                for r in records:
                    headers = b"".join(k.encode() + (v or b"") for k, v in r.headers)  # a header may be null
                    out.append((f"{partition.topic}@{r.offset}", (r.key or b"") + (r.value or b"") + headers))
        return out
    finally:
        await consumer.stop()


def files(paths: Iterable[Path]) -> list[tuple[str, bytes]]:
    return [(str(p), p.read_bytes()) for p in paths if p.is_file()]


def stack_secrets(layout: StackLayout) -> dict[str, str]:
    """The secrets a stack and its made-up people use, by what each is: the people's password and
    document number, the funding network's test card numbers, the broker's passwords and the
    account service's private sealing and storage keys."""
    person = Person.numbered("anyone", 0)  # every made-up person shares these secrets
    used = {"password": person.password, "document number": person.document_number}
    cards = tomllib.loads(TEST_CARDS_PATH.read_text())["card"]
    used |= {f"test card {card['number']}": str(card["number"]) for card in cards}
    credentials = sorted(credentials_dir().glob("*.json"))
    used |= {f"broker password of {p.stem}": str(json.loads(p.read_text())["password"]) for p in credentials}
    sealing = json.loads(layout.sealing_key_file.read_text())["keys"]
    used |= {f"sealing key {k['key_id']}": str(k["private_key"]) for k in sealing}
    used["storage key"] = layout.storage_key_file.read_text().strip()
    return used


def stack_files(layout: StackLayout, log_dir: Path) -> list[tuple[str, bytes]]:
    """A stack's logs and databases (with their write-ahead logs)."""
    state = layout.state_dir
    return [
        *files(log_dir.glob("*.log")),
        *files(state.glob("*.db")),
        *files(state.glob("*.db-wal")),
    ]
