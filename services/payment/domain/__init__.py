"""The payment service's rules, one module per concern; nothing here touches Kafka, the network or a database."""
