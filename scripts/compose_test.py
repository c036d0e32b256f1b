"""`make compose-test`: the compose stack proven in real containers (issue 12).

    python -m scripts.compose_test        # images, up, a demo order, the audit, a crash, a second order, down
    python -m scripts.compose_test demo   # inside the `client` container: one demo order against the stack

The host part builds the images (scripts/images.sh), brings docker-compose.yml up under a project
of its own, waits for the set-up to complete and every service's health check to pass, connects
from the host to the broker's published TLS listener, runs the demo order (scripts/devstack.py)
and the books audit (`tradeguard audit`) from the `client` container on the compose network (the
services' clients speak SASL_PLAINTEXT, which is not published), kills one service's
process as a crash would and waits for the restart policy to bring it back, runs a second order
and the audit again, then takes everything down with its volumes and checks that no container,
network or volume of the project is left. It prints each step's time and the total.

Exit 0: every step passed and nothing was left behind; 1: a step failed (the logs of the
containers are printed); 3: no container engine can run here (the message says what is missing).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.helpers import create_ssl_context

from contracts import SealingKey
from scripts.stack import ROOT, ServiceProcesses
from shared.broker_security import MECHANISM, Credentials

PROJECT = "tradeguard-ct"
"""The compose project the test runs under, so it never touches a stack someone else brought up."""
PODMAN_COMPOSE = "podman-compose==1.5.0"
"""The compose provider for podman when none is installed (run with uvx)."""
LONG_RUNNING = ("kafka", "postgres", "mailbox", "funding", "account", "payment", "escrow", "notification", "saga")
CRASHED = "saga"
"""The service whose process the test kills: on every order's path, so the second order needs it back."""
PROJECT_LABEL = f"com.docker.compose.project={PROJECT}"
HEALTH_TIMEOUT = 240.0
TLS_PORT = os.environ.get("TRADEGUARD_KAFKA_TLS_PORT", "19692")
"""Where the test publishes the broker's TLS listener on the host's loopback."""
CA_FILE = ROOT / ".cache" / "certs" / "ca.pem"
CLIENT_SECRETS = Path(os.environ.get("TG_SECRETS_DIR", "/run/tradeguard/secrets"))
CLIENT_PHONES = Path(os.environ.get("TG_PHONES", "/run/tradeguard/phones"))


class StepFailedError(Exception):
    """A step of the test did not do what it should; the message says what."""


class NoEngineError(Exception):
    """No container engine can run containers here."""


# ---------------------------------------------------------------------- inside the client container


class ComposeStack(ServiceProcesses):
    """The compose stack as a client on its network sees it (the `client` service): the services by
    their names on the network (the set-up's endpoints file), the texts the account service sends
    and its sealing key's public half from the volumes the client mounts."""

    @property
    def sms_outbox(self) -> Path:
        return CLIENT_PHONES / "sms.jsonl"

    def sealing_key(self) -> SealingKey:
        return SealingKey.from_file(CLIENT_SECRETS / "keys" / "account-sealing.pub.json")

    @property
    def payment_url(self) -> str:
        endpoints: dict[str, str] = json.loads((CLIENT_SECRETS / "endpoints.json").read_text())
        return endpoints["payment"]


def demo() -> int:
    from scripts.devstack import demo_order

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
    stack = ComposeStack(bootstrap, {}, CLIENT_PHONES / "logs")
    return 0 if asyncio.run(demo_order(bootstrap, stack)) else 1


# ---------------------------------------------------------------------- on the host


def _version(text: str) -> tuple[int, ...]:
    numbers = text.strip().split()[-1].split("-")[0].split(".")
    return tuple(int(n) for n in numbers if n.isdigit())


@dataclass
class Engine:
    """The container engine and compose provider the test drives."""

    name: str
    compose_command: list[str]
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    old_podman: bool = False
    """Podman before 4.6: compose's depends_on conditions are not waited for, and a container
    made with --requires cannot be started when a dependency has dependencies of its own."""

    @classmethod
    def find(cls) -> Engine:
        found = subprocess.run(
            ["bash", str(ROOT / "scripts" / "images.sh"), "engine"], capture_output=True, text=True, check=False
        )
        if found.returncode != 0:
            raise NoEngineError(found.stderr.strip() or "scripts/images.sh engine failed")
        name = found.stdout.strip()
        env = {**os.environ, "TRADEGUARD_KAFKA_TLS_PORT": TLS_PORT}
        if name == "podman":
            conf = env.get("TRADEGUARD_PODMAN_CONF", str(ROOT / "docker" / "podman" / "containers.conf"))
            if conf and "CONTAINERS_CONF" not in env:
                env["CONTAINERS_CONF"] = conf
            version = subprocess.run(["podman", "--version"], capture_output=True, text=True, check=True, env=env)
            return cls(name, _podman_compose(env), env, old_podman=_version(version.stdout) < (4, 6))
        return cls(name, _docker_compose(env), env)

    def run(self, *args: str, check: bool = True, quiet: bool = False) -> subprocess.CompletedProcess[str]:
        """The engine's command; its output is returned (``quiet``) or shown as it runs."""
        return self._run([self.name, *args], check=check, quiet=quiet)

    def compose(self, *args: str, check: bool = True, quiet: bool = False) -> subprocess.CompletedProcess[str]:
        return self._run([*self.compose_command, "-p", PROJECT, "-f", "docker-compose.yml", *args], check, quiet)

    def _run(self, argv: list[str], check: bool, quiet: bool) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(argv, cwd=ROOT, env=self.env, capture_output=quiet, text=True, check=False)
        if check and done.returncode != 0:
            detail = (done.stderr or "").strip().splitlines()[-5:] if quiet else []
            raise StepFailedError(f"{' '.join(argv[:4])} ... exited {done.returncode} {' '.join(detail)}".strip())
        return done

    def containers(self, service: str | None = None) -> list[str]:
        """The project's containers (of ``service``), by compose's labels, running or not."""
        filters = ["--filter", f"label={PROJECT_LABEL}"]
        if service is not None:
            filters += ["--filter", f"label=com.docker.compose.service={service}"]
        listed = self.run("ps", "-a", *filters, "--format", "{{.Names}}", quiet=True).stdout
        return [name for name in listed.split() if name]

    def container(self, service: str) -> str:
        names = self.containers(service)
        if not names:
            raise StepFailedError(f"no container of service {service}")
        return names[0]

    def inspect(self, container: str, template: str) -> str:
        return self.run("inspect", "--format", template, container, quiet=True).stdout.strip()

    def healthy(self, container: str) -> bool:
        """Whether its health check passes now. Podman runs health checks from systemd timers, so
        where there is no systemd it runs the check here; Docker runs them itself."""
        if self.name == "podman":
            return self.run("healthcheck", "run", container, check=False, quiet=True).returncode == 0
        return self.inspect(container, "{{.State.Health.Status}}") == "healthy"


def _podman_compose(env: dict[str, str]) -> list[str]:
    if subprocess.run(["podman", "compose", "version"], capture_output=True, check=False, env=env).returncode == 0:
        return ["podman", "compose"]
    if shutil.which("podman-compose"):
        return ["podman-compose"]
    if shutil.which("uvx"):
        return ["uvx", "--from", PODMAN_COMPOSE, "podman-compose"]
    # uv installed by pip for a Python with no shim yet (scripts/setup.sh): its tool runner still works.
    if shutil.which("uv"):
        return ["uv", "tool", "run", "--from", PODMAN_COMPOSE, "podman-compose"]
    if subprocess.run(["python3", "-m", "uv", "--version"], capture_output=True, check=False).returncode == 0:
        return ["python3", "-m", "uv", "tool", "run", "--from", PODMAN_COMPOSE, "podman-compose"]
    raise NoEngineError(f"podman runs, but there is no compose provider: install {PODMAN_COMPOSE} (uv tool install)")


def _docker_compose(env: dict[str, str]) -> list[str]:
    if subprocess.run(["docker", "compose", "version"], capture_output=True, check=False, env=env).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise NoEngineError("docker runs, but neither `docker compose` nor docker-compose is installed")


@dataclass
class Steps:
    """Each step's name and time, printed as it ends."""

    started: float = field(default_factory=time.monotonic)
    times: list[tuple[str, float]] = field(default_factory=list)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        print(f"\n== {name}", flush=True)
        began = time.monotonic()
        yield
        took = time.monotonic() - began
        self.times.append((name, took))
        print(f"== {name}: ok in {took:.1f} s", flush=True)

    def summary(self) -> str:
        return ", ".join(f"{name} {took:.0f} s" for name, took in self.times)


def wait_until(what: str, check: Callable[[], bool], timeout: float, pause: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise StepFailedError(f"{what}: not within {timeout:.0f} s")
        time.sleep(pause)


def wait_for_setup(engine: Engine) -> None:
    container = engine.container("setup")

    def finished() -> bool:
        return engine.inspect(container, "{{.State.Status}}") in ("exited", "stopped")

    wait_until("the set-up to finish", finished, HEALTH_TIMEOUT)
    code = engine.inspect(container, "{{.State.ExitCode}}")
    if code != "0":
        raise StepFailedError(f"the set-up exited {code}")


def wait_healthy(engine: Engine, services: Sequence[str]) -> None:
    pending = {service: engine.container(service) for service in services}

    def all_healthy() -> bool:
        for service, container in list(pending.items()):
            if engine.healthy(container):
                print(f"   {service} healthy", flush=True)
                del pending[service]
        return not pending

    try:
        wait_until("every service healthy", all_healthy, HEALTH_TIMEOUT, pause=2.0)
    except StepFailedError:
        raise StepFailedError(f"not healthy within {HEALTH_TIMEOUT:.0f} s: {', '.join(pending)}") from None


CLIENT_RUN = ("--profile", "tools", "run", "--rm", "--no-deps", "-T", "client")  # -T: output as in a log


def client(engine: Engine, *command: str) -> int:
    """A command in a fresh `client` container on the compose network; its exit code."""
    return engine.compose(*CLIENT_RUN, *command, check=False).returncode


async def _topics_over_tls(credentials: Credentials, protocol: str) -> list[str]:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=f"localhost:{TLS_PORT}",
        security_protocol=protocol,
        ssl_context=create_ssl_context(cafile=str(CA_FILE)) if protocol == "SASL_SSL" else None,
        sasl_mechanism=MECHANISM,
        sasl_plain_username=credentials.username,
        sasl_plain_password=credentials.password,
        request_timeout_ms=10_000,
    )
    try:
        await asyncio.wait_for(admin.start(), 20)
        topics: list[str] = await admin.list_topics()
        return topics
    finally:
        await admin.close()


def tls_listener(engine: Engine) -> None:
    """From the host, through the published port: the operators' credentials connect over TLS (the
    broker's certificate checked against the stack's CA, for the name localhost) and see every
    topic; the same port refuses a client that does not speak TLS."""
    shown = engine.compose(*CLIENT_RUN, "cat", str(CLIENT_SECRETS / "credentials" / "operator.json"), quiet=True)
    data = json.loads(shown.stdout.strip().splitlines()[-1])
    operator = Credentials(str(data["username"]), str(data["password"]))
    topics = asyncio.run(_topics_over_tls(operator, "SASL_SSL"))
    tradeguard = sorted(t for t in topics if t.startswith("tradeguard."))
    print(f"   SASL_SSL on localhost:{TLS_PORT} as operator: {len(tradeguard)} topics")
    if not tradeguard:
        raise StepFailedError("the operator sees no topic over TLS")
    try:
        asyncio.run(_topics_over_tls(operator, "SASL_PLAINTEXT"))
    except Exception as error:  # refused, however the client words it
        print(f"   SASL_PLAINTEXT on the same port refused ({type(error).__name__})")
    else:
        raise StepFailedError(f"localhost:{TLS_PORT} answered a client without TLS")


def audit(engine: Engine, attempts: int = 3) -> None:
    """The books audit; taken again a few times, as the last messages of an order may still be
    on their way (no event says when every service is at rest); a real break persists."""
    for attempt in range(1, attempts + 1):
        if client(engine, "tradeguard", "audit", "--state-dir", str(CLIENT_SECRETS)) == 0:
            return
        if attempt < attempts:
            time.sleep(3)
    raise StepFailedError("the books audit found breaks")


def crash(engine: Engine, service: str) -> None:
    """Kill the service's process with SIGKILL, as a crash would, and wait until the restart
    policy has brought the container back and its health check passes. (`podman kill` and
    `docker kill` count as stopping it by hand, which restart policies leave stopped.)"""
    container = engine.container(service)
    before = int(engine.inspect(container, "{{.RestartCount}}") or 0)
    # Under tini (the image's PID 1) the service is PID 1's only child.
    engine.run("exec", container, "bash", "-c", "kill -KILL $(cat /proc/1/task/1/children)", check=False)

    def restarted() -> bool:
        count = int(engine.inspect(container, "{{.RestartCount}}") or 0)
        return count > before and engine.inspect(container, "{{.State.Status}}") == "running"

    wait_until(f"{service} restarted by its restart policy", restarted, 60)
    print(f"   {service} restarted (restart count {before} -> {engine.inspect(container, '{{.RestartCount}}')})")
    wait_healthy(engine, [service])


def leftovers(engine: Engine) -> list[str]:
    """What of the project is still there: containers, networks, volumes."""
    label = ["--filter", f"label={PROJECT_LABEL}"]
    found = [f"container {name}" for name in engine.containers()]
    networks = engine.run("network", "ls", *label, "--format", "{{.Name}}", quiet=True).stdout.split()
    volumes = engine.run("volume", "ls", *label, "--format", "{{.Name}}", quiet=True).stdout.split()
    # By name as well: a provider that labels nothing would otherwise pass unnoticed.
    named = engine.run("volume", "ls", "--format", "{{.Name}}", quiet=True).stdout.split()
    named += engine.run("network", "ls", "--format", "{{.Name}}", quiet=True).stdout.split()
    prefixed = [n for n in named if n.startswith((f"{PROJECT}_", f"{PROJECT}-"))]
    return found + [f"network {n}" for n in networks] + [f"volume {v}" for v in {*volumes, *prefixed}]


def show_logs(engine: Engine) -> None:
    for name in engine.containers():
        print(f"\n--- last log lines of {name}", flush=True)
        engine.run("logs", "--tail", "25", name, check=False)


def up(engine: Engine) -> None:
    # Old podman: the containers wait for one another themselves (the entry points wait for the
    # set-up, the set-up for the broker and the database), since --requires would stop them starting.
    engine.compose("up", "-d", *(["--no-deps"] if engine.old_podman else []), quiet=True)


def down(engine: Engine) -> None:
    engine.compose("--profile", "tools", "down", "-v", "--remove-orphans", check=False, quiet=True)


def run_test(engine: Engine, steps: Steps) -> None:
    with steps.step("images (scripts/images.sh)"):
        subprocess.run(["bash", str(ROOT / "scripts" / "images.sh"), "build"], cwd=ROOT, env=engine.env, check=True)
    if engine.containers():
        print(f"a {PROJECT} stack was left by an earlier run: taking it down first")
        down(engine)
    with steps.step(f"up ({' '.join(engine.compose_command)}, project {PROJECT})"):
        up(engine)
        wait_for_setup(engine)
        print("   setup completed (exit 0)")
        wait_healthy(engine, LONG_RUNNING)
    with steps.step("the broker's TLS listener from the host"):
        tls_listener(engine)
    with steps.step("demo order"):
        if client(engine, "python", "-m", "scripts.compose_test", "demo") != 0:
            raise StepFailedError("the demo order did not complete")
    with steps.step("books audit"):
        audit(engine)
    with steps.step(f"crash of {CRASHED} and restart"):
        crash(engine, CRASHED)
    with steps.step("second demo order"):
        if client(engine, "python", "-m", "scripts.compose_test", "demo") != 0:
            raise StepFailedError(f"the order after {CRASHED}'s restart did not complete")
    with steps.step("books audit again"):
        audit(engine)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", choices=("test", "demo"), default="test")
    if parser.parse_args(argv).mode == "demo":
        return demo()
    try:
        engine = Engine.find()
    except NoEngineError as error:
        print(f"compose-test: cannot run: {error}", file=sys.stderr)
        return 3
    steps = Steps()
    print(f"compose-test: {engine.name}, compose by {' '.join(engine.compose_command)}")
    failure: str | None = None
    try:
        run_test(engine, steps)
    except (StepFailedError, subprocess.CalledProcessError) as error:
        failure = str(error)
        show_logs(engine)
    except KeyboardInterrupt:
        failure = "interrupted"
    finally:
        with steps.step(f"down -v (project {PROJECT})"):
            down(engine)
    left = leftovers(engine)
    if left:
        failure = failure or f"left behind: {', '.join(left)}"
    else:
        print("   nothing left: no container, network or volume of the project")
    total = time.monotonic() - steps.started
    if failure:
        print(f"\ncompose-test: FAILED after {total:.0f} s: {failure}", file=sys.stderr)
        return 1
    print(f"\ncompose-test: passed in {total:.0f} s ({steps.summary()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
