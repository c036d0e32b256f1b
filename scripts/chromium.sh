#!/usr/bin/env bash
# The browser the operator console's tests drive (tests/e2e/test_console.py): Debian's chromium,
# installed from Debian's packages when missing. Playwright never downloads one (no browser host
# is reachable here); the tests point it at this one.
#   bash scripts/chromium.sh install   # idempotent; prints the version
set -euo pipefail
case "${1:-install}" in
  install)
    if ! command -v chromium >/dev/null 2>&1; then
      printf '\033[1m==> %s\033[0m\n' "installing chromium from Debian packages (the console's browser tests; first run only)"
      [[ $(id -u) == 0 ]] && sudo="" || sudo="sudo"
      $sudo apt-get update -qq
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
    fi
    chromium --version 2>/dev/null
    ;;
  *) echo "usage: $0 install" >&2; exit 2 ;;
esac
