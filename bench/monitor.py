"""What the bench watches while orders flow: CPU per process, topic end offsets, consumer lag,
and a once-a-second timeline of in-flight orders and completions."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psutil
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench.orders import Counters, all_partitions
from contracts import ALL_TOPICS
from contracts.topics import Topic
from shared.broker_security import ADMIN, client_options


@dataclass(frozen=True, slots=True)
class CpuSnapshot:
    wall: float
    process_seconds: dict[str, float]
    machine_busy: float
    machine_total: float
    machine_steal: float


class CpuMeter:
    """CPU seconds of named processes between two snapshots, as % of one core."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._processes = {name: psutil.Process(pid) for name, pid in pids.items()}

    def snapshot(self) -> CpuSnapshot:
        seconds: dict[str, float] = {}
        for name, process in self._processes.items():
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                seconds[name] = times.user + times.system
        machine = psutil.cpu_times()
        idle = machine.idle + getattr(machine, "iowait", 0.0)
        steal = getattr(machine, "steal", 0.0)
        # guest time is already counted in user time on Linux
        total = sum(machine) - getattr(machine, "guest", 0.0) - getattr(machine, "guest_nice", 0.0)
        return CpuSnapshot(time.perf_counter(), seconds, total - idle - steal, total, steal)

    @staticmethod
    def between(start: CpuSnapshot, end: CpuSnapshot) -> dict[str, Any]:
        wall = end.wall - start.wall
        per_process = {
            name: round(100 * (end.process_seconds[name] - start.process_seconds[name]) / wall, 2)
            for name in start.process_seconds
            if name in end.process_seconds and wall > 0
        }
        machine_total = end.machine_total - start.machine_total
        busy = 100 * (end.machine_busy - start.machine_busy) / machine_total if machine_total > 0 else None
        steal = 100 * (end.machine_steal - start.machine_steal) / machine_total if machine_total > 0 else None
        cores = psutil.cpu_count() or 1
        ours = sum(per_process.values())
        return {
            "seconds": round(wall, 2),
            "percent_of_one_core": per_process,
            "ours_total_percent_of_one_core": round(ours, 1),
            "machine_busy_percent_of_all_cores": round(busy, 1) if busy is not None else None,
            "machine_busy_cores": round(busy * cores / 100, 2) if busy is not None else None,
            "machine_steal_percent": round(steal, 1) if steal is not None else None,
            "other_processes_cores": round(busy * cores / 100 - ours / 100, 2) if busy is not None else None,
        }


# Keys of a per-process CPU dict that are not the stack under test: the bench driver itself
# and totals the bench adds.
NOT_STACK = frozenset({"bench", "all_measured", "stack"})


def stack_total(per_process: dict[str, float] | None) -> float | None:
    """The sum over the stack's processes (services and Kafka), the bench driver left out."""
    if not per_process:
        return None
    return round(sum(v for name, v in per_process.items() if name not in NOT_STACK), 2)


class OffsetReader:
    """End offsets of the tradeguard topics and the lag of each service's consumer group."""

    def __init__(self, bootstrap_servers: str, topics: Iterable[Topic] = ALL_TOPICS) -> None:
        # The set-up's principal: reading every service's group offsets is no service's right.
        self._consumer = AIOKafkaConsumer(
            **client_options(ADMIN), bootstrap_servers=bootstrap_servers, enable_auto_commit=False
        )
        self._admin = AIOKafkaAdminClient(**client_options(ADMIN), bootstrap_servers=bootstrap_servers)
        self._partitions = all_partitions(topics)

    async def start(self) -> None:
        await self._consumer.start()
        await self._admin.start()

    async def stop(self) -> None:
        await self._consumer.stop()
        await self._admin.close()

    async def end_offsets(self) -> dict[TopicPartition, int]:
        offsets: dict[TopicPartition, int] = await self._consumer.end_offsets(self._partitions)
        return offsets

    async def lag(self, groups: Iterable[str], ends: dict[TopicPartition, int]) -> dict[str, int]:
        """Records each group has not committed yet, over the partitions it has committed on."""
        lags: dict[str, int] = {}
        for group in groups:
            committed = await self._admin.list_consumer_group_offsets(group)
            lags[group] = sum(max(0, ends[tp] - meta.offset) for tp, meta in committed.items() if tp in ends)
        return lags


def records_between(before: dict[TopicPartition, int], after: dict[TopicPartition, int]) -> dict[str, int]:
    """Records produced per topic between two end-offset snapshots."""
    per_topic: dict[str, int] = {}
    for tp, end in after.items():
        per_topic[tp.topic] = per_topic.get(tp.topic, 0) + end - before.get(tp, 0)
    return per_topic


class Sampler:
    """Once a second: phase, in-flight orders, completions per second and group lag.

    Set ``sample_lag`` to False while measuring the stack's own CPU (idle, CPU per order):
    the lag queries are the bench's requests, and the broker's work answering them counts
    as the broker's CPU.
    """

    def __init__(self, counters: Counters, offsets: OffsetReader, groups: Iterable[str], interval: float = 1.0) -> None:
        self._counters = counters
        self._offsets = offsets
        self._groups = tuple(groups)
        self._interval = interval
        self.phase = "setup"
        self.sending = False
        self.sample_lag = True
        self.samples: list[dict[str, Any]] = []
        self.lag_error: str | None = None
        self._origin = time.perf_counter()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._origin = time.perf_counter()
        self._task = asyncio.create_task(self._run(), name="bench-sampler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def elapsed(self) -> float:
        return time.perf_counter() - self._origin

    async def _run(self) -> None:
        last_t, last_completed = self.elapsed(), self._counters.completed
        while True:
            await asyncio.sleep(self._interval)
            t, completed = self.elapsed(), self._counters.completed
            sample: dict[str, Any] = {
                "t": round(t, 3),
                "phase": self.phase,
                "sending": self.sending,
                "sent": self._counters.sent,
                "completed": completed,
                "completed_per_s": round((completed - last_completed) / (t - last_t), 2),
                "in_flight": self._counters.in_flight,
            }
            last_t, last_completed = t, completed
            sample["lag"] = await self._lag()
            self.samples.append(sample)

    async def _lag(self) -> dict[str, int] | None:
        if self.lag_error is not None or not self.sample_lag:
            return None
        try:
            async with asyncio.timeout(self._interval):
                return await self._offsets.lag(self._groups, await self._offsets.end_offsets())
        except Exception as error:  # lag is a nice-to-have: in-flight orders carry the verdict
            self.lag_error = repr(error)
            return None
