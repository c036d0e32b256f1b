# TradeGuard: `make run` starts everything and shows a demo order; `make scenarios` runs the
# acceptance scenarios on a local stack it starts and stops; `make test` runs every test.
# uv as scripts/setup.sh leaves it: on PATH, or else as a module of the Python that installed it
# (a fresh pyenv may not have a shim for it yet). Evaluated when used, i.e. after setup ran.
UV = $(shell command -v uv 2>/dev/null || echo python3 -m uv)
UV_RUN = $(UV) run --frozen
export PATH := $(HOME)/.local/bin:$(PATH)

.PHONY: help setup run demo scenarios console audit timeline test test-long test-fast lint format contracts asyncapi-docs bench bench-smoke soak soak-short chaos chaos-short wheels integrator-test sandbox images compose-test test-containers kafka-stop clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup:  ## install uv, the Python environment, JDK/Maven if missing, and Kafka's jars
	@bash scripts/setup.sh

run: setup  ## start Kafka and the five services, run a demo order, keep running until Ctrl-C
	@$(UV_RUN) tradeguard run

demo: setup  ## like run, but exit when the demo order ends (0 = completed)
	@$(UV_RUN) tradeguard demo

scenarios: setup  ## start Kafka and the stack, run every scenario, print the pass/fail table (0 = all passed)
	@$(UV_RUN) tradeguard scenario --all --start-stack

console: setup  ## the operator console for `make run`'s stack (make run serves it too): http://127.0.0.1:19080
	@$(UV_RUN) tradeguard console

audit:  ## the books audit of the running stack (G1; `make run`'s .data): exit 1 naming each break
	@$(UV_RUN) tradeguard audit

timeline:  ## one order's messages across every service, then its status (G3): make timeline ORDER=order-7f3a
	@test -n "$(ORDER)" || { echo "make timeline: say which order, e.g. make timeline ORDER=order-7f3a" >&2; exit 2; }
	@$(UV_RUN) tradeguard timeline "$(ORDER)"

test: setup  ## unit, integration (SQLite and PostgreSQL), end-to-end, browser and fault tests against a real broker (under 20 min)
	@bash scripts/postgres.sh install
	@bash scripts/chromium.sh install
	@$(UV_RUN) pytest -m "not long"

test-long: setup  ## the rest of the fault matrices and drills (marker `long`; CI runs it after make test)
	@bash scripts/postgres.sh install
	@$(UV_RUN) pytest -m long

test-fast: setup  ## unit tests only
	@$(UV_RUN) pytest tests/unit

lint: setup  ## ruff, the format check and mypy strict
	@$(UV_RUN) ruff check .
	@$(UV_RUN) ruff format --check .
	@$(UV_RUN) mypy .

format:  ## apply ruff's fixes and formatting
	@$(UV_RUN) ruff check --fix .
	@$(UV_RUN) ruff format .

contracts:  ## regenerate JSON Schemas, AsyncAPI and the topic table from the models
	@$(UV_RUN) python scripts/export_contracts.py

asyncapi-docs:  ## render contracts/asyncapi.json as a page to browse (.cache/asyncapi-docs/index.html; needs node)
	@test -f tools/asyncapi/node_modules/@asyncapi/react-component/package.json || \
		npm ci --prefix tools/asyncapi --ignore-scripts --no-audit --no-fund --loglevel=error
	@node tools/asyncapi/docs.mjs

bench: setup  ## throughput and latency benchmark (several minutes); writes bench/results/
	@$(UV_RUN) python -m bench.run

bench-smoke: setup  ## a few orders through the benchmark, to see it works
	@$(UV_RUN) python -m bench.run --smoke

soak: setup  ## steady mixed orders (default 100/s for 30 min), per-minute figures, clock moved past retention: make soak RATE=100 MINUTES=30
	@$(UV_RUN) python -m bench.soak --rate $(or $(RATE),100) --minutes $(or $(MINUTES),30)

soak-short: setup  ## the soak CI runs: 2 minutes at 20 orders/s (writes bench/results/soak-short-latest.json)
	@$(UV_RUN) python -m bench.soak --short --rate $(or $(RATE),20) --minutes $(or $(MINUTES),2)

chaos: setup  ## 10,000 orders over 65 min of SIGKILLs, a broker restart, duplicates, poison and funding faults, then every invariant (G2): make chaos SEED=7
	@$(UV_RUN) tradeguard chaos --seed $(or $(SEED),1) --orders $(or $(ORDERS),10000) --minutes $(or $(MINUTES),65)

chaos-short: setup  ## a short chaos run (300 orders, 1 minute of faults; make test runs its own, tests/faults/test_chaos.py)
	@$(UV_RUN) tradeguard chaos --seed $(or $(SEED),1) --orders 300 --minutes 1

wheels:  ## the integrator's wheels, tradeguard-contracts and tradeguard-client, into dist/wheels
	@rm -rf dist/wheels
	@$(UV) build --wheel --quiet packages/contracts -o dist/wheels
	@$(UV) build --wheel --quiet packages/client -o dist/wheels
	@ls -l dist/wheels

integrator-test: setup  ## the example marketplace suite, from freshly built wheels in a fresh environment (make test runs it)
	@$(UV_RUN) pytest -v tests/e2e/test_integrator_kit.py -m "not long"

sandbox: setup  ## a stack in test mode for a marketplace's own tests: prints its profile; Ctrl-C stops it
	@$(UV_RUN) tradeguard sandbox --state-dir .cache/sandbox

images:  ## the container images from docker/ (podman here: a debootstrapped Debian base; Docker: debian:bookworm-slim)
	@bash scripts/images.sh build

compose-test:  ## docker-compose.yml in real containers: images, up, two demo orders, the audit, a crash, down (not part of test)
	@$(UV_RUN) python -m scripts.compose_test

test-containers: setup  ## the Kafka integration tests and the e2e order flow against the broker image in a container (testcontainers; exit 0 "skipped" without an engine)
	@$(UV_RUN) python -m tests.support.container_broker

kafka-stop:  ## stop a broker left running by an interrupted run
	@bash scripts/kafka.sh stop

clean:  ## remove local databases and logs (keeps cached Kafka jars)
	rm -rf .data
