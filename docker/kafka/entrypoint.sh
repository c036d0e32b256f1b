#!/bin/bash
# A one-node KRaft broker secured as scripts/kafka.sh secures the local one (docs/security.md):
# SASL/SCRAM-SHA-512 on the client listener, PLAIN for the super user on the controller listener,
# the StandardAuthorizer refusing what no ACL allows. On first start it makes the super user's
# password (admin.json, mode 0600, in its own volume: the set-up reads it from there) and formats
# the storage with admin's SCRAM credentials; the set-up then makes every other principal.
#
# With a certificate mounted (/run/tradeguard/tls/broker.pem: PKCS#8 key, certificate, CA; made by
# scripts/images.sh certs) a second client listener takes SASL/SCRAM-SHA-512 over TLS on port 9094,
# the one docker-compose.yml publishes to the host.
#
# env: KAFKA_ADVERTISED_HOST (kafka): the name clients on the network reach this broker by
#      KAFKA_EXTERNAL_ADVERTISED (localhost:19094): host:port clients reach the TLS listener by
#      KAFKA_HEAP_OPTS (-Xms256m -Xmx512m)
#      KAFKA_CFG_<NAME>=value: any broker setting, appended (later wins), e.g.
#        KAFKA_CFG_NUM_PARTITIONS=3 sets num.partitions=3
set -euo pipefail
umask 077

DATA=/var/lib/kafka
ADMIN=/run/tradeguard/kafka-admin/admin.json
CONFIG="$DATA/server.properties"
LIBS=/opt/kafka/libs
ADVERTISED="${KAFKA_ADVERTISED_HOST:-kafka}"
TLS=/run/tradeguard/tls/broker.pem

admin_password() {
  if [[ ! -s "$ADMIN" ]]; then
    local password
    password="$(head -c 32 /dev/urandom | base64 | tr -d '/+=\n')"
    printf '{"username": "admin", "password": "%s"}\n' "$password" >"$ADMIN.tmp"
    mv "$ADMIN.tmp" "$ADMIN"
    echo "kafka-entrypoint: made the super user's password in $ADMIN" >&2
  fi
  sed -n 's/.*"password": "\([^"]*\)".*/\1/p' "$ADMIN"
}

# Extra settings from KAFKA_CFG_* (KAFKA_CFG_LOG_RETENTION_HOURS -> log.retention.hours).
extra_settings() {
  local variable name
  while IFS='=' read -r variable _; do
    [[ "$variable" == KAFKA_CFG_* ]] || continue
    name="${variable#KAFKA_CFG_}"
    name="${name,,}"
    echo "${name//_/.}=${!variable}"
  done < <(env)
}

write_config() {
  local password="$1" listeners advertised map
  listeners="SASL_PLAINTEXT://:9092,CONTROLLER://127.0.0.1:9093"
  advertised="SASL_PLAINTEXT://$ADVERTISED:9092"
  map="SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT"
  if [[ -f "$TLS" ]]; then
    listeners+=",EXTERNAL://:9094"
    advertised+=",EXTERNAL://${KAFKA_EXTERNAL_ADVERTISED:-localhost:19094}"
    map+=",EXTERNAL:SASL_SSL"
  fi
  cat >"$CONFIG" <<EOF
# Written by kafka-entrypoint on every start. Mode 0600: it holds the super user's password.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:9093
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
listener.security.protocol.map=$map
inter.broker.listener.name=SASL_PLAINTEXT
log.dirs=$DATA/logs

sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$password";
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="$password" user_admin="$password";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:admin

auto.create.topics.enable=false
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=5
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
log.cleaner.dedupe.buffer.size=16777216
EOF
  if [[ -f "$TLS" ]]; then
    cat >>"$CONFIG" <<EOF

# The TLS listener: the same SCRAM users, over TLS with the stack's certificate.
listener.name.external.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.external.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.external.ssl.keystore.type=PEM
listener.name.external.ssl.keystore.location=$TLS
ssl.enabled.protocols=TLSv1.3,TLSv1.2
EOF
  fi
  extra_settings >>"$CONFIG"
}

JVM=(-cp "$LIBS/*" -Dlog4j.configuration=file:/opt/kafka/config/log4j.properties -Dkafka.logs.dir="$DATA")

password="$(admin_password)"
write_config "$password"
if [[ ! -f "$DATA/logs/meta.properties" ]]; then
  # Kafka's cluster id: 16 random bytes, url-safe base64, unpadded, not starting with '-'.
  cluster_id=-
  while [[ "$cluster_id" == -* ]]; do
    cluster_id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
  done
  java "${JVM[@]}" kafka.tools.StorageTool format --ignore-formatted -t "$cluster_id" -c "$CONFIG" \
    --add-scram "SCRAM-SHA-512=[name=admin,password=$password]" >"$DATA/format.log" 2>&1 \
    || { cat "$DATA/format.log" >&2; exit 1; }
  echo "kafka-entrypoint: formatted the storage (cluster $cluster_id) with the super user's SCRAM credentials"
fi
unset password
if [[ -f "$TLS" ]]; then echo "kafka-entrypoint: TLS listener on 9094 (${KAFKA_EXTERNAL_ADVERTISED:-localhost:19094})"; fi

# shellcheck disable=SC2086  # KAFKA_HEAP_OPTS is a list of flags
exec java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
  -Djava.awt.headless=true "${JVM[@]}" kafka.Kafka "$CONFIG"
