"""The account service's rules, one module per aggregate or concern; nothing here touches Kafka or a database."""
