#!/usr/bin/env bash
# The stack's container images, built from the project's own Dockerfiles (docker/).
#
# usage: scripts/images.sh [build]     the base image if it is missing (podman), every image, the certificates
#        scripts/images.sh base        the Debian base image, made with debootstrap (podman, as root)
#        scripts/images.sh certs       a CA and the broker's certificate for its TLS listener (openssl), unless made
#        scripts/images.sh engine      print the container engine that runs here (podman or docker)
#        scripts/images.sh list        the images and their sizes
# env:   CONTAINER_ENGINE (podman|docker; default: the first one that answers)
#        TRADEGUARD_BASE_IMAGE (docker: debian:bookworm-slim, pulled as usual;
#          podman: localhost/tradeguard-base:bookworm, made by `base` since no registry may be reachable)
#        TRADEGUARD_IMAGE_TAG (dev): the tag of the services image
#        TRADEGUARD_PODMAN_CONF (docker/podman/containers.conf; empty: podman's own configuration)
#        TRADEGUARD_BUILD_CA (/etc/ssl/certs/ca-certificates.crt if it exists; empty: none): the CA
#          bundle the builds' downloads (pip, uv, Maven) trust, for a proxy that intercepts TLS;
#          mounted as a build secret for those steps only, never kept in an image
#
# Every image builds FROM the base named by the BASE_IMAGE build argument, so the same Dockerfiles
# serve a Docker host (debian:bookworm-slim) and this machine (the debootstrapped one).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/scripts/kafka/pom.xml")"
TAG="${TRADEGUARD_IMAGE_TAG:-dev}"
LOCAL_BASE="localhost/tradeguard-base:bookworm"
SUITE="bookworm"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

CERTS="$ROOT/.cache/certs"
BROKER_UID=10001  # the user the images run as (docker/*/Dockerfile)

die() { echo "images.sh: $*" >&2; exit 1; }

# An engine counts only if it can run containers: a docker client without a daemon does not.
engine() {
  local chosen="${CONTAINER_ENGINE:-}"
  if [[ -n "$chosen" ]]; then
    command -v "$chosen" >/dev/null || die "CONTAINER_ENGINE=$chosen is not installed"
    if [[ "$chosen" == podman ]]; then podman_env podman info >/dev/null 2>&1; else "$chosen" info >/dev/null 2>&1; fi \
      || die "CONTAINER_ENGINE=$chosen does not answer ($chosen info fails: is its daemon running?)"
    echo "$chosen"
    return
  fi
  if command -v podman >/dev/null && podman_env podman info >/dev/null 2>&1; then
    echo podman
  elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    echo docker
  else
    echo "images.sh: no container engine answers here: install podman and runc" \
      "(apt-get install -y podman runc) or start a Docker engine" >&2
    return 3
  fi
}

# Podman reads this project's settings (runc, ulimits this machine allows) unless told otherwise.
podman_env() {
  local conf="${TRADEGUARD_PODMAN_CONF-$ROOT/docker/podman/containers.conf}"
  if [[ -n "$conf" && -z "${CONTAINERS_CONF:-}" ]]; then
    CONTAINERS_CONF="$conf" "$@"
  else
    "$@"
  fi
}

run_engine() {
  if [[ "$ENGINE" == podman ]]; then podman_env podman "$@"; else docker "$@"; fi
}

base_image() {
  if [[ -n "${TRADEGUARD_BASE_IMAGE:-}" ]]; then
    echo "$TRADEGUARD_BASE_IMAGE"
  elif [[ "$ENGINE" == podman ]]; then
    echo "$LOCAL_BASE"
  else
    echo "debian:bookworm-slim"
  fi
}

image_exists() { run_engine image inspect "$1" >/dev/null 2>&1; }

# What debian:bookworm-slim is, made here: a minbase debootstrap without documentation, manual
# pages, translations or apt's caches (dpkg keeps them out of later installs too).
base() {
  [[ "$ENGINE" == podman ]] || die "base: made for podman; a Docker host pulls debian:bookworm-slim"
  [[ "$(id -u)" == 0 ]] || die "base: debootstrap needs root"
  command -v debootstrap >/dev/null || die "debootstrap not found (apt-get install -y debootstrap)"
  local dir started=$SECONDS
  dir="$(mktemp -d)"
  trap 'rm -rf "$dir"; trap - RETURN' RETURN
  echo "making $LOCAL_BASE with debootstrap ($SUITE, minbase)..."
  debootstrap --variant=minbase "$SUITE" "$dir/rootfs" "$MIRROR" >"$dir/debootstrap.log" 2>&1 \
    || { tail -n 20 "$dir/debootstrap.log" >&2; die "debootstrap failed"; }
  local root="$dir/rootfs"
  cat >"$root/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
  cat >"$root/etc/apt/apt.conf.d/slim" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
EOF
  cat >"$root/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main
EOF
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
    "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* "$root"/var/log/*.log \
    "$root"/var/cache/debconf/*-old
  tar -C "$root" -c . | run_engine import -q --change 'CMD ["bash"]' - "$LOCAL_BASE" >/dev/null
  echo "made $LOCAL_BASE ($(du -sh "$root" | cut -f1)) in $((SECONDS - started))s"
}

build_one() {
  local name="$1" dockerfile="$2" started=$SECONDS ca
  shift 2
  ca="${TRADEGUARD_BUILD_CA-/etc/ssl/certs/ca-certificates.crt}"
  if [[ -n "$ca" && -f "$ca" ]]; then set -- --secret "id=build-ca,src=$ca" "$@"; fi
  echo "building $name..."
  run_engine build --build-arg "BASE_IMAGE=$BASE" -f "$ROOT/$dockerfile" -t "$name" "$@" "$ROOT" \
    >"$LOGS/$(basename "$(dirname "$dockerfile")").log" 2>&1 \
    || { tail -n 40 "$LOGS/$(basename "$(dirname "$dockerfile")").log" >&2; die "building $name failed"; }
  echo "built $name in $((SECONDS - started))s"
}

build() {
  if ! image_exists "$BASE"; then
    if [[ "$BASE" == "$LOCAL_BASE" ]]; then base; else run_engine pull "$BASE"; fi
  fi
  LOGS="$ROOT/.cache/images"
  mkdir -p "$LOGS"
  build_one "localhost/tradeguard/services:$TAG" docker/services/Dockerfile
  build_one "localhost/tradeguard/kafka:$KAFKA_VERSION" docker/kafka/Dockerfile \
    --build-arg "KAFKA_VERSION=$KAFKA_VERSION"
  build_one "localhost/tradeguard/postgres:15" docker/postgres/Dockerfile
  certs
  list
}

# The stack's own CA (its key stays here, in .cache/certs, git-ignored) and the broker's certificate
# for the names clients reach it by: kafka on the compose network, localhost where it is published.
# The broker reads broker/broker.pem (its PKCS#8 key, its certificate, the CA's), so that folder is
# given to the broker's user; clients trust ca.pem.
certs() {
  command -v openssl >/dev/null || die "openssl not found (apt-get install -y openssl)"
  local broker="$CERTS/broker" work
  mkdir -p "$CERTS"
  chmod 700 "$CERTS"
  if [[ ! -f "$CERTS/ca.pem" ]]; then
    (umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
      -subj "/CN=TradeGuard stack CA" -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" -keyout "$CERTS/ca.key" -out "$CERTS/ca.pem" 2>/dev/null)
    chmod 644 "$CERTS/ca.pem"
    rm -f "$broker/broker.pem"
    echo "made the stack's CA: $CERTS/ca.pem"
  fi
  if [[ -f "$broker/broker.pem" ]] && openssl x509 -in "$broker/broker.pem" -noout -checkend 2592000 >/dev/null; then
    echo "broker certificate valid ($broker/broker.pem)"
    return
  fi
  work="$(mktemp -d)"
  trap 'rm -rf "$work"; trap - RETURN' RETURN
  (umask 077 && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=kafka" \
    -keyout "$work/broker.key" -out "$work/broker.csr" 2>/dev/null)
  printf '%s\n' "subjectAltName=DNS:kafka,DNS:localhost,IP:127.0.0.1" "extendedKeyUsage=serverAuth" \
    "keyUsage=critical,digitalSignature,keyAgreement" >"$work/extensions"
  openssl x509 -req -in "$work/broker.csr" -CA "$CERTS/ca.pem" -CAkey "$CERTS/ca.key" -CAcreateserial \
    -CAserial "$CERTS/ca.srl" -days 397 -extfile "$work/extensions" -out "$work/broker.crt" 2>/dev/null
  mkdir -p "$broker"
  (umask 077 && {
    openssl pkcs8 -topk8 -nocrypt -in "$work/broker.key"
    cat "$work/broker.crt" "$CERTS/ca.pem"
  } >"$broker/broker.pem.tmp")
  mv "$broker/broker.pem.tmp" "$broker/broker.pem"
  chmod 700 "$broker"
  # The broker runs as uid 10001; with rootless podman, map it instead: podman unshare chown.
  if [[ "$(id -u)" == 0 ]]; then chown -R "$BROKER_UID:$BROKER_UID" "$broker"; fi
  echo "made the broker's certificate (kafka, localhost, 127.0.0.1): $broker/broker.pem"
}

list() {
  run_engine images --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep '^localhost/tradeguard' || true
}

ENGINE="$(engine)" || exit 3
BASE="$(base_image)"
case "${1:-build}" in
  engine) echo "$ENGINE" ;;
  base) base ;;
  build | list | certs) "${1:-build}" ;;
  *) die "usage: $0 [build|base|certs|engine|list]" ;;
esac
