#!/bin/bash
# Entry point of every container of the services image (under tini): secrets into the environment,
# the wait for the set-up, the port forwarders, then the command.
#
# env: TG_SECRETS_DIR (/run/tradeguard/secrets): this process's own volume, filled by the set-up
#      TG_WAIT_FOR_SETUP (0): 1 = wait until the set-up has filled it (TG_SETUP_TIMEOUT seconds, 300)
#      TG_FORWARD: "PUBLIC:LOOPBACK ...", each a TCP forwarder from PUBLIC on every interface to
#        LOOPBACK on 127.0.0.1
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

# The services' health and read API (shared/observability.py HealthServer) and the local mail
# server (scripts/mailbox.py) listen on 127.0.0.1 only, which no other container can reach. Until
# they take a listen address (see docs/deployment.md), socat makes the port reachable on the
# container's network; the health check goes through it, so a dead forwarder shows as unhealthy.
for pair in ${TG_FORWARD:-}; do
  public="${pair%%:*}"
  loopback="${pair#*:}"
  socat -ly "TCP-LISTEN:$public,fork,reuseaddr" "TCP:127.0.0.1:$loopback" &
done

exec "$@"
