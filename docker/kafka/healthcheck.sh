#!/bin/bash
# Healthy: this run's broker says it started (the log is truncated at each start) and its client
# listener accepts connections. An open port alone is not enough: it opens before the broker is
# unfenced and can serve (scripts/kafka.sh waits the same way).
set -euo pipefail
grep -qs 'Kafka Server started' /var/lib/kafka/server.log
exec 3<>/dev/tcp/127.0.0.1/9092
