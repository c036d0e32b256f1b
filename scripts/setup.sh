#!/usr/bin/env bash
# Everything `make run` / `make test` need on a fresh machine, each step skipped when already done:
# uv and the locked Python environment, a JDK and Maven, and Apache Kafka's jars.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() { printf '\033[1m==> %s\033[0m\n' "$*"; }

if ! command -v uv >/dev/null 2>&1 && ! python3 -m uv --version >/dev/null 2>&1; then
  step "installing uv (Python package manager) from PyPI"
  python3 -m pip install --quiet uv || python3 -m pip install --quiet --user uv
fi
# A new console script may not be on PATH yet (pyenv shims, ~/.local/bin): the module always works.
uv() { if type -P uv >/dev/null; then command uv "$@"; else python3 -m uv "$@"; fi; }

# Bytecode is compiled at install time (and the project's own packages after every sync): with
# PYTHONDONTWRITEBYTECODE set, as it is on these machines, Python would otherwise compile every
# module from source in every process it starts (about 3 s of CPU per service start here).
if [[ ! -x .venv/bin/python ]]; then
  step "installing Python dependencies from uv.lock (first run only)"
  uv sync --frozen --compile-bytecode
else
  uv sync --frozen --quiet --compile-bytecode
fi
.venv/bin/python -m compileall -q contracts shared services scripts bench >/dev/null

missing=()
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
if ((${#missing[@]})); then
  step "installing ${missing[*]} from Debian packages"
  [[ $(id -u) == 0 ]] && sudo="" || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

step "Apache Kafka jars"
bash scripts/kafka.sh fetch
