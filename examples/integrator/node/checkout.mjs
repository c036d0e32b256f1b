// A marketplace's checkout from Node, with nothing of TradeGuard but its published contracts:
// the envelope is validated against the Checkout JSON Schema before it is sent (a wrong field
// stops here, naming it), signed as the marketplace principal for every consumer the AsyncAPI
// document names for the topic (contracts.signatures: one HMAC-SHA256 per consumer), published
// with kafkajs, and the order followed until escrow holds it.
//
// env: TRADEGUARD_PROFILE  the stack's connection profile (JSON: bootstrap_servers, username,
//                          password, signing_key_file, marketplace_id)
//      TRADEGUARD_CONTRACTS the contracts folder of the tradeguard-contracts wheel (schemas/, asyncapi.json)
//      BUYER_ID            a buyer with money in the wallet, bound to the marketplace
import { createHmac, randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { Kafka, logLevel } from "kafkajs";

const DOMAIN = Buffer.from("tradeguard-record-signature-v1\0");
const TOPIC = "tradeguard.order.commands";
const EVENTS = "tradeguard.order.events";

const profile = JSON.parse(readFileSync(process.env.TRADEGUARD_PROFILE, "utf8"));
const contracts = process.env.TRADEGUARD_CONTRACTS;
const buyerId = process.env.BUYER_ID;

function envelopeFor(orderId) {
  return {
    message_id: randomUUID(),
    type: "Checkout",
    version: 1,
    occurred_at: new Date().toISOString(),
    correlation_id: orderId,
    idempotency_key: `checkout:${orderId}`,
    source: "marketplace",
    actor: { account_id: buyerId, role: "buyer" }, // the buyer this marketplace authenticated: their consent
    payload: {
      order_id: orderId,
      buyer_id: buyerId,
      seller_id: `seller-node-${orderId.slice(-6)}`,
      amount: { amount_minor: 1999, currency: "USD" },
      item: "Enamel mug",
      marketplace_id: profile.marketplace_id,
    },
  };
}

function validated(envelope) {
  const ajv = new Ajv2020({ allErrors: true, strict: false });
  addFormats(ajv);
  const schema = JSON.parse(readFileSync(join(contracts, "schemas", "Checkout.v1.json"), "utf8"));
  const validate = ajv.compile(schema);
  if (!validate(envelope)) {
    const problems = validate.errors.map((e) => `${e.instancePath || "/"} ${e.message}`).join("; ");
    throw new Error(`the Checkout is not valid, nothing was sent: ${problems}`);
  }
  return envelope;
}

function consumersOf(topic) {
  // The AsyncAPI document names, per principal, the channels it receives from.
  const document = JSON.parse(readFileSync(join(contracts, "asyncapi.json"), "utf8"));
  const channel = Object.entries(document.channels).find(([, c]) => c.address === topic)[0];
  return Object.entries(document.operations)
    .filter(([, op]) => op.action === "receive" && op.channel.$ref === `#/channels/${channel}`)
    .map(([id]) => id.split(".")[0])
    .sort();
}

function lengthPrefixed(...parts) {
  return Buffer.concat(
    parts.flatMap((part) => {
      const length = Buffer.alloc(4);
      length.writeUInt32BE(part.length);
      return [length, part];
    }),
  );
}

function signatureHeaders(topic, key, type, value) {
  const keys = JSON.parse(readFileSync(profile.signing_key_file, "utf8"));
  const headers = { "tg-type": type, "tg-signer": keys.principal };
  for (const consumer of consumersOf(topic)) {
    const newest = keys.send_keys[consumer][0];
    const pairKey = Buffer.from(newest.key, "base64url");
    const signed = Buffer.concat([
      DOMAIN,
      lengthPrefixed(Buffer.from(keys.principal), Buffer.from(newest.key_id), Buffer.from(key), Buffer.from(type)),
      value,
    ]);
    const mac = createHmac("sha256", pairKey).update(signed).digest("base64url");
    headers[`tg-mac-${consumer}`] = `${newest.key_id}:${mac}`;
  }
  return headers;
}

async function main() {
  const orderId = `order-node-${randomUUID().slice(0, 12)}`;
  const envelope = validated(envelopeFor(orderId));
  const value = Buffer.from(JSON.stringify(envelope));
  const kafka = new Kafka({
    clientId: "node-example",
    brokers: profile.bootstrap_servers.split(","),
    sasl: { mechanism: "scram-sha-512", username: profile.username, password: profile.password },
    logLevel: logLevel.ERROR,
  });
  const consumer = kafka.consumer({ groupId: `marketplace-node-example-${randomUUID()}` });
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await Promise.all([consumer.connect(), producer.connect()]);
  try {
    await consumer.subscribe({ topic: EVENTS, fromBeginning: true });
    const held = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`order ${orderId} not in escrow after 60 s`)), 60_000);
      consumer.run({
        eachMessage: async ({ message }) => {
          const event = JSON.parse(message.value.toString());
          if (event.payload.order_id !== orderId) return;
          console.log(`${event.type}: ${event.payload.status ?? event.payload.code ?? ""}`);
          if (event.type === "CommandRejected") reject(new Error(`refused: ${event.payload.reason}`));
          if (event.type === "OrderStatusChanged" && event.payload.status === "in_escrow") {
            clearTimeout(timer);
            resolve();
          }
        },
      });
    });
    await producer.send({
      topic: TOPIC,
      acks: -1,
      messages: [{ key: orderId, value, headers: signatureHeaders(TOPIC, orderId, "Checkout", value) }],
    });
    console.log(`published Checkout ${orderId}`);
    await held;
    console.log(`order ${orderId}: in_escrow`);
  } finally {
    await Promise.all([consumer.disconnect(), producer.disconnect()]);
  }
}

main().catch((error) => {
  console.error(error.message);
  process.exit(1);
});
