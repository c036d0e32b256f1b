#!/bin/bash
# The stack's one-shot set-up (compose service `setup`), what scripts/stack.py and scripts/kafka.sh
# do for a local stack: every secret the stack's processes need, the broker's principals, ACLs and
# topics, then each process's own volume filled with what it needs and nothing of anyone else's.
# Idempotent: what exists is kept, so it runs on every `up`.
#
# Mounts: /run/tradeguard/kafka-admin  the broker's volume holding admin.json (read-only)
#         /run/tradeguard/db           the database's volume holding <service>.password (read-only)
#         /run/tradeguard/state        the set-up's own: every secret, kept across runs
#         /run/tradeguard/for/<name>   each process's volume (mounted as its TG_SECRETS_DIR)
# env:    KAFKA_BOOTSTRAP_SERVERS, TG_POSTGRES_HOST (postgres), TG_SETUP_TIMEOUT (180)
set -euo pipefail
umask 077

STATE=/run/tradeguard/state
ADMIN=/run/tradeguard/kafka-admin/admin.json
DB=/run/tradeguard/db
FOR=/run/tradeguard/for
BOOTSTRAP="${KAFKA_BOOTSTRAP_SERVERS:?}"
TIMEOUT="${TG_SETUP_TIMEOUT:-180}"
SERVICES=(account payment escrow notification saga)  # scripts/stack.py SERVICES
CLIENTS=(marketplace operator)  # the demo's and the operators' tools (the `client` service)

say() { echo "setup: $*"; }
die() { echo "setup: $*" >&2; exit 1; }

wait_for_file() {
  local deadline=$((SECONDS + TIMEOUT))
  until [[ -s "$1" ]]; do
    ((SECONDS < deadline)) || die "$1 did not appear within ${TIMEOUT}s ($2)"
    sleep 0.5
  done
}

# Keys no broker is needed for: the signing keyring (shared/signing.py), the account service's
# sealing and storage keys, the funding simulator's fingerprint key.
make_keys() {
  mkdir -p "$STATE/keys" "$STATE/credentials"
  TRADEGUARD_SIGNING_DIR="$STATE/keys/signing" python -m shared.signing init >/dev/null
  python - <<'EOF'
from pathlib import Path

from services.account.ports import storage_key
from shared.sealing import ensure_key_file

keys = Path("/run/tradeguard/state/keys")
ensure_key_file(keys / "account-sealing.json")
storage_key(keys / "account-storage.key")
EOF
  [[ -s "$STATE/keys/funding-fingerprint.key" ]] \
    || head -c 32 /dev/urandom | base64 | tr -d '\n' >"$STATE/keys/funding-fingerprint.key"
  say "keys ready ($(TRADEGUARD_SIGNING_DIR="$STATE/keys/signing" python -m shared.signing show | tr '\n' ' '))"
}

# The broker made its super user's password on first start; the set-up uses it for this run only.
provision() {
  wait_for_file "$ADMIN" "the broker makes it on its first start"
  trap 'rm -f "$STATE/credentials/admin.json"' EXIT
  cp "$ADMIN" "$STATE/credentials/admin.json"
  local deadline=$((SECONDS + TIMEOUT)) log="$STATE/provision.log"
  until python -m shared.broker_security provision --bootstrap-servers "$BOOTSTRAP" \
    --credentials "$STATE/credentials" >"$log" 2>&1; do
    if ((SECONDS >= deadline)); then
      tail -n 20 "$log" >&2
      die "could not secure the broker at $BOOTSTRAP within ${TIMEOUT}s"
    fi
    sleep 1
  done
  say "$(tail -n 1 "$log")"
  rm -f "$STATE/credentials/admin.json" "$log"
}

# One file into a process's volume, whole (written aside, then renamed).
put() {
  local source="$1" target="$2"
  mkdir -p "$(dirname "$target")"
  cp "$source" "$target.tmp"
  mv "$target.tmp" "$target"
}

put_text() {
  local target="$2"
  mkdir -p "$(dirname "$target")"
  printf '%s' "$1" >"$target.tmp"
  mv "$target.tmp" "$target"
}

# A principal's broker credentials and signing key (and the trust store where the keyring has one).
put_principal() {
  local principal="$1" into="$2"
  put "$STATE/credentials/$principal.json" "$into/credentials/$principal.json"
  put "$STATE/keys/signing/$principal.json" "$into/keys/signing/$principal.json"
  if [[ -f "$STATE/keys/signing/trust.json" ]]; then
    put "$STATE/keys/signing/trust.json" "$into/keys/signing/trust.json"
  fi
}

distribute() {
  local host="${TG_POSTGRES_HOST:-postgres}" name into password
  for name in "${SERVICES[@]}"; do
    into="$FOR/$name"
    put_principal "$name" "$into"
    wait_for_file "$DB/$name.password" "the database makes it on its first start"
    password="$(<"$DB/$name.password")"
    put_text "postgresql+asyncpg://$name:$password@$host:5432/$name" "$into/env/${name^^}_DATABASE_URL"
  done
  put "$STATE/keys/account-sealing.json" "$FOR/account/keys/account-sealing.json"
  put "$STATE/keys/account-sealing.pub.json" "$FOR/account/keys/account-sealing.pub.json"
  put "$STATE/keys/account-storage.key" "$FOR/account/keys/account-storage.key"
  put "$STATE/keys/funding-fingerprint.key" "$FOR/funding/env/FUNDING_FINGERPRINT_KEY"
  for name in "${CLIENTS[@]}"; do
    put_principal "$name" "$FOR/client"
  done
  # What a client of the stack finds: the sealing key's public half and the read APIs (the audit).
  put "$STATE/keys/account-sealing.pub.json" "$FOR/client/keys/account-sealing.pub.json"
  put_text '{"payment": "http://payment:8080", "notification": "http://notification:8080", "saga": "http://saga:8080", "escrow": "http://escrow:8080"}' \
    "$FOR/client/endpoints.json"
  for into in "$FOR"/*; do
    date -u +%FT%TZ >"$into/.ready"
  done
  say "filled $(cd "$FOR" && echo *)"
}

make_keys
provision
distribute
say "done"
