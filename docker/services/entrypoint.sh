#!/bin/bash
# Entry point of every container of the services image (under tini): secrets into the environment,
# the wait for the set-up, then the command.
#
# env: TG_SECRETS_DIR (/run/tradeguard/secrets): this process's own volume, filled by the set-up
#      TG_WAIT_FOR_SETUP (0): 1 = wait until the set-up has filled it (TG_SETUP_TIMEOUT seconds, 300)
set -euo pipefail

SECRETS="${TG_SECRETS_DIR:-/run/tradeguard/secrets}"

# The compose file's depends_on already orders the set-up first on Docker, but podman before 4.6
# does not wait for conditions: a service started early waits here instead of failing to start.
if [[ "${TG_WAIT_FOR_SETUP:-0}" == 1 ]]; then
  deadline=$((SECONDS + ${TG_SETUP_TIMEOUT:-300}))
  until [[ -f "$SECRETS/.ready" ]]; do
    if ((SECONDS >= deadline)); then
      echo "tg-entrypoint: $SECRETS was not filled by the set-up within ${TG_SETUP_TIMEOUT:-300}s" >&2
      exit 1
    fi
    sleep 0.5
  done
fi

# A secret the set-up made for this process's settings (a database URL with its password, the
# funding simulator's fingerprint key): one file per variable, never written in the compose file
# where `inspect` would show it.
if [[ -d "$SECRETS/env" ]]; then
  for file in "$SECRETS"/env/*; do
    [[ -f "$file" ]] || continue
    name="$(basename "$file")"
    [[ "$name" =~ ^[A-Z_][A-Z0-9_]*$ ]] || { echo "tg-entrypoint: bad variable file $file" >&2; exit 1; }
    export "$name=$(<"$file")"
  done
fi

exec "$@"
