#!/bin/bash
# PostgreSQL for the compose stack. On first start: a cluster whose superuser connects only over
# the container's own socket, the databases of /opt/tradeguard/databases.sql, and for each one a
# role of the same name owning it with a random password (written to /run/tradeguard/db/<name>.password,
# mode 0600, where the set-up reads it). Over the network a role reaches only its own database
# (pg_hba `sameuser`), by SCRAM.
set -euo pipefail
umask 077

DATA="${PGDATA:-/var/lib/postgresql/data}"
PASSWORDS=/run/tradeguard/db
# In /tmp (a tmpfs on either engine, where the root file system is read-only); 0700: only this
# container's user may connect over it.
SOCKET=/tmp
MARK="$DATA/.tradeguard-initialised"

psql_local() { psql -X -q -v ON_ERROR_STOP=1 -h "$SOCKET" -U postgres "$@"; }

initialise() {
  echo "postgres-entrypoint: first start, initialising $DATA"
  initdb -D "$DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 \
    --locale=C.UTF-8 >/dev/null
  cat >"$DATA/pg_hba.conf" <<'EOF'
# Written by postgres-entrypoint: the superuser only over the container's socket; a service's role
# only to its own database, by SCRAM.
local all      postgres trust
host  sameuser all      0.0.0.0/0 scram-sha-256
host  sameuser all      ::/0      scram-sha-256
EOF
  cat >>"$DATA/postgresql.conf" <<EOF
listen_addresses = '*'
unix_socket_directories = '$SOCKET'
unix_socket_permissions = 0700
password_encryption = scram-sha-256
EOF
  pg_ctl -D "$DATA" -o "-c listen_addresses=''" -l /tmp/initialise.log -w start >/dev/null \
    || { cat /tmp/initialise.log >&2; exit 1; }
  psql_local -d postgres -f /opt/tradeguard/databases.sql
  local name password
  for name in $(psql_local -d postgres -At -c \
    "SELECT datname FROM pg_database WHERE datname NOT IN ('postgres', 'template0', 'template1') ORDER BY 1"); do
    password="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    psql_local -d postgres -v name="$name" -v password="$password" <<'EOF'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
ALTER DATABASE :"name" OWNER TO :"name";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"name" TO :"name";
EOF
    printf '%s' "$password" >"$PASSWORDS/$name.password.tmp"
    mv "$PASSWORDS/$name.password.tmp" "$PASSWORDS/$name.password"
    echo "postgres-entrypoint: database and role $name"
  done
  pg_ctl -D "$DATA" -m fast -w stop >/dev/null
  touch "$MARK"
}

if [[ ! -s "$DATA/PG_VERSION" ]]; then
  initialise
elif [[ ! -f "$MARK" ]]; then
  echo "postgres-entrypoint: $DATA was left half initialised; remove the volume to start afresh" >&2
  exit 1
fi
exec postgres -D "$DATA"
