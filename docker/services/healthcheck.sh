#!/bin/bash
# Health check of a container of the services image, with no extra process but bash:
#   tg-health http PORT [PATH]   an HTTP GET on 127.0.0.1:PORT (PATH: /ready) answers 200
#   tg-health smtp PORT          an SMTP server on 127.0.0.1:PORT greets with 220
set -euo pipefail

kind="${1:?http or smtp}"
port="${2:?port}"
exec 3<>"/dev/tcp/127.0.0.1/$port"
case "$kind" in
  http)
    printf 'GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n' "${3:-/ready}" >&3
    read -r -t 5 status <&3
    [[ "$status" == "HTTP/1."?" 200 "* ]]
    ;;
  smtp)
    read -r -t 5 greeting <&3
    printf 'QUIT\r\n' >&3
    [[ "$greeting" == 220* ]]
    ;;
  *) exit 2 ;;
esac
