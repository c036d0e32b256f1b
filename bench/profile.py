"""Where each service spends its CPU under a fixed order load, sampled with py-spy.

    python -m bench.profile [--rate 20] [--seconds 30] [--hz 100] [--gil] [--out bench/results]

Starts the bench stack (private broker, five services), funds accounts, warms up, then
offers ``--rate`` orders/s while ``py-spy record --nonblocking --threads --format raw``
samples every service at once. py-spy's own idle detection does not reliably drop waiting
threads on this VM, so samples whose innermost frame is a known wait (the event loop's
epoll, a thread blocked on a queue or condition) are dropped here and counted apart; what
remains is CPU. ``--gil`` keeps only samples of the thread holding the GIL instead (the
Python work that serialises a service; SQLite's C work, done without the GIL, is then
missing). For each service it writes
``profile-<service>.folded`` (collapsed stacks, for flamegraph tools or speedscope) and
``profile-<service>.txt``: samples by thread and by package, the top functions by self and
by inclusive time, and the project's own functions (shared/, services/) by inclusive time,
headed by the service's CPU use (psutil) over the same window.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import sys
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.monitor import CpuMeter
from bench.orders import OrderDriver, latency_summary
from bench.report import code_version, console
from bench.stack import RunningStack, bench_stack
from scripts.stack import ROOT

PY_SPY = Path(sys.executable).parent / "py-spy"
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
PACKAGES = (
    "sqlalchemy",
    "aiosqlite",
    "sqlite3",
    "alembic",
    "pydantic",
    "pydantic_core",
    "aiokafka",
    "faststream",
    "structlog",
    "logging",
    "json",
    "asyncio",
    "selectors",
    "threading",
    "uuid",
    "contracts",
    "shared",
    "services",
)


@dataclass(frozen=True, slots=True)
class Frame:
    func: str
    file: str

    @property
    def name(self) -> str:
        return f"{self.func} ({self.file})"

    @property
    def package(self) -> str:
        head = self.file.split("/", 1)[0].removesuffix(".py")
        return head if head in PACKAGES else ("<frozen>" if self.file.startswith("<") else f"other:{head}")


def parse_frame(text: str) -> Frame:
    match = _FRAME.match(text)
    return Frame(match["func"], match["file"]) if match else Frame(text, "")


def parse_folded(lines: Iterable[str]) -> list[tuple[list[str], int]]:
    """``frame;frame;...;leaf count`` lines into (frames, count)."""
    stacks: list[tuple[list[str], int]] = []
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


IDLE_LEAVES = frozenset(
    {
        "EpollSelector.select (selectors.py)",
        "_connection_worker_thread (aiosqlite/core.py)",  # blocked in SimpleQueue.get
        "Condition.wait (threading.py)",
        "Event.wait (threading.py)",
        "Queue.get (queue.py)",
        "_worker (concurrent/futures/thread.py)",
    }
)


# (label, substrings of the joined frame names): the first rule that matches a stack wins.
ACTIVITIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("consumer batch: decode, handlers, DB transaction (shared.consumer)", ("BatchConsumer.",)),
    ("outbox relay: select, publish, delete (shared.outbox)", ("OutboxRelay.",)),
    ("offset commits", ("offsets.py", ".commit (aiokafka", "commit_offsets")),
    ("aiokafka consumer fetcher", ("Fetcher.",)),
    ("FastStream / aiokafka poll loop outside the handler", ("_run_consume_loop", "getmany")),
    ("aiokafka producer", ("Sender.", "AIOKafkaProducer.", "MessageAccumulator.")),
    ("group coordination, heartbeats", ("GroupCoordinator.", "CoordinatorGroupRebalance.")),
    ("socket I/O", ("AIOKafkaConnection.", "selector_events.py")),
)
GREENLET_DETACHED = "SQLAlchemy/DB frames cut off by a greenlet switch (DB work of the consumer batch or relay)"


def activity(frames: list[Frame]) -> str:
    """What a sample was doing, by the frames on its stack (see ACTIVITIES)."""
    if not frames:
        return "no Python frames"
    joined = ";".join(f.name for f in frames)
    if not any(f.file == "shared/service.py" for f in frames) and any(
        f.package in ("sqlalchemy", "aiosqlite", "sqlite3") or f.file == "shared/db.py" for f in frames
    ):
        return GREENLET_DETACHED
    return next((label for label, keys in ACTIVITIES if any(k in joined for k in keys)), "other")


def is_idle(frames: list[str]) -> bool:
    return bool(frames) and parse_frame(frames[-1]).name in IDLE_LEAVES


def summarize_profile(stacks: list[tuple[list[str], int]], top: int = 30) -> str:
    """A readable report of collapsed stacks (see the module docstring)."""
    idle = sum(count for frames, count in stacks if is_idle(frames))
    stacks = [(frames, count) for frames, count in stacks if not is_idle(frames)]
    total = sum(count for _, count in stacks) or 1
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    own_code: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    activities: Counter[str] = Counter()
    for raw_frames, count in stacks:
        thread = raw_frames[0] if raw_frames[0].startswith("thread (") else "(thread not recorded)"
        frames = [parse_frame(f) for f in raw_frames if not f.startswith(("thread (", "process "))]
        threads[_thread_label(thread, frames)] += count
        activities[activity(frames)] += count
        if not frames:
            continue
        self_time[frames[-1].name] += count
        packages[_innermost_package(frames)] += count
        for name in {f.name for f in frames}:
            inclusive[name] += count
        for name in {f.name for f in frames if f.package in ("shared", "services")}:
            own_code[name] += count
    lines = [f"samples kept (CPU): {total}; dropped as waiting (epoll, blocked threads): {idle}", ""]
    lines += _section("CPU by thread", threads, total, top)
    lines += _section("CPU by activity", activities, total, top)
    lines += _section("CPU by package of the innermost library frame (self time)", packages, total, top)
    lines += _section("top functions by self time", self_time, total, top)
    lines += _section("top functions by inclusive time", inclusive, total, top)
    lines += _section("project functions (shared/, services/) by inclusive time", own_code, total, top)
    return "\n".join(lines) + "\n"


def _thread_label(thread: str, frames: list[Frame]) -> str:
    entry = next((f.func for f in frames if f.func in ("_connection_worker_thread", "run_forever")), None)
    role = {"_connection_worker_thread": "aiosqlite worker", "run_forever": "event loop"}.get(entry or "", "other")
    return f"{role} {thread}"


def _innermost_package(frames: list[Frame]) -> str:
    """The innermost frame's package, looking past the standard library's thin wrappers."""
    for frame in reversed(frames):
        if frame.package not in ("asyncio", "threading", "<frozen>"):
            return frame.package
    return frames[-1].package


def _section(title: str, counter: Counter[str], total: int, top: int) -> list[str]:
    lines = [title, "-" * len(title)]
    lines += [f"{100 * n / total:6.1f}%  {n:7d}  {name}" for name, n in counter.most_common(top)]
    return [*lines, ""]


async def record(pid: int, seconds: float, hz: int, folded: Path, *, gil: bool) -> tuple[int, str]:
    """Run py-spy on ``pid`` for ``seconds``; returns its exit code and stderr."""
    process = await asyncio.create_subprocess_exec(
        str(PY_SPY),
        "record",
        *(["--gil"] if gil else []),
        "--pid",
        str(pid),
        "--duration",
        str(int(seconds)),
        "--rate",
        str(hz),
        "--nonblocking",
        "--threads",
        "--format",
        "raw",
        "--output",
        str(folded),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await process.communicate()
    return process.returncode or 0, stderr.decode(errors="replace")


async def profile_services(
    stack: RunningStack, rate: float, seconds: float, hz: int, out_dir: Path, *, gil: bool
) -> None:
    driver = OrderDriver(stack.bootstrap_servers, f"p{uuid.uuid4().hex[:6]}", accounts=100)
    await driver.start()
    try:
        await driver.onboard_buyers(stack.services)
        await driver.fund_accounts()
        await driver.run_schedule("warmup", rate, 5)
        await driver.drain("warmup", timeout=60)
        console.print(f"profiling {', '.join(stack.pids)} for {seconds:g} s at {rate:g} orders/s")
        meter = CpuMeter(stack.pids)
        cpu_start = meter.snapshot()
        recordings = {
            name: asyncio.create_task(record(pid, seconds, hz, out_dir / f"profile-{name}.folded", gil=gil))
            for name, pid in stack.pids.items()
        }
        await driver.run_schedule("profile", rate, seconds + 1)
        outcomes = {name: await task for name, task in recordings.items()}
        cpu = CpuMeter.between(cpu_start, meter.snapshot())
        drained = await driver.drain("profile", timeout=120)
        latency = latency_summary(driver.phase_orders("profile"))
    finally:
        await driver.stop()
    header = (
        f"{rate:g} orders/s offered, sampled {seconds:g} s at {hz} Hz ({'GIL holder only' if gil else 'all threads'}); "
        f"orders drained {drained} s after the last Checkout\nlatency {latency}\n"
        f"machine busy {cpu['machine_busy_cores']} of {psutil.cpu_count()} cores, steal {cpu['machine_steal_percent']}%\n"
        f"code {code_version()}\n"
    )
    for name, (code, stderr) in outcomes.items():
        folded = out_dir / f"profile-{name}.folded"
        text = out_dir / f"profile-{name}.txt"
        if code != 0 or not folded.exists():
            console.print(f"[red]py-spy failed for {name} ({code}):[/] {stderr.strip()[-500:]}")
            continue
        report = summarize_profile(parse_folded(folded.read_text().splitlines()))
        usage = f"CPU of this service over the window (psutil): {cpu['percent_of_one_core'].get(name)}% of one core\n"
        text.write_text(f"service {name}, pid {stack.pids[name]}: {header}{usage}\n{report}")
        console.print(f"wrote {text.relative_to(ROOT)}")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=20.0, help="offered orders/s while sampling")
    parser.add_argument("--seconds", type=float, default=30.0, help="sampling duration")
    parser.add_argument("--hz", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--gil", action="store_true", help="only sample the thread holding the GIL")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    if not PY_SPY.exists() and shutil.which("py-spy") is None:
        console.print("[red]py-spy not found; install the bench dependency group[/]")
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    async with asyncio.timeout(args.seconds + 600), bench_stack("profile") as stack:
        await profile_services(stack, args.rate, args.seconds, args.hz, args.out, gil=args.gil)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except KeyboardInterrupt:
        sys.exit(130)
